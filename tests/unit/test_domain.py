from __future__ import annotations

from datetime import timedelta
from itertools import pairwise

import pytest

from slackwater.domain.batch import BatchStatus, can_transition
from slackwater.domain.clock import parse_completion_window
from slackwater.domain.errors import InvalidRequest
from slackwater.domain.ids import new_id


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", timedelta(hours=24)),
        ("1m", timedelta(minutes=1)),
        ("7d", timedelta(days=7)),
        ("90m", timedelta(minutes=90)),
        ("3600s", timedelta(hours=1)),
    ],
)
def test_completion_windows(text: str, expected: timedelta) -> None:
    assert parse_completion_window(text) == expected


@pytest.mark.parametrize("text", ["", "24", "1w", "30s", "8d", "-1h", "h24"])
def test_bad_completion_windows_name_the_field(text: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_completion_window(text)
    assert caught.value.param == "completion_window"


def test_state_machine() -> None:
    assert can_transition(BatchStatus.VALIDATING, BatchStatus.IN_PROGRESS)
    assert can_transition(BatchStatus.IN_PROGRESS, BatchStatus.CANCELLING)
    assert can_transition(BatchStatus.CANCELLING, BatchStatus.CANCELLED)
    assert not can_transition(BatchStatus.COMPLETED, BatchStatus.CANCELLING)
    assert not can_transition(BatchStatus.IN_PROGRESS, BatchStatus.COMPLETED)
    for terminal in (
        BatchStatus.COMPLETED,
        BatchStatus.FAILED,
        BatchStatus.EXPIRED,
        BatchStatus.CANCELLED,
    ):
        assert terminal.is_terminal
        assert not any(can_transition(terminal, s) for s in BatchStatus)


def test_ids_are_prefixed_and_sort_by_creation() -> None:
    ids = [new_id("batch") for _ in range(2000)]
    assert ids == sorted(ids) and len(set(ids)) == 2000
    assert all(i.startswith("batch_") and len(i) == 30 for i in ids)


def test_ids_sort_by_creation_and_say_nothing_of_each_other() -> None:
    made = [new_id("file") for _ in range(2000)]
    assert made == sorted(made) and len(set(made)) == 2000
    assert all(len(i) == len("file_") + 24 for i in made)
    # Ids made back to back are not one apart: none tells another's value.
    suffixes = [int(i[-12:], 16) for i in made]
    steps = [b - a for a, b in pairwise(suffixes) if b > a]
    assert steps and min(steps) > 1 and len(set(steps)) > len(steps) // 2
