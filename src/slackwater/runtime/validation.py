"""Validation of a batch input file, line by line, as OpenAI validates it.

Kept free of the router and the store so that it can run in a child process: a large
file is checked there, on another core, while the parent writes the accepted rows.
Lines that ask for a route ("auto" or a named route) are validated here and routed by
the parent, which holds the router.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import pickle
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from slackwater.domain import responses
from slackwater.domain.batch import Endpoint, LineError
from slackwater.domain.bodies import EXTENSION, PREFIX_CHARS, parse_body, prefix_key, token_limit
from slackwater.domain.model import Catalog
from slackwater.policy import admission
from slackwater.ports import StagedRequest
from slackwater.runtime.process import tune_collector

MAX_REPORTED_ERRORS = 1000
MAX_CUSTOM_ID = 512
BOM = b"\xef\xbb\xbf"


def cache_key(endpoint: str, model: str, body: dict[str, Any]) -> str | None:
    """Same model, endpoint and body, and an answer that cannot vary: reuse it."""
    deterministic = endpoint == Endpoint.EMBEDDINGS or body.get("temperature") == 0
    if not deterministic:
        return None
    canonical = orjson.dumps({**body, "model": model}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(endpoint.encode() + b"\n" + canonical).hexdigest()


@dataclass
class LineChecker:
    """Checks one line at a time; remembers custom_ids and the errors found so far."""

    endpoint: str
    catalog: Catalog
    max_line_bytes: int = 64 * 1024 * 1024
    cache: bool = True  # give deterministic requests a key to reuse results by
    # Model names the router resolves; their lines keep the body (extension field
    # included) and the requested name, for the router to replace.
    routes: frozenset[str] = frozenset()
    errors: list[LineError] = field(default_factory=list)
    error_lines: int = 0
    seen: set[str] = field(default_factory=set)
    # Lines long enough that they may not fit their model's context: the parent, which
    # holds the tokenizers, counts them (runtime/admission.py).
    long_lines: list[int] = field(default_factory=list)

    def take_long_lines(self) -> list[int]:
        taken, self.long_lines = self.long_lines, []
        return taken

    def fail(self, line: int, code: str, message: str, param: str | None = None) -> None:
        """Note a bad line. Errors stay in line order: the parent reports lines it
        counted or routed after the checker has moved past them."""
        self.error_lines += 1
        error = LineError(code=code, message=message, line=line, param=param)
        if self.errors and line < (self.errors[-1].line or 0):
            bisect.insort(self.errors, error, key=lambda e: e.line or 0)
            del self.errors[MAX_REPORTED_ERRORS:]
        elif len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(error)

    def absorb(self, errors: list[LineError], error_lines: int) -> None:
        """Take in errors found elsewhere (a child process), keeping them in line order."""
        self.error_lines += error_lines
        merged = sorted([*self.errors, *errors], key=lambda e: e.line or 0)
        self.errors = merged[:MAX_REPORTED_ERRORS]

    def check(self, line: int, raw: bytes) -> StagedRequest | None:
        if line == 1 and raw.startswith(BOM):
            raw = raw[len(BOM) :]
        try:
            data: Any = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            reason = "not UTF-8" if "utf-8" in str(exc).lower() else str(exc)
            self.fail(line, "invalid_json_line", f"line {line} is not valid JSON: {reason}")
            return None
        if not isinstance(data, dict):
            self.fail(line, "invalid_request", f"line {line} must be a JSON object")
            return None
        errors_before = self.error_lines

        custom_id = data.get("custom_id")
        if custom_id is None:
            self.fail(line, "missing_required_parameter", "custom_id is required", "custom_id")
        elif not isinstance(custom_id, str) or not custom_id:
            self.fail(line, "invalid_type", "custom_id must be a non-empty string", "custom_id")
        elif len(custom_id) > MAX_CUSTOM_ID:
            self.fail(
                line, "invalid_value", f"custom_id is longer than {MAX_CUSTOM_ID}", "custom_id"
            )
        elif custom_id in self.seen:
            self.fail(
                line,
                "duplicate_custom_id",
                f"custom_id {custom_id!r} is used by an earlier line; each must be unique",
                "custom_id",
            )
        else:
            self.seen.add(custom_id)

        method = data.get("method")
        if method != "POST":
            self.fail(line, "invalid_value", f"method must be 'POST', got {method!r}", "method")

        url = data.get("url")
        if url != self.endpoint:
            self.fail(
                line,
                "invalid_url" if isinstance(url, str) else "missing_required_parameter",
                f"url {url!r} does not match the batch's endpoint {self.endpoint!r}",
                "url",
            )

        body = data.get("body")
        model: str | None = None
        if not isinstance(body, dict):
            self.fail(line, "invalid_type", "body must be a JSON object", "body")
        else:
            model = self._check_body(line, body, len(raw))

        if self.error_lines > errors_before or model is None:
            return None
        assert isinstance(body, dict)
        routed = model in self.routes
        if not routed:
            body.pop(EXTENSION, None)  # slackwater's own field never reaches an engine
        text = orjson.dumps(body).decode()
        return StagedRequest(
            line=line,
            custom_id=str(custom_id),
            model=model,
            body=text,
            cache_key=cache_key(self.endpoint, model, body) if self.cache and not routed else None,
            # A body shorter than that cannot hold a prompt that long: no need to look.
            prefix=prefix_key(self.endpoint, body) if len(text) >= PREFIX_CHARS else None,
        )

    def _check_body(self, line: int, body: dict[str, Any], size: int) -> str | None:
        """The model to run the body on (or the route to ask), if the body is valid."""
        parsed = parse_body(self.endpoint, body, line=line)
        if self.endpoint == Endpoint.RESPONSES and not isinstance(parsed, list):
            parsed = responses.in_batch(body, line) or parsed
        if isinstance(parsed, list):
            for err in parsed:
                self.fail(line, err.code, err.message, err.param)
            return None
        requested = parsed["model"]
        if requested in self.routes:
            return requested
        model = self.catalog.serving(requested, self.endpoint, line=line)
        if isinstance(model, LineError):
            self.fail(line, model.code, model.message, model.param)
            return None
        limit = token_limit(parsed)
        if limit is not None and model.context_window and limit > model.context_window:
            self.fail(
                line,
                "context_length_exceeded",
                f"max tokens {limit} is past {model.name}'s context window "
                f"of {model.context_window}",
                "body.max_tokens",
            )
            return None
        # The line's bytes bound its prompt's: most lines are surely short enough.
        output = admission.output_room(model, self.endpoint, limit)
        if not admission.surely_fits(model, size, output, len(body.get("messages") or ())):
            self.long_lines.append(line)
        return model.name

    def read_chunk(
        self, handle: IO[bytes], first_line: int, size: int
    ) -> tuple[list[StagedRequest], int, bool]:
        """Check up to `size` lines; returns (accepted, next line number, at end of file)."""
        accepted: list[StagedRequest] = []
        number = first_line
        while len(accepted) < size:
            raw = handle.readline(self.max_line_bytes + 1)
            if not raw:
                return accepted, number, True
            if len(raw) > self.max_line_bytes and not raw.endswith(b"\n"):
                self.fail(
                    number, "line_too_long", f"line {number} is over {self.max_line_bytes} bytes"
                )
                while (rest := handle.readline(1024 * 1024)) and not rest.endswith(b"\n"):
                    pass
                number += 1
                continue
            stripped = raw.strip()
            if stripped and stripped != BOM:
                staged = self.check(number, stripped)
                if staged is not None:
                    accepted.append(staged)
            number += 1
        return accepted, number, False


# (accepted rows, error lines so far, every error at the end of the file, long lines)
Message = tuple[list[StagedRequest], int, list[LineError] | None, list[int]]


def chunk_sizes(largest: int, first: int = 1000) -> Iterator[int]:
    """Lines per chunk: small at first, so that writing starts soon while the rest is
    checked, then doubling up to `largest`, so that each write carries enough rows."""
    size = min(first, largest)
    while True:
        yield size
        size = min(2 * size, largest)


def check_file(path: str, checker: LineChecker, chunk: int) -> Iterator[Message]:
    """Check a file chunk by chunk.

    Once a line fails the file is rejected whole: only rows still to be routed or counted
    are sent on, so that every bad line is reported, routing and length failures included.
    """
    sizes = chunk_sizes(chunk)
    with open(path, "rb") as handle:
        line, done = 1, False
        while not done:
            rows, line, done = checker.read_chunk(handle, line, next(sizes))
            long_lines = checker.take_long_lines()
            if checker.error_lines:  # only routes and counts are left, in the parent
                wanted = set(long_lines)
                rows = [row for row in rows if row.model in checker.routes or row.line in wanted]
            yield rows, checker.error_lines, checker.errors if done else None, long_lines


def write_frame(out: IO[bytes], message: Message) -> None:
    """A length-prefixed pickle; rows go as plain tuples, which pickle several times faster."""
    rows, error_lines, errors, long_lines = message
    payload = pickle.dumps(([tuple(r) for r in rows], error_lines, errors, long_lines), protocol=5)
    out.write(len(payload).to_bytes(8, "little"))
    out.write(payload)
    out.flush()


def read_frame(payload: bytes) -> Message:
    rows, error_lines, errors, long_lines = pickle.loads(payload)
    return list(map(StagedRequest._make, rows)), error_lines, errors, long_lines


def main() -> None:
    """The child process: (path, checker, chunk) on stdin, one frame per chunk on stdout.

    A full pipe blocks the child, which keeps memory bounded; a closed one (the parent
    gone or no longer listening) ends it.
    """
    try:
        path, checker, chunk = pickle.load(sys.stdin.buffer)
    except EOFError:
        return  # a spare whose server went away before it had work for it
    # Each line makes short-lived dicts that hold no cycles: collecting the young
    # generation every 700 of them would spend a fifth of the time scanning a chunk.
    tune_collector()
    try:
        for message in check_file(path, checker, chunk):
            write_frame(sys.stdout.buffer, message)
    except BrokenPipeError:
        # The parent stopped listening; point stdout at nothing so that the flush at
        # exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    main()
