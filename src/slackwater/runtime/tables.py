"""Tables in and out of dataset jobs (CSV and Parquet, with pyarrow): read in chunks of
a fixed number of rows, the same chunks every time the same file is read (so a resumed
job skips exactly the chunks it recorded), holding one chunk and one read block in
memory at a time."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from slackwater.domain.errors import InvalidRequest
from slackwater.domain.predictions import TableFormat

BLOCK_BYTES = 4 << 20  # a CSV is parsed this much at a time


def _pa() -> Any:
    import pyarrow

    return pyarrow


def columns_of(path: Path, fmt: TableFormat) -> list[str]:
    """The table's column names (its header), or InvalidRequest naming the file."""
    try:
        if fmt is TableFormat.PARQUET:
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        import pyarrow.csv as pcsv

        reader = pcsv.open_csv(path, read_options=pcsv.ReadOptions(block_size=BLOCK_BYTES))
        names = list(reader.schema.names)
        reader.close()
        return names
    except (OSError, _pa().ArrowException) as exc:
        raise InvalidRequest(f"{path}: cannot be read as {fmt.value} ({exc})") from None


def estimated_rows(path: Path, fmt: TableFormat) -> int:
    """Rows in the table: Parquet's footer says; a CSV's are guessed from its size and
    the lines in its first megabyte (a plan's estimate, not a count)."""
    if fmt is TableFormat.PARQUET:
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    with path.open("rb") as table:
        head = table.read(1 << 20)
    lines = max(head.count(b"\n"), 1)
    return max(round(path.stat().st_size / (len(head) / lines)) - 1, 0)


def chunks(
    path: Path,
    fmt: TableFormat,
    *,
    key: str,
    keep: Sequence[str],
    features: Sequence[str],
    chunk_rows: int,
) -> Iterator[Any]:
    """pyarrow Tables of `chunk_rows` rows (the last may be shorter): the key column
    as text, the kept columns as they are, the features as float64 (empty cells NaN).
    A cell that is not a number raises InvalidRequest naming the file and column."""
    pa = _pa()
    wanted = list(dict.fromkeys([key, *keep, *features]))
    buffered: list[Any] = []
    held = 0
    for batch in _batches(path, fmt, wanted, features, key):
        buffered.append(batch)
        held += batch.num_rows
        while held >= chunk_rows:
            table = pa.Table.from_batches(buffered)
            yield table.slice(0, chunk_rows)
            rest = table.slice(chunk_rows)
            buffered = rest.to_batches()
            held = rest.num_rows
    if held:
        yield pa.Table.from_batches(buffered)


def _batches(
    path: Path, fmt: TableFormat, wanted: list[str], features: Sequence[str], key: str
) -> Iterator[Any]:
    pa = _pa()
    try:
        if fmt is TableFormat.PARQUET:
            import pyarrow.parquet as pq

            source = pq.ParquetFile(path)
            for batch in source.iter_batches(batch_size=65_536, columns=wanted):
                yield _typed(batch, features, key, path)
            return
        import pyarrow.csv as pcsv

        types = {f: pa.float64() for f in features} | {key: pa.string()}
        reader = pcsv.open_csv(
            path,
            read_options=pcsv.ReadOptions(block_size=BLOCK_BYTES),
            convert_options=pcsv.ConvertOptions(include_columns=wanted, column_types=types),
        )
        try:
            yield from reader
        finally:
            reader.close()
    except pa.ArrowInvalid as exc:
        raise InvalidRequest(f"{path}: {_named(str(exc), path, fmt)}") from None


def _typed(batch: Any, features: Sequence[str], key: str, path: Path) -> Any:
    pa = _pa()
    arrays, names = [], []
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if name in features:
            try:
                column = column.cast(pa.float64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise InvalidRequest(
                    f"{path}: column {name!r} is {column.type}, not numbers ({exc})", param=name
                ) from None
        elif name == key:
            column = column.cast(pa.string())
        arrays.append(column)
        names.append(name)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _named(message: str, path: Path, fmt: TableFormat) -> str:
    """pyarrow's CSV errors count columns from 0: name the column too."""
    import re

    found = re.search(r"CSV column #(\d+)", message)
    if found is None:
        return message
    names = columns_of(path, fmt)
    index = int(found.group(1))
    if index < len(names):
        return message.replace(found.group(0), f"CSV column {names[index]!r}")
    return message


def features_of(table: Any, features: Sequence[str]) -> np.ndarray:
    """The chunk's feature columns as one 2-D float64 array, in the model's order."""
    return np.column_stack(
        [table.column(f).to_numpy(zero_copy_only=False).astype(np.float64) for f in features]
    )


def with_outputs(
    table: Any, key: str, keep: Sequence[str], output: str, values: np.ndarray, classes: Any
) -> Any:
    """The chunk's key and kept columns, and its predictions: `prediction`, a
    `proba_<class>` column per class, an `embedding` list column, or a `neighbors` list
    of labels."""
    pa = _pa()
    out = table.select(list(dict.fromkeys([key, *keep])))
    if output == "neighbors":
        out = out.append_column("neighbors", pa.array(values.tolist()))
    elif output == "predict_proba":
        for i, label in enumerate(classes or range(values.shape[1])):
            out = out.append_column(f"proba_{label}", pa.array(values[:, i]))
    elif values.ndim == 2:
        flat = pa.array(values.astype(np.float64).ravel())
        out = out.append_column(
            "embedding" if output == "embedding" else "prediction",
            pa.FixedSizeListArray.from_arrays(flat, values.shape[1]),
        )
    else:
        out = out.append_column("prediction", pa.array(values))
    return out


def write(table: Any, fmt: TableFormat, handle: IO[bytes], *, header: bool = True) -> None:
    if fmt is TableFormat.PARQUET:
        import pyarrow.parquet as pq

        pq.write_table(table, handle)
        return
    import pyarrow.csv as pcsv

    pcsv.write_csv(table, handle, write_options=pcsv.WriteOptions(include_header=header))


def join(parts: Sequence[IO[bytes]], fmt: TableFormat, out: IO[bytes]) -> None:
    """The parts, in order, as one table (one part in memory at a time)."""
    if fmt is TableFormat.CSV:
        for n, part in enumerate(parts):
            if n:
                part.readline()  # each part has its header; the output keeps the first
            while block := part.read(1 << 20):
                out.write(block)
        return
    import pyarrow.parquet as pq

    writer = None
    for part in parts:
        table = pq.read_table(part)
        if writer is None:
            writer = pq.ParquetWriter(out, table.schema)
        writer.write_table(table)
    if writer is not None:
        writer.close()
