"""Tables in and out of dataset jobs (CSV and Parquet, with pyarrow): read in chunks of
a fixed number of rows, the same chunks every time the same file is read (so a resumed
job skips exactly the chunks it recorded), holding one chunk and one read block in
memory at a time. A table is a local file or an object in a store pyarrow reads
(`s3://bucket/key`, `gs://bucket/key`), with the credentials and endpoint of the
environment (`AWS_*`, `AWS_ENDPOINT_URL`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from slackwater.domain.errors import InvalidRequest
from slackwater.domain.predictions import TableFormat

BLOCK_BYTES = 4 << 20  # a CSV is parsed this much at a time
OBJECT_STORES = ("s3://", "gs://")


def _pa() -> Any:
    import pyarrow

    return pyarrow


@dataclass(frozen=True)
class TableFile:
    """Where a table is: a local path, or an object store's URI."""

    location: str

    def __str__(self) -> str:
        return self.location

    @property
    def remote(self) -> bool:
        return self.location.startswith(OBJECT_STORES)

    def filesystem(self) -> tuple[Any, str]:
        """The pyarrow filesystem the table is on, and its path there."""
        import pyarrow.fs as pafs

        if self.remote:
            fs, path = pafs.FileSystem.from_uri(self.location)
            return fs, str(path)
        return pafs.LocalFileSystem(), self.location

    def open(self) -> Any:
        """The table's bytes, random access (a pyarrow NativeFile; close it)."""
        fs, path = self.filesystem()
        return fs.open_input_file(path)

    def size(self) -> int:
        fs, path = self.filesystem()
        return int(fs.get_file_info(path).size)


def located(source: str, fmt: TableFormat | None) -> tuple[TableFile, TableFormat]:
    """The table `source` names, if it is there, and its format (from its name unless
    given), or InvalidRequest saying what is wrong."""
    if source.startswith(OBJECT_STORES):
        table = TableFile(source)
        name = source.split("?", 1)[0]
    else:
        name = str(Path(source).expanduser().resolve())
        table = TableFile(name)
    fmt = fmt or TableFormat.of(name)
    if fmt is None:
        raise InvalidRequest(f"{source}: a dataset is a .csv or .parquet file", param="dataset")
    try:
        fs, inside = table.filesystem()
        info = fs.get_file_info(inside)
    except (OSError, ValueError, _pa().ArrowException) as exc:
        raise InvalidRequest(f"{source}: cannot be reached ({exc})", param="dataset") from None
    if info.type.name != "File":
        raise InvalidRequest(f"{source}: no such file", param="dataset")
    return table, fmt


def columns_of(table: TableFile, fmt: TableFormat) -> list[str]:
    """The table's column names (its header), or InvalidRequest naming the file."""
    try:
        with table.open() as source:
            if fmt is TableFormat.PARQUET:
                import pyarrow.parquet as pq

                return list(pq.read_schema(source).names)
            import pyarrow.csv as pcsv

            reader = pcsv.open_csv(source, read_options=pcsv.ReadOptions(block_size=BLOCK_BYTES))
            names = list(reader.schema.names)
            reader.close()
            return names
    except (OSError, _pa().ArrowException) as exc:
        raise InvalidRequest(f"{table}: cannot be read as {fmt.value} ({exc})") from None


def estimated_rows(table: TableFile, fmt: TableFormat) -> int:
    """Rows in the table: Parquet's footer says; a CSV's are guessed from its size and
    the lines in its first megabyte (a plan's estimate, not a count)."""
    with table.open() as source:
        if fmt is TableFormat.PARQUET:
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(source).metadata.num_rows)
        head: bytes = source.read(1 << 20)
    lines = max(head.count(b"\n"), 1)
    return max(round(table.size() / (len(head) / lines)) - 1, 0)


def chunks(
    table: TableFile,
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
    for batch in _batches(table, fmt, wanted, features, key):
        buffered.append(batch)
        held += batch.num_rows
        while held >= chunk_rows:
            joined = pa.Table.from_batches(buffered)
            yield joined.slice(0, chunk_rows)
            rest = joined.slice(chunk_rows)
            buffered = rest.to_batches()
            held = rest.num_rows
    if held:
        yield pa.Table.from_batches(buffered)


def _batches(
    table: TableFile, fmt: TableFormat, wanted: list[str], features: Sequence[str], key: str
) -> Iterator[Any]:
    pa = _pa()
    try:
        with table.open() as source:
            if fmt is TableFormat.PARQUET:
                import pyarrow.parquet as pq

                parquet = pq.ParquetFile(source)
                for batch in parquet.iter_batches(batch_size=65_536, columns=wanted):
                    yield typed(batch, features, key, table)
                return
            import pyarrow.csv as pcsv

            types = {f: pa.float64() for f in features} | {key: pa.string()}
            reader = pcsv.open_csv(
                source,
                read_options=pcsv.ReadOptions(block_size=BLOCK_BYTES),
                convert_options=pcsv.ConvertOptions(include_columns=wanted, column_types=types),
            )
            try:
                yield from reader
            finally:
                reader.close()
    except pa.ArrowInvalid as exc:
        raise InvalidRequest(f"{table}: {_named(str(exc), table, fmt)}") from None


def typed(batch: Any, features: Sequence[str], key: str, table: TableFile) -> Any:
    """The batch (a RecordBatch or a Table) with its features as float64 and its key as
    text, or InvalidRequest naming the column that is not numbers."""
    pa = _pa()
    arrays, names = [], []
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if name in features:
            try:
                column = column.cast(pa.float64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise InvalidRequest(
                    f"{table}: column {name!r} is {column.type}, not numbers ({exc})", param=name
                ) from None
        elif name == key:
            column = column.cast(pa.string())
        arrays.append(column)
        names.append(name)
    kind = pa.Table if isinstance(batch, pa.Table) else pa.RecordBatch
    return kind.from_arrays(arrays, names=names)


def _named(message: str, table: TableFile, fmt: TableFormat) -> str:
    """pyarrow's CSV errors count columns from 0: name the column too."""
    import re

    found = re.search(r"CSV column #(\d+)", message)
    if found is None:
        return message
    names = columns_of(table, fmt)
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
