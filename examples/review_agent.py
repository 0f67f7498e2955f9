"""A code-review agent over local files, run as a slackwater session (docs/sessions.md).

It lists the Python files under a directory and reads them (journalled steps), asks the
local chat model to review each one through the flex tier (the inferences wait in the
queue and ride in the worker's engine batches; the session holds nothing meanwhile),
asks for a summary on the batch tier, then waits for a person's approval before it
writes its report. Killed at any point, it resumes from its journal: no file is read
twice, no inference is asked twice.

    SLACKWATER_AGENTS_APP=examples.review_agent:agents slackwater serve
    slackwater sessions start review --arguments '{"path": "examples"}'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slackwater.runtime.sessions import Agents, Context

agents = Agents()
MODEL = "SmolLM2-135M-Instruct"  # the default local chat model
MAX_FILES = 4
MAX_CHARS = 1200  # of each file: a small model's context is short


def list_sources(path: str) -> list[str]:
    return [str(p) for p in sorted(Path(path).rglob("*.py"))[:MAX_FILES]]


def read_sources(files: list[str]) -> dict[str, str]:
    return {f: Path(f).read_text(errors="replace")[:MAX_CHARS] for f in files}


def write_report(out: str, key: str, text: str) -> str:
    # Written whole under a name of its own, then renamed: run again after a crash, the
    # step writes the same report, not a second one.
    temporary = Path(f"{out}.{key.replace(':', '-')}.tmp")
    temporary.write_text(text)
    temporary.replace(out)
    return out


def ask(text: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You are a careful senior engineer reviewing code."},
        {"role": "user", "content": text},
    ]


@agents.agent
async def review(ctx: Context, path: str, out: str = "review.md") -> dict[str, Any]:
    files = await ctx.step(list_sources, path)
    sources = await ctx.step(read_sources, files)
    reviews = await ctx.gather(
        *(
            ctx.infer(
                model=MODEL,
                tier="flex",
                messages=ask(f"{code}\n\nReview the file above, {name}, in two plain sentences."),
                max_tokens=48,
                temperature=0,
            )
            for name, code in sources.items()
        )
    )
    notes = {
        name: answer["choices"][0]["message"]["content"].strip()
        for name, answer in zip(sources, reviews, strict=True)
    }
    summary = await ctx.infer(
        model=MODEL,
        tier="batch",
        messages=ask("Summarise these reviews in one sentence:\n\n" + "\n".join(notes.values())),
        max_tokens=40,
        temperature=0,
    )
    # A person looks at the notes (`slackwater sessions get ID --journal`) and approves;
    # after two days without an answer the report is written anyway.
    approval = await ctx.wait_for("approval", timeout=2 * 86400)
    text = "\n\n".join(
        [
            "# Code review",
            summary["choices"][0]["message"]["content"].strip(),
            *(f"## {name}\n\n{note}" for name, note in notes.items()),
            f"Approved by: {(approval or {}).get('by', 'nobody (timed out)')}",
        ]
    )
    report = await ctx.step(write_report, out, ctx.step_key(), text)
    return {"report": report, "files": len(files)}
