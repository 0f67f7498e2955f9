"""RouteRecord: why a request runs on its model, kept with the request and shown in its
output line (`"slackwater": {"route": ...}`), with every earlier attempt of the cascade."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True)
class Attempt:
    """An earlier model's answer that failed a check, and what it cost."""

    model: str
    failed_check: str
    cost_usd: str
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "failed_check": self.failed_check,
            "cost_usd": self.cost_usd,
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Attempt:
        usage = data.get("usage") or {}
        return cls(
            model=data["model"],
            failed_check=data.get("failed_check", ""),
            cost_usd=data.get("cost_usd", "0"),
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
        )


@dataclass(frozen=True)
class RouteRecord:
    requested: str  # "auto" or the named route the caller asked for
    model: str  # the model the request runs on now
    reason: str
    expected_cost_usd: str
    passed_over: dict[str, str] = field(default_factory=dict)  # model -> why not
    ladder: tuple[str, ...] = ()  # every qualifying model, cheapest first: the cascade
    attempts: tuple[Attempt, ...] = ()
    task: str | None = None
    prompt_tokens: int = 0
    tokens_counted: str = "estimated"  # or "tokenizer": the model's own count
    predicted_quality: dict[str, float] = field(default_factory=dict)  # learned router
    check_regex: str | None = None  # an answer that does not match escalates
    checks: tuple[str, ...] = ()  # registered checks the answer must pass

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "requested": self.requested,
            "model": self.model,
            "reason": self.reason,
            "expected_cost_usd": self.expected_cost_usd,
            "passed_over": self.passed_over,
            "ladder": list(self.ladder),
            "attempts": [a.to_dict() for a in self.attempts],
            "task": self.task,
            "prompt_tokens": self.prompt_tokens,
            "tokens_counted": self.tokens_counted,
        }
        if self.predicted_quality:
            data["predicted_quality"] = self.predicted_quality
        if self.check_regex is not None:
            data["check_regex"] = self.check_regex
        if self.checks:
            data["checks"] = list(self.checks)
        return data

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_json(cls, raw: str | bytes) -> RouteRecord:
        return cls.from_dict(orjson.loads(raw))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RouteRecord:
        return cls(
            requested=data.get("requested", "auto"),
            model=data["model"],
            reason=data.get("reason", ""),
            expected_cost_usd=data.get("expected_cost_usd", "0"),
            passed_over=dict(data.get("passed_over") or {}),
            ladder=tuple(data.get("ladder") or ()),
            attempts=tuple(Attempt.from_dict(a) for a in data.get("attempts") or ()),
            task=data.get("task"),
            prompt_tokens=int(data.get("prompt_tokens") or 0),
            tokens_counted=data.get("tokens_counted", "estimated"),
            predicted_quality=dict(data.get("predicted_quality") or {}),
            check_regex=data.get("check_regex"),
            checks=tuple(data.get("checks") or ()),
        )
