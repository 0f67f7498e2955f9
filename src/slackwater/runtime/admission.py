"""Admission: refuse, before any engine work, a request that cannot fit its model's
context window (the decision is `policy.admission`; this counts the tokens)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from slackwater.domain.batch import Endpoint, LineError
from slackwater.domain.bodies import as_chat, prompt_text, token_limit
from slackwater.domain.model import Catalog, Model
from slackwater.policy import admission
from slackwater.ports import StagedRequest
from slackwater.runtime.routing import TokenCounter
from slackwater.runtime.validation import LineChecker

_PROMPT_FIELD = {
    Endpoint.CHAT.value: "body.messages",
    Endpoint.COMPLETIONS.value: "body.prompt",
    Endpoint.EMBEDDINGS.value: "body.input",
    Endpoint.RESPONSES.value: "body.input",
}


class Admission:
    def __init__(self, catalog: Catalog, counters: Mapping[str, TokenCounter]) -> None:
        self.catalog = catalog
        self.counters = dict(counters)  # model -> its own tokenizer, where it has one

    def check(
        self, model: Model, endpoint: str, body: Mapping[str, Any], line: int | None = None
    ) -> LineError | None:
        """Why the request cannot fit `model`, or None. Counts tokens only for a prompt
        too long to be sure of without counting."""
        if model.context_window is None or endpoint in (Endpoint.EMBEDDINGS, Endpoint.PREDICTIONS):
            # Embedding inputs are cut to the context by the engine, as OpenAI's are not:
            # long documents are embedded from their start.
            return None
        output = admission.output_room(model, endpoint, token_limit(body))
        body = as_chat(endpoint, body)
        text = prompt_text(body)
        messages = len(body.get("messages") or ())
        # 4 bytes a character at most: the exact size only when that is not enough.
        if admission.surely_fits(model, 4 * len(text), output, messages) or (
            admission.surely_fits(model, len(text.encode()), output, messages)
        ):
            return None
        overhead = admission.TEMPLATE_TOKENS_PER_MESSAGE * messages
        counter = self.counters.get(model.name)
        shown = admission.counted_prefix(model, output)
        estimated = counter is None or len(text) > shown
        if estimated:
            # Past `shown` characters nothing fits: no tokenizer is loaded to say so.
            tokens = -(-len(text.encode()) // admission.BYTES_PER_TOKEN_AT_MOST)
            if counter is not None:
                tokens = max(tokens, model.context_window - output + 1)
        else:
            assert counter is not None
            tokens = counter(text)
        return admission.overflow(
            model,
            tokens + overhead,
            output,
            estimated=estimated,
            line=line,
            param=_PROMPT_FIELD.get(endpoint, "body"),
        )

    def check_rows(
        self,
        endpoint: str,
        rows: Sequence[StagedRequest],
        long_lines: Sequence[int],
        checker: LineChecker,
    ) -> list[StagedRequest]:
        """The rows that fit; those of `long_lines` (flagged by the checker as possibly too
        long) are counted, and a row that does not fit goes to `checker`'s errors."""
        if not long_lines:
            return list(rows)
        suspects = set(long_lines)
        kept = []
        for row in rows:
            model = self.catalog.find(row.model) if row.line in suspects else None
            if model is not None:
                error = self.check(model, endpoint, orjson.loads(row.body), row.line)
                if error is not None:
                    checker.fail(row.line, error.code, error.message, error.param)
                    continue
            kept.append(row)
        return kept
