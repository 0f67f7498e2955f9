"""Agents for the sessions API tests (loaded by `agents_app`)."""

from __future__ import annotations

from typing import Any

from slackwater.runtime.sessions import Agents, Context

agents = Agents()


def count(texts: list[str]) -> int:
    return len(texts)


@agents.agent
async def summarise(ctx: Context, texts: list[str]) -> dict[str, Any]:
    n = await ctx.step(count, texts)
    answers = await ctx.gather(
        *(ctx.infer(model="echo", messages=[{"role": "user", "content": t}]) for t in texts)
    )
    go = await ctx.wait_for("go")
    notes = [a["choices"][0]["message"]["content"] for a in answers]
    return {"n": n, "notes": notes, "go": go}


SCHEMA = {"type": "object", "required": ["echo"], "properties": {"echo": {"type": "string"}}}


@agents.agent
async def extract(ctx: Context, text: str) -> dict[str, Any]:
    answer = await ctx.infer(
        model="auto",
        messages=[{"role": "user", "content": text}],
        response_format={"type": "json_schema", "json_schema": {"name": "e", "schema": SCHEMA}},
    )
    return {"model": answer["model"], "route": answer["slackwater"]["route"]}
