"""Leasing order: deadlines first, then start-time fair queuing between projects.

Every request gets two numbers when its batch is activated, and workers lease the
smallest first:
- `urgency`: its deadline in steps of `URGENCY_STEP_SECONDS`, so a batch due sooner goes
  first, while deadlines close to each other count as equal and share the queue;
- `rank`: its place in a virtual time that interleaves projects. A project's batch is
  numbered on from where its previous batch ended, or from the queue's current virtual
  time if the project has been idle (it cannot bank credit while away), so a project
  with a million queued lines and one with ten take turns line by line.

The store keeps the counters (each project's next rank, the queue's virtual time);
the arithmetic is here, with no I/O. See docs/decisions/0007-fair-queuing.md.
"""

from __future__ import annotations

from datetime import datetime

URGENCY_STEP_SECONDS = 300  # deadlines within 5 minutes of each other share the queue


def urgency(deadline: datetime) -> int:
    return int(deadline.timestamp()) // URGENCY_STEP_SECONDS


def batch_start(project_next: int, virtual_time: int) -> int:
    """The rank a project's new batch starts from: where its last batch ended, or the
    queue's current virtual time if that is later (an idle project starts now)."""
    return max(project_next, virtual_time)


def project_next(start: int, last_line: int) -> int:
    """Where the project's next batch starts: after this batch's last line (a request's
    rank is its batch's start plus its line number)."""
    return start + last_line + 1


def advanced(virtual_time: int, reached: int) -> int:
    """The queue's virtual time after a lease that reached rank `reached`."""
    return max(virtual_time, reached)
