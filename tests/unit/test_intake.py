"""Line-by-line validation of batch input files, as OpenAI validates them."""

from __future__ import annotations

import io
import json

import pytest

from slackwater.config import Settings
from slackwater.domain.batch import Endpoint
from slackwater.domain.bodies import prefix_key
from slackwater.domain.model import Catalog
from slackwater.runtime.validation import LineChecker

CATALOG = Catalog(Settings.load().catalog())


def line(custom_id: str = "a", **body_fields: object) -> dict[str, object]:
    body: dict[str, object] = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "hi"}],
        **body_fields,
    }
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def check(raw: bytes, endpoint: str = Endpoint.CHAT.value) -> LineChecker:
    checker = LineChecker(endpoint, CATALOG)
    rows, _, done = checker.read_chunk(io.BytesIO(raw), 1, 10_000)
    assert done
    checker.rows = rows  # type: ignore[attr-defined]
    return checker


def jsonl(*lines: object) -> bytes:
    return b"".join(json.dumps(item).encode() + b"\n" for item in lines)


def test_good_lines_are_staged_with_canonical_model_and_line_numbers() -> None:
    checker = check(jsonl(line("a"), line("b", max_tokens=5)))
    assert checker.errors == []
    assert [(r.line, r.custom_id, r.model) for r in checker.rows] == [  # type: ignore[attr-defined]
        (1, "a", "smollm2"),
        (2, "b", "smollm2"),
    ]


def test_bom_crlf_blank_lines_and_missing_final_newline_are_accepted() -> None:
    raw = b"\xef\xbb\xbf" + jsonl(line("a")).replace(b"\n", b"\r\n") + b"\r\n\n"
    raw += json.dumps(line("b")).encode()
    checker = check(raw)
    assert checker.errors == []
    assert [r.line for r in checker.rows] == [1, 4]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("raw", "code", "param"),
    [
        (b"{not json}\n", "invalid_json_line", None),
        (b'{"custom_id": "a", "method": "POST"\n', "invalid_json_line", None),  # truncated
        (b"\xff\xfe\x00garbage\n", "invalid_json_line", None),
        (b"[1, 2]\n", "invalid_request", None),
        (b"[" * 5000 + b"]" * 5000 + b"\n", "invalid_json_line", None),
        (jsonl({**line(), "custom_id": None}), "missing_required_parameter", "custom_id"),
        (jsonl({**line(), "custom_id": 7}), "invalid_type", "custom_id"),
        (jsonl({**line(), "method": "GET"}), "invalid_value", "method"),
        (jsonl({**line(), "url": "/v1/embeddings"}), "invalid_url", "url"),
        (jsonl({**line(), "url": "/v1/nope"}), "invalid_url", "url"),
        (jsonl({**line(), "body": "text"}), "invalid_type", "body"),
        (jsonl(line(model="gpt-99")), "model_not_found", "body.model"),
        (jsonl(line(model="all-MiniLM-L6-v2")), "model_not_supported", "body.model"),
        (jsonl(line(max_tokens="5")), "invalid_value", "body.max_tokens"),
        (jsonl(line(max_tokens=0)), "invalid_value", "body.max_tokens"),
        (jsonl(line(max_tokens=100_000)), "context_length_exceeded", "body.max_tokens"),
        (jsonl(line(temperature=3)), "invalid_value", "body.temperature"),
        (jsonl(line(messages=[])), "invalid_value", "body.messages"),
        (
            jsonl(line(messages=[{"role": "wizard", "content": "x"}])),
            "invalid_value",
            "body.messages[0].role",
        ),
        (jsonl(line(stream=True)), "invalid_value", "body.stream"),
    ],
)
def test_each_bad_line_is_named_with_its_field(raw: bytes, code: str, param: str | None) -> None:
    checker = check(jsonl(line("first")) + raw)
    assert checker.error_lines == 1
    [error] = checker.errors
    assert (error.code, error.line, error.param) == (code, 2, param)
    assert error.message


def test_duplicate_custom_id_names_the_later_line() -> None:
    checker = check(jsonl(line("x"), line("y"), line("x")))
    [error] = checker.errors
    assert (error.code, error.line, error.param) == ("duplicate_custom_id", 3, "custom_id")


def test_every_bad_field_of_a_line_is_reported() -> None:
    checker = check(jsonl({"custom_id": "", "method": "PUT", "url": "/x", "body": {}}))
    assert {e.param for e in checker.errors} == {
        "custom_id",
        "method",
        "url",
        "body.model",
        "body.messages",
    }
    assert checker.error_lines == 5 and all(e.line == 1 for e in checker.errors)


def test_embeddings_bodies() -> None:
    good = {
        "custom_id": "e",
        "method": "POST",
        "url": "/v1/embeddings",
        "body": {"model": "text-embedding-minilm", "input": ["a", "b"]},
    }
    checker = check(jsonl(good), Endpoint.EMBEDDINGS.value)
    assert checker.errors == [] and checker.rows[0].model == "all-MiniLM-L6-v2"  # type: ignore[attr-defined]
    bad = {**good, "body": {"model": "all-MiniLM-L6-v2", "input": []}}
    checker = check(jsonl(bad), Endpoint.EMBEDDINGS.value)
    [error] = checker.errors
    assert error.param == "body.input" and "empty list" in error.message


def test_overlong_line_is_rejected_without_reading_it_whole() -> None:
    checker = LineChecker(Endpoint.CHAT.value, CATALOG, max_line_bytes=1000)
    raw = jsonl(line("a")) + b'{"x": "' + b"y" * 5000 + b'"}\n' + jsonl(line("b"))
    rows, _, _ = checker.read_chunk(io.BytesIO(raw), 1, 100)
    assert [r.custom_id for r in rows] == ["a", "b"]
    assert [(e.code, e.line) for e in checker.errors] == [("line_too_long", 2)]


def test_lines_sharing_a_long_prompt_prefix_are_named_alike() -> None:
    document = "The quarterly report says revenue grew. " * 40  # 1,600 characters
    system = {"role": "system", "content": document}

    def asking(custom_id: str, question: str, shared: dict[str, str] = system) -> object:
        return line(custom_id, messages=[shared, {"role": "user", "content": question}])

    other = {"role": "system", "content": document.replace("grew", "fell")}
    checker = check(
        jsonl(asking("a", "Who?"), asking("b", "Why?"), asking("c", "Who?", other), line("d"))
    )
    a, b, c, d = checker.rows  # type: ignore[attr-defined]
    assert a.prefix is not None and a.prefix == b.prefix
    assert c.prefix not in {None, a.prefix}
    assert d.prefix is None  # a short prompt: nothing worth sharing
    # Completions prompts too; embedding inputs never.
    assert prefix_key(Endpoint.COMPLETIONS, {"prompt": document + "1"}) == prefix_key(
        Endpoint.COMPLETIONS, {"prompt": document + "2"}
    )
    assert prefix_key(Endpoint.EMBEDDINGS, {"input": document}) is None
