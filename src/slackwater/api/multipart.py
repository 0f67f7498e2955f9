"""Streaming multipart/form-data: file parts go to a sink chunk by chunk as they arrive."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from python_multipart import MultipartParser
from python_multipart.multipart import parse_options_header

from slackwater.domain.errors import InvalidRequest

MAX_FIELD_BYTES = 64 * 1024


@dataclass
class Form:
    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None  # of the file part, once one was seen


async def read_form(
    content_type: str,
    body: AsyncIterator[bytes],
    file_field: str,
    sink: Callable[[bytes], None],
) -> Form:
    """Parse the form; bytes of the part named `file_field` go to `sink`, never buffered."""
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise InvalidRequest(
            "expected a multipart/form-data body with a 'file' part and a 'purpose' field",
            code="invalid_content_type",
        )
    form = Form()
    state: dict[str, object] = {"headers": {}, "field": b"", "value": b"", "name": None}
    value = bytearray()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] = bytes(state["field"]) + data[start:end]  # type: ignore[arg-type]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] = bytes(state["value"]) + data[start:end]  # type: ignore[arg-type]

    def on_header_end() -> None:
        headers = state["headers"]
        assert isinstance(headers, dict)
        headers[bytes(state["field"]).lower()] = bytes(state["value"])  # type: ignore[arg-type]
        state["field"], state["value"] = b"", b""

    def on_headers_finished() -> None:
        headers = state["headers"]
        assert isinstance(headers, dict)
        _, disposition = parse_options_header(headers.get(b"content-disposition", b""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        state["name"] = name
        if name == file_field:
            if form.filename is not None:
                raise InvalidRequest("only one 'file' part is allowed", param="file")
            form.filename = disposition.get(b"filename", b"upload.jsonl").decode("utf-8", "replace")
        value.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["name"] == file_field:
            sink(data[start:end])
            return
        value.extend(data[start:end])
        if len(value) > MAX_FIELD_BYTES:
            raise InvalidRequest(f"form field {state['name']!r} is too long", param=str(state["name"]))

    def on_part_end() -> None:
        name = state["name"]
        if isinstance(name, str) and name != file_field:
            form.fields[name] = value.decode("utf-8", "replace")
        state["headers"], state["name"] = {}, None

    parser = MultipartParser(
        boundary,
        {
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    async for chunk in body:
        parser.write(chunk)
    parser.finalize()
    return form
