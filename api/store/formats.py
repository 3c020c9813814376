"""The file formats of a results table (:class:`api.store.tabular.Table`): CSV, JSON Lines and
Parquet, with the same columns and values in each.

CSV and JSON Lines are produced as text chunks (one per batch of rows), so they can be streamed;
Parquet is written to a file in row groups. Either way only a batch or a row group of rows is
held at a time.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from api.store.tabular import Table

#: The formats, by file extension.
FORMATS = ("csv", "jsonl", "parquet")
#: The media type of each format.
MEDIA_TYPES = {
    "csv": "text/csv",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}
#: Most rows in one Parquet row group.
PARQUET_ROW_GROUP = 10_000

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_text(rows: Iterable[list], header: list[str] | None = None) -> str:
    """CSV lines for ``rows`` (after ``header`` when given): None is an empty cell, booleans
    are ``true``/``false``, and text cells are made inert for spreadsheets (see ``_inert``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header is not None:
        writer.writerow(header)
    writer.writerows([_csv_cell(cell) for cell in row] for row in rows)
    return buffer.getvalue()


def _csv_cell(cell: Any) -> Any:
    if isinstance(cell, bool):
        return "true" if cell else "false"
    # A text cell that a spreadsheet would run as a formula (a file named ``=HYPERLINK(...)``
    # in an uploaded zip) gets a leading apostrophe, as OWASP advises; numbers pass unchanged.
    if isinstance(cell, str) and cell.startswith(_FORMULA_START):
        return "'" + cell
    return cell


def csv_chunks(table: Table) -> Iterator[str]:
    """The table as CSV: the header line, then one chunk of lines per batch of rows."""
    yield csv_text([], table.header)
    for batch in table.batches:
        yield csv_text(batch)


def jsonl_chunks(table: Table) -> Iterator[str]:
    """The table as JSON Lines: one object per row (keys in column order), one chunk of lines
    per batch of rows. Text is kept as it is (no spreadsheet escaping)."""
    header = table.header
    for batch in table.batches:
        yield "".join(
            json.dumps(dict(zip(header, row, strict=True)), ensure_ascii=False) + "\n"
            for row in batch
        )


def write_parquet(table: Table, path: Path) -> int:
    """Write the table to ``path`` as Parquet, in row groups of at most
    :data:`PARQUET_ROW_GROUP` rows; returns the file's size."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
    schema = pa.schema(
        [pa.field(name, types[kind]) for name, kind in zip(table.header, table.kinds, strict=True)]
    )
    pending: list[list] = []

    def flush(writer: pq.ParquetWriter) -> None:
        columns = list(zip(*pending, strict=True))
        arrays = [
            pa.array(column, type=field.type) for column, field in zip(columns, schema, strict=True)
        ]
        writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
        pending.clear()

    with pq.ParquetWriter(path, schema) as writer:
        for batch in table.batches:
            for row in batch:
                pending.append(row)
                if len(pending) >= PARQUET_ROW_GROUP:
                    flush(writer)
        if pending:
            flush(writer)
    return path.stat().st_size


def write_file(table: Table, fmt: str, path: Path) -> int:
    """Write the table to ``path`` in format ``fmt`` (one of :data:`FORMATS`); returns the
    file's size in bytes."""
    if fmt == "parquet":
        return write_parquet(table, path)
    chunks = {"csv": csv_chunks, "jsonl": jsonl_chunks}[fmt](table)
    with path.open("w", encoding="utf-8", newline="") as out:
        out.writelines(chunks)
    return path.stat().st_size
