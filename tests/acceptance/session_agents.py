"""The agent of the sessions fault-injection test (loaded by `agents_app` in each process).

Thirty journalled calls: steps with an outside effect, inferences on a local model
through the flex and batch tiers, a sleep and an external event. Each step's effect is
counted twice, in the effects directory (`SESSION_EFFECTS`): every run of it is a line
in `runs.log`, and the effect itself is a file named by the step's idempotency key,
created only if it is not there (what an outside system keyed by `ctx.step_key()` does).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from slackwater.runtime.sessions import Agents, Context

agents = Agents()
STEPS = 30
FLEX = (3, 11, 19)
BATCH = (7, 15, 23)
SLEEP = 13
EVENT = 27
EFFECTS = {i for i in range(STEPS)} - {*FLEX, *BATCH, SLEEP, EVENT}


def effect(key: str, n: int, i: int) -> int:
    where = Path(os.environ["SESSION_EFFECTS"])
    with (where / "runs.log").open("a") as runs:
        runs.write(key + "\n")
    try:
        done = os.open(where / key.replace(":", "-"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        pass
    else:
        os.write(done, f"{n} {i}".encode())
        os.close(done)
    return (n * 31 + i) % 97


@agents.agent
async def enrich(ctx: Context, n: int) -> dict[str, Any]:
    total, notes, approval = 0, [], None
    for i in range(STEPS):
        if i in FLEX or i in BATCH:
            tier = "flex" if i in FLEX else "batch"
            answer = await ctx.infer(
                model="tiny",
                tier=tier,
                messages=[{"role": "user", "content": f"record {n}, part {i}: enrich it"}],
                max_tokens=6,
                temperature=0,
            )
            notes.append(answer["choices"][0]["message"]["content"])
        elif i == SLEEP:
            await ctx.sleep(seconds=1)
        elif i == EVENT:
            approval = await ctx.wait_for("go")
        else:
            total += await ctx.step(effect, ctx.step_key(), n, i)
    return {"n": n, "total": total, "notes": notes, "approval": approval}
