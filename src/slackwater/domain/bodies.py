"""Request bodies of the line endpoints, validated the way OpenAI validates them.

One schema per endpoint, shared by batch intake (per JSONL line) and the realtime API.
Types are strict (a string "5" is not a number); unknown fields pass through to engines.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal, NotRequired, cast

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict

from slackwater.domain import responses
from slackwater.domain.batch import Endpoint, LineError

EXTENSION = "slackwater"  # slackwater's own body field; never sent to an engine
# Prompts sharing this many leading characters (~250 tokens) are leased together: a
# model's prefix cache then computes them once. Shorter shared parts save too little.
PREFIX_CHARS = 1024

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]

# TypedDicts rather than models: the validated body stays a plain dict, and checking a
# line costs about half as much (intake checks millions).
_STRICT = ConfigDict(strict=True, extra="allow")
Positive = Annotated[int, Field(ge=1)]
NonEmpty = Field(min_length=1)


@with_config(_STRICT)
class Message(TypedDict):
    role: Role
    content: NotRequired[str | list[dict[str, Any]] | None]


@with_config(_STRICT)
class _Sampling(TypedDict):
    model: Annotated[str, NonEmpty]
    max_tokens: NotRequired[Positive | None]
    temperature: NotRequired[Annotated[float, Field(ge=0, le=2)] | None]
    top_p: NotRequired[Annotated[float, Field(gt=0, le=1)] | None]
    n: NotRequired[Annotated[int, Field(ge=1, le=1)] | None]
    stop: NotRequired[str | list[str] | None]
    seed: NotRequired[int | None]
    stream: NotRequired[Literal[False] | None]


@with_config(_STRICT)
class ChatBody(_Sampling):
    messages: Annotated[list[Message], NonEmpty]
    max_completion_tokens: NotRequired[Positive | None]
    response_format: NotRequired[dict[str, Any] | None]


@with_config(_STRICT)
class CompletionBody(_Sampling):
    prompt: str | list[str]


@with_config(_STRICT)
class EmbeddingBody(TypedDict):
    model: Annotated[str, NonEmpty]
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: NotRequired[Literal["float", "base64"] | None]
    dimensions: NotRequired[Positive | None]


Feature = float | int | bool | str | None  # a row's value; the engine checks it fits


@with_config(_STRICT)
class PredictionBody(TypedDict):
    model: Annotated[str, NonEmpty]
    # Rows: each a list of feature values in the model's order, or an object by name.
    inputs: Annotated[list[list[Feature] | dict[str, Feature]], NonEmpty]
    output: NotRequired[Literal["predict", "predict_proba", "embedding", "neighbors"] | None]


Body = ChatBody | CompletionBody | EmbeddingBody | PredictionBody

SCHEMAS: dict[
    str, type[ChatBody] | type[CompletionBody] | type[EmbeddingBody] | type[PredictionBody]
] = {
    Endpoint.CHAT.value: ChatBody,
    Endpoint.COMPLETIONS.value: CompletionBody,
    Endpoint.EMBEDDINGS.value: EmbeddingBody,
    Endpoint.PREDICTIONS.value: PredictionBody,
}

_VALIDATORS = {url: TypeAdapter(kind).validator for url, kind in SCHEMAS.items()}


def token_limit(body: Mapping[str, Any]) -> int | None:
    """The most tokens the body lets the model write (None: no limit given)."""
    limit = (
        body.get("max_completion_tokens") or body.get("max_tokens") or body.get("max_output_tokens")
    )
    return int(limit) if limit is not None else None


def parse_body(endpoint: str, body: Any, *, line: int | None = None) -> Body | list[LineError]:
    """The typed body, or the reasons it is invalid (each naming the field)."""
    if endpoint == Endpoint.RESPONSES:
        errors = responses.check(body, line)
        return errors or cast(Body, body)
    try:
        parsed: Body = _VALIDATORS[endpoint].validate_python(body)
    except ValidationError as exc:
        return [
            LineError(
                code="invalid_value" if err["type"] != "missing" else "missing_required_parameter",
                message=f"body.{_loc(err['loc'])}: {err['msg']}" if err["loc"] else err["msg"],
                line=line,
                param="body." + _loc(err["loc"]) if err["loc"] else "body",
            )
            for err in exc.errors(include_url=False)
        ]
    # Checked here for one clear message, not one per member of the field's type union.
    for name in ("prompt", "input"):
        value = parsed.get(name)
        if value == [] or (name == "input" and value == ""):
            empty = "an empty list" if value == [] else "an empty string"
            message = f"body.{name} must not be {empty}"
            return [LineError("invalid_value", message, line=line, param=f"body.{name}")]
    return parsed


def as_chat(endpoint: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
    """A checked body as the engine will read it: a Responses body as its chat body."""
    if endpoint == Endpoint.RESPONSES:
        return responses.chat_of(dict(body))
    return body


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "none", "dict", "list"})


def _loc(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif "[" not in part and "-" not in part and part not in _TYPE_TAGS:  # union tags
            parts.append(("." if parts else "") + part)
    return "".join(parts)


def prompt_text(body: Mapping[str, Any], *, roles: bool = True) -> str:
    """The text a model reads for this body: messages, prompt or embedding input.
    `roles=False` leaves out the "role: " labels (the learned router was trained on
    bare prompts)."""
    if "messages" in body:
        parts = []
        for message in body["messages"]:
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            label = f"{message.get('role', '')}: " if roles else ""
            parts.append(f"{label}{content or ''}")
        return "\n".join(parts)
    value = body.get("prompt", body.get("input", ""))
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n".join(value)
    return value if isinstance(value, str) else json.dumps(value)


def prefix_key(endpoint: str, body: Mapping[str, Any]) -> str | None:
    """A name for the first `PREFIX_CHARS` characters of a checked body's prompt (a system
    prompt, a few-shot block, a document), so that requests sharing them can be leased
    together; None for embedding inputs and shorter prompts."""
    if endpoint == Endpoint.EMBEDDINGS:
        return None
    text = prompt_text(as_chat(endpoint, body))
    if len(text) < PREFIX_CHARS:
        return None
    return hashlib.blake2b(text[:PREFIX_CHARS].encode(), digest_size=8).hexdigest()
