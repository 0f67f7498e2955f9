"""Request bodies of the line endpoints, validated the way OpenAI validates them.

One schema per endpoint, shared by batch intake (per JSONL line) and the realtime API.
Types are strict (a string "5" is not a number); unknown fields pass through to engines.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from slackwater.domain.batch import Endpoint, LineError

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")

    model: str = Field(min_length=1)


class Message(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")

    role: Role
    content: str | list[dict[str, Any]] | None = None


class _Sampling(_Body):
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    n: Annotated[int, Field(ge=1, le=1)] | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: Literal[False] | None = None


class ChatBody(_Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    response_format: dict[str, Any] | None = None

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionBody(_Sampling):
    prompt: str | list[str]

    @model_validator(mode="after")
    def _non_empty(self) -> CompletionBody:
        if isinstance(self.prompt, list) and not self.prompt:
            raise ValueError("prompt must not be an empty list")
        return self

    def token_limit(self) -> int | None:
        return self.max_tokens


class EmbeddingBody(_Body):
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _non_empty(self) -> EmbeddingBody:
        if isinstance(self.input, list) and not self.input:
            raise ValueError("input must not be an empty list")
        if self.input == "":
            raise ValueError("input must not be an empty string")
        return self

    def token_limit(self) -> int | None:
        return None


Body = ChatBody | CompletionBody | EmbeddingBody

SCHEMAS: dict[str, type[ChatBody] | type[CompletionBody] | type[EmbeddingBody]] = {
    Endpoint.CHAT.value: ChatBody,
    Endpoint.COMPLETIONS.value: CompletionBody,
    Endpoint.EMBEDDINGS.value: EmbeddingBody,
}

_ADAPTERS = {url: TypeAdapter(schema) for url, schema in SCHEMAS.items()}


def parse_body(endpoint: str, body: Any, *, line: int | None = None) -> Body | list[LineError]:
    """The typed body, or the reasons it is invalid (each naming the field)."""
    try:
        return _ADAPTERS[endpoint].validate_python(body)
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


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "none", "dict", "list"})


def _loc(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif "[" not in part and part not in _TYPE_TAGS:  # pydantic's union-member tags
            parts.append(("." if parts else "") + part)
    return "".join(parts)


def prompt_text(body: Mapping[str, Any]) -> str:
    """The text a model reads for this body: messages, prompt or embedding input."""
    if "messages" in body:
        parts = []
        for message in body["messages"]:
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            parts.append(f"{message.get('role', '')}: {content or ''}")
        return "\n".join(parts)
    value = body.get("prompt", body.get("input", ""))
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n".join(value)
    return value if isinstance(value, str) else json.dumps(value)
