"""Online predictions that look in the precomputed table first: rows sent with their keys
are answered from the model's last completed dataset job where it has them (and they
are fresh enough, of the output asked for); only the others go to the model, in one
call. The answer says where each row's prediction came from."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from slackwater.domain.errors import InvalidRequest
from slackwater.domain.predictions import Precomputed
from slackwater.domain.request import Outcome, Usage

Online = Callable[[dict[str, Any]], Awaitable[Outcome]]


def checked_keys(body: dict[str, Any]) -> list[str]:
    keys = body.get("keys")
    inputs = body.get("inputs")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise InvalidRequest("keys must be a list of strings, one per row", param="keys")
    if not isinstance(inputs, list) or len(keys) != len(inputs):
        raise InvalidRequest("keys must name each row of inputs, in order", param="keys")
    return keys


def _as_sent(hit: Precomputed, classes: list[Any] | None) -> Any:
    """A precomputed value as the model's answer gives it (probabilities in class order)."""
    if isinstance(hit.value, dict) and classes is not None:
        return [hit.value.get(str(c)) for c in classes]
    return hit.value


async def predict_with_cache(
    body: dict[str, Any],
    hits: dict[str, Precomputed],
    online: Online,
    now: datetime,
) -> Outcome:
    """The body's predictions: precomputed where `hits` has a fresh one, else online."""
    keys = checked_keys(body)
    output = str(body.get("output") or "predict")
    max_age = body.get("max_age")
    if max_age is not None and (not isinstance(max_age, int | float) or max_age <= 0):
        raise InvalidRequest("max_age is a number of seconds", param="max_age")

    def usable(key: str) -> Precomputed | None:
        hit = hits.get(key)
        if hit is None or hit.output != output:
            return None
        if max_age is not None and now - hit.computed_at > timedelta(seconds=max_age):
            return None
        return hit

    found = [usable(k) for k in keys]
    missing = [i for i, hit in enumerate(found) if hit is None]
    asked: dict[str, Any] = {}
    if missing:
        inputs = body["inputs"]
        sub = {k: v for k, v in body.items() if k not in ("keys", "max_age")}
        outcome = await online({**sub, "inputs": [inputs[i] for i in missing]})
        if not outcome.ok:
            return _renumbered(outcome, missing)
        asked = outcome.body
    classes = asked.get("classes") or _classes(found)
    online_values = iter(asked.get("predictions", []))
    predictions, sources = [], []
    for hit in found:
        if hit is None:
            predictions.append(next(online_values))
            sources.append("model")
        else:
            predictions.append(_as_sent(hit, classes))
            sources.append("precomputed")
    answer: dict[str, Any] = {
        "object": "predictions",
        "model": asked.get("model") or next(h.model for h in found if h is not None),
        "output": output,
        "predictions": predictions,
        "sources": sources,
        "usage": {"rows": len(missing), "precomputed_rows": len(keys) - len(missing)},
    }
    if classes is not None and output == "predict_proba":
        answer["classes"] = classes
    return Outcome(200, answer, Usage(prompt_tokens=len(missing), completion_tokens=0))


def _classes(found: Sequence[Precomputed | None]) -> list[Any] | None:
    for hit in found:
        if hit is not None and isinstance(hit.value, dict):
            return [_label(c) for c in hit.value]
    return None


def _label(text: str) -> Any:
    return int(text) if text.lstrip("-").isdigit() else text


def _renumbered(outcome: Outcome, rows: list[int]) -> Outcome:
    """An error about the n-th row sent to the model names that row of the caller's."""
    error = outcome.body.get("error") or {}
    param = error.get("param")
    if isinstance(param, str) and param.startswith("inputs[") and "]" in param:
        n = int(param[len("inputs[") : param.index("]")])
        if n < len(rows):
            mine = f"inputs[{rows[n]}]"
            error["param"] = mine
            error["message"] = str(error.get("message", "")).replace(f"inputs[{n}]", mine, 1)
    return outcome
