"""The separate process through which large frames move to and from a SQLite file (see ``frames.py``).

Run as a script (never imported by the application): ``python _sqlite_worker.py PATH``. It opens PATH with
the ADBC SQLite driver, which links its own copy of SQLite. Two copies of SQLite must never open the same
file in one process (POSIX locks are per process: when one copy closes its descriptor it silently drops
the other's locks; sqlite.org/howtocorrupt.html, 2.2). In a process of its own this copy is just another
SQLite user of the file, locking it like any other process would; this module therefore imports neither
Python's ``sqlite3`` nor anything of the application, and refuses to run if ``_sqlite3`` is loaded.

Protocol: one JSON request per line on stdin, one JSON reply per line on stdout, in order.

    {"op": "execute", "sql": "...", "params": [...]}            -> {"ok": true, "rows": rowcount}
    {"op": "query", "sql": "...", "params": [...], "out": PATH, "dates": [NAME, ...], "nulls": {NAME: V}}
                                                                 -> {"ok": true, "rows": n}
    {"op": "ingest", "table": NAME, "path": PATH, "temporary": bool, "create": bool}
                                                                 -> {"ok": true, "rows": n}
    a failure            -> {"ok": false, "kind": "conflict" | "error", "message": "..."}

``query`` writes its result as an Arrow IPC file at ``out``; a column named ``__typed`` marks rows that
only exist to fix the column types (the driver infers a column's type from the values of its first batch,
so a column that starts with nulls would be typed wrongly): they are dropped, and the column with them.
The columns named in ``dates`` (ISO text, as SQLAlchemy stores a date in SQLite) are written as Arrow
dates, parsed strictly: a value that is not ``YYYY-MM-DD`` fails the request. In the columns named in
``nulls`` (optional) the value given stands for a null (the SQL read it with ``ifnull``: a query without
nulls needs no typed first row, and a null costs the driver more than a value): it is written as null.
``ingest`` reads an Arrow IPC file and appends it to a table (``create``: creates it). Transactions are
statements: the caller sends ``BEGIN``/``BEGIN IMMEDIATE``, ``COMMIT`` and ``ROLLBACK``.
"""

from __future__ import annotations

import importlib.abc
import json
import sys
from typing import Any

if "_sqlite3" in sys.modules:  # pragma: no cover - never a second SQLite in this process (see above)
    sys.exit("the SQLite worker must not load Python's sqlite3")


class _Unused(importlib.abc.MetaPathFinder):
    """Refuses to import Polars and pandas in this process.

    The driver manager's DB-API module imports Polars when it can (to offer Polars results), and pyarrow
    imports pandas when it is installed (it comes with the Spark extra): 2.1 of the 2.5 CPU seconds the
    worker took to start. This process only needs Arrow.
    """

    def find_spec(self, name: str, path: object, target: object = None) -> None:
        if name.partition(".")[0] in ("polars", "pandas"):
            raise ImportError(f"{name} is not used by the SQLite worker")


sys.meta_path.insert(0, _Unused())

import adbc_driver_manager  # noqa: E402 - after the line above
import adbc_driver_sqlite.dbapi as adbc_sqlite  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402

TYPED_MARK = "__typed"
BATCH_ROWS = 65_536

PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA foreign_keys = ON",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA busy_timeout = 30000",
    # Index upkeep of a large insert stays in memory instead of spilling pages to the WAL (256 MiB, used
    # only as the transaction needs it).
    "PRAGMA cache_size = -262144",
    "PRAGMA temp_store = MEMORY",
)


def _query(cursor: Any, request: dict[str, Any]) -> int:
    """Stream the rows into the file batch by batch, so that this process never holds the whole result."""
    cursor.execute(request["sql"], parameters=request.get("params") or None)
    reader = cursor.fetch_record_batch()
    names = [name for name in reader.schema.names if name != TYPED_MARK]
    marked = TYPED_MARK in reader.schema.names
    # Parsed here rather than by the caller: Arrow parses ISO dates in about two thirds of the time
    # Polars takes, and a date is then 4 bytes to hand over instead of a string of 10.
    dates = [name in set(request.get("dates") or ()) for name in names]
    nulls: dict[str, Any] = request.get("nulls") or {}
    rows = 0
    with pa.OSFile(request["out"], "wb") as sink:
        writer = None
        for read in reader:
            batch = read
            if marked:
                # Only the first batch holds the marked row: the others go through without a copy.
                if pc.max(read.column(TYPED_MARK)).as_py():
                    batch = batch.filter(pc.equal(batch.column(TYPED_MARK), 0))
                batch = batch.select(names)
            if nulls:
                batch = _nulled(batch, nulls)
            if any(dates):
                batch = _dated(batch, dates)
            if writer is None:
                writer = pa.ipc.new_file(sink, batch.schema)
            writer.write_batch(batch)
            rows += batch.num_rows
        if writer is None:  # no batch at all: an empty file of the statement's columns
            fields = [reader.schema.field(name) for name in names]
            fields = [
                f.with_type(pa.date32()) if date and _textual(f.type) else f
                for f, date in zip(fields, dates, strict=True)
            ]
            writer = pa.ipc.new_file(sink, pa.schema(fields))
        writer.close()
    return rows


def _nulled(batch: pa.RecordBatch, nulls: dict[str, Any]) -> pa.RecordBatch:
    """The batch with each value of ``nulls`` in its column made null."""
    columns = list(batch.columns)
    for i, name in enumerate(batch.schema.names):
        column = columns[i]
        if name in nulls and not pa.types.is_null(column.type):
            stand_in = pa.scalar(nulls[name], column.type)
            columns[i] = pc.if_else(pc.equal(column, stand_in), pa.scalar(None, column.type), column)
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def _textual(dtype: pa.DataType) -> bool:
    return bool(pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_null(dtype))


def _dated(batch: pa.RecordBatch, dates: list[bool]) -> pa.RecordBatch:
    """The batch with the marked columns of text parsed to dates (a text that is not an ISO date fails;
    a column of another type is left as it is, for the caller to refuse)."""
    columns = [
        pc.cast(column, pa.date32()) if date and _textual(column.type) else column
        for column, date in zip(batch.columns, dates, strict=True)
    ]
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def _ingest(cursor: Any, request: dict[str, Any]) -> int:
    with pa.memory_map(request["path"], "r") as source:
        table = pa.ipc.open_file(source).read_all()
    mode = "create" if request.get("create") else "append"
    cursor.adbc_ingest(request["table"], table, mode=mode, temporary=bool(request.get("temporary")))
    return int(table.num_rows)


def _handle(cursor: Any, request: dict[str, Any]) -> dict[str, Any]:
    op = request["op"]
    if op == "execute":
        cursor.execute(request["sql"], parameters=request.get("params") or None)
        return {"ok": True, "rows": cursor.rowcount}
    if op == "query":
        return {"ok": True, "rows": _query(cursor, request)}
    if op == "ingest":
        return {"ok": True, "rows": _ingest(cursor, request)}
    return {"ok": False, "kind": "error", "message": f"unknown request {op!r}"}


def _failure(exc: Exception) -> dict[str, Any]:
    message = str(exc)
    # The driver reports a broken constraint as an internal error; SQLite's words say which it is.
    conflict = isinstance(exc, adbc_driver_manager.IntegrityError) or "constraint failed" in message
    return {"ok": False, "kind": "conflict" if conflict else "error", "message": message}


def main(argv: list[str]) -> int:
    """Serve requests on stdin for the SQLite file ``argv[1]`` until stdin closes."""
    connection = adbc_sqlite.connect(argv[1], autocommit=True)
    cursor = connection.cursor()
    try:
        for pragma in PRAGMAS:
            cursor.execute(pragma)
            cursor.fetchall()
        # Batches of 64 Ki rows instead of the driver's 1 Ki: fewer, larger chunks for the frames.
        cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(BATCH_ROWS)})
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                reply = _handle(cursor, json.loads(line))
            except (adbc_driver_manager.Error, OSError, pa.ArrowException) as exc:
                reply = _failure(exc)
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()
    finally:
        cursor.close()
        connection.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
