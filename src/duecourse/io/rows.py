"""A small import file read as text rows, each with the row number an editor shows: the header and the
data rows of a CSV (the line the record starts on; blank lines skipped) or of a Parquet file (data row
+ 1, as in the CSV it was made from). For the imports that check their rows one by one (account
attributes, consents, contacts, holds); the bulk imports use ``io/readers.py``."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import polars as pl

from duecourse.domain.errors import Problem, ProblemsError


def read_rows(path: Path, *, parquet: bool = True) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header (stripped) and every non-blank data row with its row number; every problem with the file
    itself (missing, not UTF-8, empty, another extension) raised as ``ProblemsError``."""
    file = str(path)
    if not path.is_file():
        raise ProblemsError([Problem("import.unreadable", "no such file", file)])
    suffix = path.suffix.lower()
    if parquet and suffix in {".parquet", ".pq"}:
        try:
            frame = pl.read_parquet(path)
        except (OSError, pl.exceptions.PolarsError) as error:
            raise ProblemsError(
                [Problem("import.unreadable", f"not a Parquet file: {error}", file)]
            ) from None
        frame = frame.select(pl.all().cast(pl.String))
        rows = [
            (n + 2, ["" if v is None else str(v) for v in row]) for n, row in enumerate(frame.iter_rows())
        ]
        return list(frame.columns), rows
    if suffix != ".csv":
        wanted = ".csv or .parquet" if parquet else ".csv"
        raise ProblemsError([Problem("import.bad_extension", f"the file must be {wanted}", file)])
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as error:
        raise ProblemsError([Problem("import.unreadable", f"cannot read the file: {error}", file)]) from None
    except UnicodeDecodeError as error:
        message = f"the file is not UTF-8 text ({error.reason} at byte {error.start})"
        raise ProblemsError([Problem("import.not_utf8", message, file)]) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise ProblemsError(
            [Problem("import.empty", "the file is empty: a header row is required", file)]
        ) from None
    out: list[tuple[int, list[str]]] = []
    start = reader.line_num + 1
    for row in reader:
        if any(cell.strip() for cell in row):
            out.append((start, row))
        start = reader.line_num + 1
    return [h.strip() for h in header], out


def check_header(
    header: list[str], required: tuple[str, ...], optional: tuple[str, ...], file: str, what: str
) -> None:
    """Raise every problem of a header at once: a required column missing, a column that is not one of
    ``what`` files (``required`` and ``optional``), a column there twice."""
    problems = [
        Problem("import.missing_column", f"the header has no {name} column", f"{file}:1")
        for name in required
        if name not in header
    ]
    problems += [
        Problem("import.unexpected_column", f"{name!r} is not a column of a {what} file", f"{file}:1:{name}")
        for name in header
        if name not in required + optional
    ]
    problems += [
        Problem("import.repeated_column", "the column is there twice", f"{file}:1:{h}")
        for h in sorted({h for h in header if header.count(h) > 1})
    ]
    if problems:
        raise ProblemsError(problems)
