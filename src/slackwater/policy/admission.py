"""Admission: whether a request fits its model's context window, decided before any
engine work, so one oversized prompt cannot occupy a model for minutes.

A prompt fits when its tokens, plus the most the model may write (`max_tokens`), plus a
chat template's markers, are within the context window. Counting tokens costs a
tokenizer pass, so most requests are admitted without one: a token covers at least one
byte, so a prompt whose UTF-8 bytes fit fits. Only longer ones are counted, with the
model's own tokenizer, shown at most `CHARS_PER_TOKEN_AT_MOST` characters per token of
room (more than any tokenizer packs, so a prompt longer than that cannot fit). A model
without a tokenizer at hand (a remote one) refuses only a prompt that could not fit even
at `BYTES_PER_TOKEN_AT_MOST` bytes a token; its server checks the rest. No I/O.
"""

from __future__ import annotations

from slackwater.domain.batch import Endpoint, LineError
from slackwater.domain.model import Model

TEMPLATE_TOKENS_PER_MESSAGE = 8  # role markers a chat template adds around each message
BYTES_PER_TOKEN_AT_MOST = 8
CHARS_PER_TOKEN_AT_MOST = 32


def output_room(model: Model, endpoint: str, limit: int | None) -> int:
    """The tokens the model may write: `max_tokens`; none for embeddings."""
    return 0 if endpoint == Endpoint.EMBEDDINGS else int(limit or 0)


def surely_fits(model: Model, size: int, output: int, messages: int) -> bool:
    """Whether a prompt of at most `size` UTF-8 bytes fits without counting its tokens."""
    context = model.context_window
    return context is None or size + output + TEMPLATE_TOKENS_PER_MESSAGE * messages <= context


def counted_prefix(model: Model, output: int) -> int:
    """How many characters of a prompt a tokenizer needs to see: past this, no prompt fits."""
    assert model.context_window is not None
    return (model.context_window - output + 1) * CHARS_PER_TOKEN_AT_MOST


def overflow(
    model: Model,
    prompt_tokens: int,
    output: int,
    *,
    estimated: bool,
    line: int | None = None,
    param: str = "body.messages",
) -> LineError | None:
    """Why the request cannot fit the context window, or None when it fits.

    `estimated`: `prompt_tokens` is a lower bound (bytes / BYTES_PER_TOKEN_AT_MOST), not a
    count by the model's tokenizer."""
    context = model.context_window
    if context is None or prompt_tokens + output <= context:
        return None
    counted = "at least " if estimated else ""
    return LineError(
        "context_length_exceeded",
        f"the prompt is {counted}{prompt_tokens} tokens and max_tokens is {output}: "
        f"past {model.name}'s context window of {context} tokens",
        line=line,
        param=param,
    )
