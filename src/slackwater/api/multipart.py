"""Streaming multipart/form-data: file parts go to a sink chunk by chunk as they arrive."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header

from slackwater.domain.errors import InvalidRequest, RequestTimeout
from slackwater.domain.text import clean_filename

MAX_FIELD_BYTES = 64 * 1024


@dataclass
class Form:
    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None  # of the file part, once one was seen


@dataclass
class _Part:
    """The part being parsed: headers so far, its name, and a small field's bytes."""

    headers: dict[bytes, bytes] = field(default_factory=dict)
    header: bytes = b""
    value: bytes = b""
    name: str | None = None
    data: bytearray = field(default_factory=bytearray)


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
    part = _Part()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        part.header += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        part.value += data[start:end]

    def on_header_end() -> None:
        part.headers[part.header.lower()] = part.value
        part.header, part.value = b"", b""

    def on_headers_finished() -> None:
        _, disposition = parse_options_header(part.headers.get(b"content-disposition", b""))
        part.name = disposition.get(b"name", b"").decode("utf-8", "replace")
        if part.name == file_field:
            if form.filename is not None:
                raise InvalidRequest("only one 'file' part is allowed", param="file")
            sent = disposition.get(b"filename", b"upload.jsonl").decode("utf-8", "replace")
            form.filename = clean_filename(sent)
        part.data.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if part.name == file_field:
            sink(data[start:end])
            return
        part.data.extend(data[start:end])
        if len(part.data) > MAX_FIELD_BYTES:
            raise InvalidRequest(f"form field {part.name!r} is too long", param=part.name)

    def on_part_end() -> None:
        if part.name is not None and part.name != file_field:
            form.fields[part.name] = part.data.decode("utf-8", "replace")
        part.headers, part.name = {}, None

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
    try:
        async for chunk in body:
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise InvalidRequest(
            f"the multipart body is malformed: {exc}", param="file", code="invalid_multipart"
        ) from None
    return form


async def paced(
    body: AsyncIterator[bytes], *, idle_seconds: float, min_bytes_per_second: float, grace: float
) -> AsyncIterator[bytes]:
    """The body's chunks, cut off (RequestTimeout) when nothing arrives for `idle_seconds`
    or, after `grace` seconds, when it arrives slower than `min_bytes_per_second` on
    average: a client trickling bytes must not hold a connection and an upload slot."""
    started = time.monotonic()
    received = 0
    chunks = aiter(body)
    while True:
        try:
            async with asyncio.timeout(idle_seconds):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise RequestTimeout(
                f"the upload sent nothing for {idle_seconds:g} s", param="file"
            ) from None
        received += len(chunk)
        elapsed = time.monotonic() - started
        if elapsed > grace and received < min_bytes_per_second * elapsed:
            raise RequestTimeout(
                f"the upload is slower than {min_bytes_per_second:g} bytes/s", param="file"
            )
        yield chunk
