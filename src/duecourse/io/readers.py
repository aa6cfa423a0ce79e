"""Read customers, accounts, dues and payments files into the frames of ``engine.schema``.

Every cell is read as text (so an id like ``007`` survives) and checked by vectorised Polars expressions;
Python loops only over the rows that failed, to word their problems. Every problem in a file is raised at
once in one ``ProblemsError`` (capped at ``MAX_PROBLEMS``, then one problem saying how many more there are).

Where a problem is: ``FILE:ROW:COLUMN``.

* FILE is the path as the caller gave it.
* ROW is the line of the CSV on which the record starts: the header is row 1 and the first data row is
  row 2, as in an editor (a quoted cell that holds a line break moves the following rows down). In a
  Parquet file ROW is the 1-based data row number + 1, so the numbers read the same as in the CSV the
  Parquet file was made from.
* COLUMN is the column's name in the header.

A problem with the whole file (not UTF-8, empty, an unknown extension, missing, unexpected or repeated
header columns) has source ``FILE`` or ``FILE:1:COLUMN``; the rows of such a file are not checked.

A large file is checked in slices of rows (``open_table(...).chunks(rows)``) so that an importer can write one
slice while the next is checked; every problem of the whole file is still found, and raised after the last
slice, so the importer writes nothing of a file with a problem. A repeated id is found over the whole file
before the first slice.

Rules worth knowing: a row whose cells are all empty (a blank line) is skipped; a row with fewer cells than
the header has its missing trailing cells read as empty; amounts are plain decimals (``1000.00``, ``1000``)
converted to integer minor units of the account's currency with integer arithmetic, never a float; trailing
zeros after the decimal point do not count as decimal places (``1000.00`` is a valid JPY amount).
"""

from __future__ import annotations

import csv
import io
import re
import zoneinfo
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import polars as pl

from duecourse.domain.errors import Problem, ProblemsError
from duecourse.domain.model import COMPONENTS, JURISDICTIONS, LOCALES
from duecourse.engine.schema import FRAMES

MAX_PROBLEMS = 1000

# Used to convert dues and payments amounts when the caller gives no account_digits (most currencies have 2).
DEFAULT_MINOR_DIGITS = 2

# Int64 holds 18 whole decimal digits; a longer amount cannot be stored in minor units.
_MAX_MINOR_DIGITS = 18

# Private frame columns start with "_": no input column does (the header is checked first).
_ROW = "_row"
_DIGITS = "_digits"
_FIRST = "_first"  # on a repeated key: the row it first appeared on (null on first appearances)

# [0-9], never \d: the Rust regex \d also matches non-ASCII digits, which would not cast to integers.
_AMOUNT_SHAPE = r"^[0-9]+(\.[0-9]+)?$"
_DATE_SHAPE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_PHONE_SHAPE = r"^\+[1-9][0-9]{6,14}$"  # E.164: a country code and at most 15 digits in all
_EMAIL_SHAPE = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
_COUNTRY_SHAPE = r"^[A-Z]{2}$"  # ISO 3166-1 alpha-2
_PLAIN_ID = r"^[!-~]+$"  # printable ASCII without spaces

_BOM = "\ufeff".encode()
_VISIBLE_ASCII = re.compile(rb"[!-~]")

_CSV_SUFFIXES = (".csv",)
_PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True)
class Refs:
    """What the file may refer to (built by the caller from the store and config).

    Attributes:
        customer_ids: known customer ids (for accounts files); None = don't check.
        product_digits: product_code -> currency minor digits (accounts files); None = don't check.
        account_digits: columns account_id (String), minor_digits (Int64) for dues and payments files;
            None = don't check the accounts and convert amounts with ``DEFAULT_MINOR_DIGITS``.
    """

    customer_ids: pl.Series | None = None
    product_digits: Mapping[str, int] | None = None
    account_digits: pl.DataFrame | None = None


@dataclass(frozen=True, slots=True)
class _Layout:
    """The header of one kind of file: columns that must be there and columns that may be."""

    required: tuple[str, ...]
    key: tuple[str, ...]
    optional: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required + self.optional


_LAYOUTS: Mapping[str, _Layout] = {
    "customers": _Layout(tuple(FRAMES["customers"]), ("customer_id",)),
    "accounts": _Layout(("account_id", "customer_id", "product_code", "opened_on"), ("account_id",)),
    "dues": _Layout(
        ("account_id", "due_id", "due_date", "amount", "component"),
        ("account_id", "due_id"),
        ("minimum_amount", "posted_on"),
    ),
    "payments": _Layout(("payment_id", "account_id", "paid_on", "amount"), ("payment_id",)),
}

_Row = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class _Check:
    """One row rule: ``bad`` is true on the rows that break it; ``message`` words it for one such row.

    ``maybe`` (None: ``bad`` itself) is a cheaper expression, true at least on every row ``bad`` is: the
    rules are worked out only on the rows some ``maybe`` holds for, usually none (see ``_check``).
    """

    code: str
    column: str
    bad: pl.Expr
    message: Callable[[_Row], str]
    maybe: pl.Expr | None = None


@dataclass(frozen=True, slots=True)
class _Plan:
    """How to check and convert one kind of file.

    Attributes:
        stages: helper columns, added in order; a stage may use the columns of the stages before it.
        checks: the row rules, in the order their problems are listed within a row.
        output: the expressions that build the frame of ``engine.schema``.
    """

    stages: tuple[tuple[pl.Expr, ...], ...]
    checks: tuple[_Check, ...]
    output: tuple[pl.Expr, ...]
    fixups: tuple[Callable[[pl.DataFrame], pl.DataFrame], ...] = ()


ROW = _ROW  # with ``keep_row``: the row number the user sees (see the module's docstring)


def read_table(kind: str, path: Path, refs: Refs, *, keep_row: bool = False) -> pl.DataFrame:
    """Read a customers, accounts, dues or payments file (CSV or Parquet), or raise all its problems.

    With ``keep_row`` the frame has one more column, ``ROW``, the row number to name in a later problem
    about the row (e.g. an import conflicting with what is stored).
    """
    (frame,) = open_table(kind, path, refs).chunks(None, keep_row=keep_row)
    return frame


@dataclass(frozen=True)
class Table:
    """A file read whole and checked as a file (encoding, header, CSV shape, repeated ids); its rows are
    checked by ``chunks``.

    Attributes:
        kind: customers, accounts, dues or payments.
        file: the path as the caller gave it (the FILE of every problem).
        key: the columns that identify a row (``account_id``, ``due_id`` for dues).
        height: the number of rows (blank lines not counted).
    """

    kind: str
    file: str
    key: tuple[str, ...]
    _frame: pl.DataFrame
    _plan: _Plan

    @property
    def height(self) -> int:
        return self._frame.height

    def keys(self) -> pl.DataFrame:
        """The keys as written in the file, before the rows are checked, of the rows whose key could
        pass the checks (no cell empty or holding a control character): what to look up among the
        stored rows while the rows are checked (a key that fails the checks stops the import anyway)."""
        usable = pl.all_horizontal(
            (pl.col(name) != "") & ~pl.col(name).str.contains(r"[\x00-\x1f\x7f]") for name in self.key
        )
        return self._frame.select(self.key).filter(usable)

    def chunks(self, rows: int | None, *, keep_row: bool = False) -> Iterator[pl.DataFrame]:
        """The rows, checked and converted, in slices of ``rows`` (None: all in one); at least one slice.

        Slices come out while they are valid; once a row breaks a rule no more are yielded, the rest are
        still checked, and after the last one every problem of the file is raised in one
        ``ProblemsError`` (as ``read_table`` would). A caller that writes the slices must therefore write
        them in one transaction and roll it back on that error.
        """
        if rows is not None and rows < 1:
            raise ValueError(f"need rows >= 1, got {rows}")
        step = rows or max(self.height, 1)
        schema = FRAMES[self.kind]
        failed: list[dict[str, Any]] = []
        total = 0
        for start in range(0, max(self.height, 1), step):
            staged, checked, bad = _check(self._plan, self._frame.slice(start, step))
            total += bad
            if bad:
                failed.extend(_failed_rows(self._plan, checked, MAX_PROBLEMS - len(failed)))
            elif not total:
                yield _output(self._plan, staged, schema, keep_row=keep_row)
        if total:
            raise ProblemsError(_capped(_worded(self._plan, failed, self.file), total, self.file))


def open_table(kind: str, path: Path, refs: Refs | Callable[[], Refs]) -> Table:
    """Read a customers, accounts, dues or payments file (CSV or Parquet) and check it as a file.

    Raises the problems of the file as a whole (not UTF-8, empty, header); the rows are checked by
    ``Table.chunks``. ``refs`` may be a function that returns them, called once the file is read: an
    importer looks them up in the database meanwhile.
    """
    if kind not in _LAYOUTS:
        raise ValueError(f"unknown kind {kind!r}; expected one of: {', '.join(_LAYOUTS)}")
    layout = _LAYOUTS[kind]
    file = str(path)
    suffix = path.suffix.lower()
    if suffix in _CSV_SUFFIXES:
        frame = _load_csv(path, file, layout)
    elif suffix in _PARQUET_SUFFIXES:
        frame = _load_parquet(path, file, layout)
    else:
        expected = ", ".join(_CSV_SUFFIXES + _PARQUET_SUFFIXES)
        raise ProblemsError(
            [
                Problem(
                    "import.unknown_extension", f"unknown file type {suffix!r} (expected: {expected})", file
                )
            ]
        )
    frame = frame.with_columns(pl.lit("").alias(c) for c in layout.optional if c not in frame.columns)
    frame = _without_blank_rows(frame, layout)
    if not isinstance(refs, Refs):
        refs = refs()
    if kind in ("dues", "payments"):
        frame = _attach_digits(frame, refs)
    frame = _mark_repeats(frame, layout.key)
    return Table(kind, file, layout.key, frame, _PLANS[kind](refs))


# --- loading ----------------------------------------------------------------------------------------


def _read_bytes(path: Path, file: str) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ProblemsError(
            [Problem("import.unreadable_file", f"cannot read the file: {exc.strerror or exc}", file)]
        ) from exc
    return raw


def _empty_file(file: str, layout: _Layout) -> ProblemsError:
    return ProblemsError(
        [
            Problem(
                "import.empty_file",
                f"the file is empty; expected a header row: {', '.join(layout.columns)}",
                file,
            )
        ]
    )


def _decoded(raw: bytes, file: str) -> str:
    """The whole file as text, or the problem of the first byte that is not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        message = f"not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); save the file as UTF-8"
        raise ProblemsError([Problem("import.not_utf8", message, file)]) from None


def _load_csv(path: Path, file: str, layout: _Layout) -> pl.DataFrame:
    """Every column as String, empty cells as "", plus the line number of each record.

    The whole file is decoded in Python only when something is wrong with it: Polars checks the UTF-8 of
    every cell as it reads (a large file would otherwise be held twice, as bytes and as text); a file
    that is not UTF-8 is reported as such before any other problem, as if it had been decoded first.
    """
    raw = _read_bytes(path, file)
    start = len(_BOM) if raw.startswith(_BOM) else 0
    # Printable ASCII is never whitespace: only a file without any needs decoding to tell it is empty.
    if _VISIBLE_ASCII.search(raw, start) is None:
        if not _decoded(raw, file).removeprefix("\ufeff").strip():
            raise _empty_file(file, layout)
    end = raw.find(b"\n", start)
    try:
        first_line = raw[start : end if end >= 0 else len(raw)].decode("utf-8")
    except UnicodeDecodeError:
        _decoded(raw, file)
        raise
    header = next(csv.reader([first_line]))
    try:
        _check_header(header, layout, file)
    except ProblemsError:
        _decoded(raw, file)
        raise
    try:
        frame = pl.read_csv(
            raw,
            has_header=True,
            infer_schema=False,
            quote_char='"',
            empty_string_is_null=False,
            raise_if_empty=False,
        )
    except pl.exceptions.PolarsError as exc:
        text = _decoded(raw, file).removeprefix("\ufeff")
        raise ProblemsError(_diagnose_csv(text, len(header), file, exc)) from None
    # Only a row with fewer cells than the header has nulls (its missing trailing cells).
    nulls = frame.null_count().row(0, named=True)
    frame = frame.with_columns(pl.col(c).fill_null("") for c, n in nulls.items() if n)
    # Line numbers: record index + 2, plus the line breaks inside the quoted cells of earlier records.
    # Each record ends with one "\n", so more "\n" than records + header means some cell holds one.
    row = pl.int_range(pl.len(), dtype=pl.Int64) + 2
    if raw.count(b"\n") > frame.height + 1:
        breaks = pl.sum_horizontal(pl.col(c).str.count_matches("\n", literal=True) for c in header)
        row = row + breaks.cum_sum().shift(1, fill_value=0).cast(pl.Int64)
    return frame.with_columns(row.alias(_ROW))


def _diagnose_csv(text: str, width: int, file: str, exc: Exception) -> list[Problem]:
    """Find the rows Polars could not read (only run when it failed): rows with the wrong number of cells."""
    problems: list[Problem] = []
    reader = csv.reader(io.StringIO(text, newline="\n"))  # lines end at "\n" only, as for Polars
    start = 1
    try:
        for cells in reader:
            if cells and len(cells) != width and start > 1:
                problems.append(
                    Problem(
                        "import.ragged_row",
                        f"row has {len(cells)} cells; the header has {width}",
                        f"{file}:{start}",
                    )
                )
            start = reader.line_num + 1
    except csv.Error as csv_exc:
        problems.append(
            Problem("import.unreadable_csv", f"cannot be read as CSV: {csv_exc}", f"{file}:{start}")
        )
    if not problems:
        problems.append(Problem("import.unreadable_csv", f"cannot be read as CSV: {exc}", file))
    return _capped(problems, len(problems), file)


def _load_parquet(path: Path, file: str, layout: _Layout) -> pl.DataFrame:
    """Every column cast to String (typed ids, dates and decimals become their text), nulls as ""."""
    try:
        if path.stat().st_size == 0:
            raise _empty_file(file, layout)
        frame = pl.read_parquet(path)
    except OSError as exc:
        raise ProblemsError(
            [Problem("import.unreadable_file", f"cannot read the file: {exc.strerror or exc}", file)]
        ) from exc
    except pl.exceptions.PolarsError as exc:
        raise ProblemsError(
            [Problem("import.unreadable_parquet", f"cannot be read as Parquet: {exc}", file)]
        ) from None
    _check_header(frame.columns, layout, file)
    problems = [
        _bad_type(name, dtype, file)
        for name, dtype in frame.schema.items()
        if not (
            dtype in (pl.String, pl.Date, pl.Null, pl.Categorical)
            or dtype.is_integer()
            or isinstance(dtype, (pl.Decimal, pl.Enum))
        )
    ]
    if problems:
        raise ProblemsError(problems)
    return frame.select(pl.all().cast(pl.String).fill_null("")).with_columns(
        (pl.int_range(pl.len(), dtype=pl.Int64) + 2).alias(_ROW)
    )


def _bad_type(name: str, dtype: pl.DataType, file: str) -> Problem:
    if dtype.is_float():
        message = (
            f"column {name!r} holds {dtype} numbers; floats are not exact, "
            "so write amounts as text or decimals"
        )
    else:
        message = f"column {name!r} holds {dtype}; expected text, whole numbers, dates or decimals"
    return Problem("import.bad_column_type", message, f"{file}:1:{name}")


def _check_header(header: Sequence[str], layout: _Layout, file: str) -> None:
    """Raise the header's problems: repeated, unexpected and missing columns."""
    expected = ", ".join(layout.columns)
    problems: list[Problem] = []
    seen: set[str] = set()
    for name in header:
        if name in seen:
            problems.append(
                Problem("import.duplicate_column", f"column {name!r} appears twice", f"{file}:1:{name}")
            )
        elif name not in layout.columns:
            problems.append(
                Problem(
                    "import.unexpected_column",
                    f"unexpected column {name!r} (expected: {expected})",
                    f"{file}:1:{name}",
                )
            )
        seen.add(name)
    problems.extend(
        Problem(
            "import.missing_column", f"missing column {name!r} (expected: {expected})", f"{file}:1:{name}"
        )
        for name in layout.required
        if name not in seen
    )
    if problems:
        raise ProblemsError(problems)


def _without_blank_rows(frame: pl.DataFrame, layout: _Layout) -> pl.DataFrame:
    """The rows with at least one cell that is not empty (only looked for where the first cell is)."""
    first = layout.columns[0]
    if not frame.height or not frame.select((pl.col(first) == "").any()).item():
        return frame
    return frame.filter(~pl.all_horizontal(pl.col(c) == "" for c in layout.columns))


def _attach_digits(frame: pl.DataFrame, refs: Refs) -> pl.DataFrame:
    """Add each row's account currency minor digits (null: the account is not known).

    The rows of one account usually come together, so each run of equal ``account_id`` is looked up
    once and the answer spread over the run (a third of the time of joining every row).
    """
    if refs.account_digits is None:
        return frame.with_columns(pl.lit(DEFAULT_MINOR_DIGITS, pl.Int64).alias(_DIGITS))
    table = refs.account_digits.select(
        pl.col("account_id").cast(pl.String), pl.col("minor_digits").cast(pl.Int64).alias(_DIGITS)
    )
    if table.get_column("account_id").is_duplicated().any():
        raise ValueError("refs.account_digits holds an account_id more than once")
    account = pl.col("account_id")
    starts = (account != account.shift(1)).fill_null(True)
    runs = frame.select(starts.alias("start"), (starts.cum_sum().cast(pl.UInt32) - 1).alias("run"))
    ids = frame.select(account.filter(runs.get_column("start")))
    digits = ids.join(table, on="account_id", how="left", maintain_order="left").get_column(_DIGITS)
    return frame.with_columns(digits.gather(runs.get_column("run")).alias(_DIGITS))


def _mark_repeats(frame: pl.DataFrame, key: tuple[str, ...]) -> pl.DataFrame:
    """Add ``_FIRST``: on each row whose key appeared on an earlier row, that row; null elsewhere.

    Counting distinct hashes of the key tells, in one pass, that no key repeats (the usual case); only
    otherwise (or on a collision of hashes) are the rows grouped by the key itself.
    """
    hashed = pl.col(key[0]).hash(seed=0)
    for seed, name in enumerate(key[1:], start=1):
        hashed = hashed ^ pl.col(name).hash(seed=seed)
    if frame.select(hashed.n_unique()).item() == frame.height:
        return frame.with_columns(pl.lit(None, pl.Int64).alias(_FIRST))
    first = pl.col(_ROW).first().over(list(key))
    return frame.with_columns(pl.when(first != pl.col(_ROW)).then(first).alias(_FIRST))


# --- running the checks -----------------------------------------------------------------------------


def _check(plan: _Plan, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """The frame with its helper columns; the suspect rows (those some check's ``maybe`` holds for) with
    one mask per check; and how many cells broke a rule.

    Most rules on text cost a pass over every string (stripping spaces, matching a pattern); an id of
    printable ASCII without spaces passes them all, so they are worked out only on the rows that are not
    that plain, or whose other cheap signs (a null date, a shape that is not an amount) say that a rule
    may be broken. On a valid file that is no row at all.
    """
    masks = [f"_bad_{i}" for i in range(len(plan.checks))]
    lazy = frame.lazy()
    for stage in plan.stages:
        lazy = lazy.with_columns(stage)
    staged = lazy.collect()
    for fixup in plan.fixups:
        staged = fixup(staged)
    maybe = pl.any_horizontal(
        (check.bad if check.maybe is None else check.maybe).fill_null(False) for check in plan.checks
    )
    suspect = staged.filter(maybe) if plan.checks else staged.clear()
    checked = suspect.with_columns(
        check.bad.fill_null(False).alias(mask) for check, mask in zip(plan.checks, masks, strict=True)
    )
    total = int(checked.select(pl.sum_horizontal(pl.col(masks).sum())).item()) if masks else 0
    return staged, checked, total


def _failed_rows(plan: _Plan, checked: pl.DataFrame, limit: int) -> list[dict[str, Any]]:
    """At most ``limit`` rows that broke a rule, as dicts (the words need their cells)."""
    if limit <= 0:
        return []
    masks = [f"_bad_{i}" for i in range(len(plan.checks))]
    return checked.filter(pl.any_horizontal(masks)).head(limit).to_dicts()


def _worded(plan: _Plan, failed: Sequence[_Row], file: str) -> list[Problem]:
    """The problems of the failed rows, in row then check order."""
    masks = [f"_bad_{i}" for i in range(len(plan.checks))]
    return [
        Problem(check.code, check.message(row), f"{file}:{row[_ROW]}:{check.column}")
        for row in failed
        for check, mask in zip(plan.checks, masks, strict=True)
        if row[mask]
    ]


def _output(
    plan: _Plan, checked: pl.DataFrame, schema: Mapping[str, pl.DataType], *, keep_row: bool
) -> pl.DataFrame:
    columns = [pl.col(name).cast(dtype) for name, dtype in schema.items()]
    return checked.select(*plan.output, *([_ROW] if keep_row else [])).select(
        *columns, *([pl.col(_ROW).cast(pl.Int64)] if keep_row else [])
    )


def _capped(problems: list[Problem], total: int, file: str) -> list[Problem]:
    if total <= MAX_PROBLEMS:
        return problems
    more = total - MAX_PROBLEMS
    return [
        *problems[:MAX_PROBLEMS],
        Problem("import.too_many_problems", f"{more} more problems found and not listed", file),
    ]


# --- the rules --------------------------------------------------------------------------------------


def _blank(column: str) -> pl.Expr:
    return pl.col(column).str.strip_chars() == ""


def _plain(column: str) -> pl.Expr:
    return pl.col(f"_plain_{column}")


def _plain_helper(column: str) -> pl.Expr:
    """True on an id of printable ASCII without spaces: not empty, no surrounding spaces, no control
    character, so it passes every rule on an id's text (one pattern instead of three passes)."""
    return pl.col(column).str.contains(_PLAIN_ID).alias(f"_plain_{column}")


def _valid_id(column: str) -> pl.Expr:
    """Non-empty and without surrounding spaces: the ids worth looking up and comparing."""
    return (pl.col(column) != "") & (pl.col(column) == pl.col(column).str.strip_chars())


def _required(column: str, maybe: pl.Expr | None = None) -> _Check:
    return _Check("import.empty_value", column, _blank(column), lambda _row: f"{column} is empty", maybe)


def _id(column: str) -> list[_Check]:
    """The rules on an id's text; the plan computes ``_plain_helper(column)`` in its first stage."""
    spaced = ~_blank(column) & (pl.col(column) != pl.col(column).str.strip_chars())
    control = ~spaced & pl.col(column).str.contains(r"[\x00-\x1f\x7f]")
    return [
        _required(column, ~_plain(column)),
        _Check(
            "import.bad_id",
            column,
            spaced,
            lambda row: f"{row[column]!r} has leading or trailing spaces",
            ~_plain(column),
        ),
        _Check(
            "import.bad_id",
            column,
            control,
            lambda row: f"{row[column]!r} holds a line break or another control character",
            ~_plain(column),
        ),
    ]


def _unique(key: tuple[str, ...], describe: Callable[[_Row], str]) -> _Check:
    """The repeats of a key (found over the whole file by ``_mark_repeats``): each is reported on its own
    row, naming the row it repeats."""
    bad = pl.all_horizontal(_valid_id(c) for c in key) & pl.col(_FIRST).is_not_null()
    return _Check(
        "import.duplicate_id",
        key[-1],
        bad,
        lambda row: f"duplicate {describe(row)} (first on row {row[_FIRST]})",
        pl.col(_FIRST).is_not_null(),
    )


def _choice(column: str, choices: Sequence[str], what: str) -> list[_Check]:
    listed = ", ".join(choices)
    outside = ~pl.col(column).is_in(list(choices))  # the choices are never blank
    unknown = ~_blank(column) & outside
    return [
        _Check(
            "import.empty_value",
            column,
            _blank(column),
            lambda _row: f"{column} is empty (expected: {listed})",
            outside,
        ),
        _Check(
            "import.unknown_value",
            column,
            unknown,
            lambda row: f"unknown {what} {row[column]!r} (expected: {listed})",
            outside,
        ),
    ]


def _shape(column: str, pattern: str, code: str, explain: str) -> _Check:
    """An optional text cell that, when not empty, must match ``pattern``."""
    bad = (pl.col(column) != "") & ~pl.col(column).str.contains(pattern)
    return _Check(code, column, bad, lambda row: f"{row[column]!r} {explain}")


def _date(column: str) -> str:
    return f"_date_{column}"


def _date_helper(column: str) -> pl.Expr:
    """The parsed date, null when the cell is not a real YYYY-MM-DD date (year 0000 included)."""
    text = pl.col(column)
    ok = text.str.contains(_DATE_SHAPE) & ~text.str.starts_with("0000")
    return pl.when(ok).then(text.str.to_date("%Y-%m-%d", strict=False)).alias(_date(column))


def _date_reason(value: str) -> str:
    if re.fullmatch(_DATE_SHAPE, value):
        return f"{value!r} is not a real date"
    return f"{value!r} is not a date in YYYY-MM-DD form"


def _date_checks(column: str, *, required: bool) -> list[_Check]:
    missing = pl.col(_date(column)).is_null()  # a blank cell is never a date
    bad = ~_blank(column) & missing
    checks = [_required(column, missing)] if required else []
    checks.append(
        _Check(
            "import.bad_date",
            column,
            bad,
            lambda row: _date_reason(row[column]),
            missing & (pl.col(column) != ""),
        )
    )
    return checks


def _amount_helpers(column: str) -> tuple[tuple[pl.Expr, ...], tuple[pl.Expr, ...]]:
    """Two stages: the amount's parts as integers, then what the checks and the output need.

    ``_ok_`` is true when the cell has the shape of a plain decimal. The whole part and the decimals are
    each cast to Int64 (``_w_``, ``_f_``; ``_s_`` counts the decimals as written, trailing zeros
    included), so that no string is built per row. Then, with d the account's digits:

    * ``_excess_``: more decimals than d once trailing zeros are dropped (``0.50`` has one decimal
      place): the last s - d decimals are not all zero, ``f % 10**(s-d) != 0``;
    * ``_large_``: the whole part has more than 18 - d digits (minor units would not fit 18 digits);
    * ``_zero_``: the amount is 0;
    * ``_minor_`` = whole * 10**d + the decimals scaled to d places, in Int64 (never a float);
    * ``_slow_``: a part with more digits than an Int64 holds (only possible with leading or trailing
      zeros, or an amount too large): ``_exact_amount`` works these rows out from the text.
    """
    text = pl.col(column)
    parts = text.str.split_exact(".", 1)
    decimals = parts.struct.field("field_1")
    fraction = decimals.cast(pl.Int64, strict=False)
    first = (
        text.str.contains(_AMOUNT_SHAPE).alias(f"_ok_{column}"),
        parts.struct.field("field_0").cast(pl.Int64, strict=False).alias(f"_w_{column}"),
        pl.when(decimals.is_null()).then(pl.lit(0, pl.Int64)).otherwise(fraction).alias(f"_f_{column}"),
        decimals.str.len_bytes().fill_null(0).cast(pl.Int64).alias(f"_s_{column}"),
    )
    ok, whole, frac, places, digits = (
        pl.col(f"_ok_{column}"),
        pl.col(f"_w_{column}"),
        pl.col(f"_f_{column}"),
        pl.col(f"_s_{column}"),
        pl.col(_DIGITS),
    )
    ten = pl.lit(10, pl.Int64)
    down = ten.pow((places - digits).clip(lower_bound=0))  # 10**(s-d) when s > d, else 1
    up = ten.pow((digits - places).clip(lower_bound=0))  # 10**(d-s) when d > s, else 1
    slow = ok & (whole.is_null() | frac.is_null() | (places > _MAX_MINOR_DIGITS))
    excess = ~slow & (places > digits) & (frac % down != 0)
    large = ~slow & (
        (digits > _MAX_MINOR_DIGITS)
        | (whole >= ten.pow((pl.lit(_MAX_MINOR_DIGITS, pl.Int64) - digits).clip(lower_bound=0)))
    )
    minor = whole * ten.pow(digits.clip(0, _MAX_MINOR_DIGITS)) + frac * up // down
    second = (
        slow.fill_null(False).alias(f"_slow_{column}"),
        excess.alias(f"_excess_{column}"),
        large.alias(f"_large_{column}"),
        (ok & ~slow & (whole == 0) & (frac == 0)).alias(f"_zero_{column}"),
        pl.when(ok & ~slow & ~excess & ~large).then(minor).alias(f"_minor_{column}"),
    )
    return first, second


def _exact_amount(column: str) -> Callable[[pl.DataFrame], pl.DataFrame]:
    """The fix-up of ``_amount_helpers`` for its ``_slow_`` rows: the same columns worked out on the text.

    The whole part without leading zeros and the decimals without trailing zeros are compared by their
    lengths, and the minor units built by padding the decimals to d digits; slower (a string per row),
    so only for the few rows that need it.
    """
    names = [f"_{part}_{column}" for part in ("excess", "large", "zero", "minor")]

    def fix(frame: pl.DataFrame) -> pl.DataFrame:
        rows = frame.get_column(f"_slow_{column}").arg_true()
        if rows.is_empty():
            return frame
        parts = pl.col(column).str.split_exact(".", 1)
        whole = parts.struct.field("field_0").str.strip_chars_start("0")
        frac = parts.struct.field("field_1").fill_null("").str.strip_chars_end("0")
        digits = pl.col(_DIGITS)
        excess = frac.str.len_chars() > digits
        large = whole.str.len_chars() + digits > _MAX_MINOR_DIGITS
        # A leading "0" makes "" (no whole part, or no decimals with digits 0) cast to 0.
        whole_value = pl.concat_str(pl.lit("0"), whole).cast(pl.Int64, strict=False)
        frac_value = pl.concat_str(pl.lit("0"), frac.str.pad_end(digits, "0")).cast(pl.Int64, strict=False)
        minor = whole_value * pl.lit(10, pl.Int64).pow(digits) + frac_value
        exact = frame[rows].select(
            excess.alias(names[0]),
            (~excess & large).alias(names[1]),
            ((whole == "") & (frac == "")).alias(names[2]),
            pl.when(~excess & ~large).then(minor).alias(names[3]),
        )
        return frame.with_columns(
            frame.get_column(name).clone().scatter(rows, exact.get_column(name)) for name in names
        )

    return fix


def _amount_reason(value: str, column: str, *, positive: bool) -> str:
    """Why a cell is not a plain decimal amount, in words a user can act on."""
    if value.strip() == "":
        return f"{column} is empty"
    if value != value.strip():
        return f"{value!r} has leading or trailing spaces"
    if value.startswith("-"):
        limit = "greater than 0" if positive else "0 or more"
        return f"{value!r} is negative; {column} must be {limit}"
    if "," in value:
        return f"{value!r} has a comma; write the amount without thousands separators, like 1000.00"
    if value.startswith("+"):
        return f"{value!r} has a sign; write the plain number, like 1000.00"
    if re.fullmatch(r"[0-9.]*[0-9][eE][+-]?[0-9]+", value):
        return f"{value!r} is in exponent notation; write the plain number, like 1000.00"
    if re.fullmatch(r"\.[0-9]+", value):
        return f"{value!r} needs a digit before the decimal point, like 0{value}"
    return f"{value!r} is not an amount; write digits with an optional decimal point, like 1000.00"


def _places_reason(value: str, digits: int) -> str:
    if digits == 0:
        return f"{value} has decimal places; the account's currency has no minor unit"
    return f"{value} has more than {digits} decimal places"


def _amount_checks(column: str, *, required: bool, positive: bool) -> list[_Check]:
    ok, excess, large = (pl.col(f"_ok_{column}"), pl.col(f"_excess_{column}"), pl.col(f"_large_{column}"))
    present = pl.lit(True) if required else ~_blank(column)
    checks = [
        _Check(
            "import.bad_amount",
            column,
            present & ~ok,
            lambda row: _amount_reason(row[column], column, positive=positive),
            ~ok if required else ~ok & (pl.col(column) != ""),
        ),
        _Check(
            "import.too_many_decimals",
            column,
            ok & excess,
            lambda row: _places_reason(row[column], row[_DIGITS]),
        ),
        _Check(
            "import.amount_too_large",
            column,
            ok & ~excess & large,
            lambda row: f"{row[column]} is too large for an amount",
        ),
    ]
    if positive:
        checks.append(
            _Check(
                "import.amount_not_positive",
                column,
                ok & pl.col(f"_zero_{column}"),
                lambda row: f"{column} must be greater than 0 (got {row[column]})",
            )
        )
    return checks


def _known_account(refs: Refs) -> list[_Check]:
    if refs.account_digits is None:
        return []
    bad = _valid_id("account_id") & pl.col(_DIGITS).is_null()
    return [
        _Check(
            "import.unknown_account",
            "account_id",
            bad,
            lambda row: f"account {row['account_id']!r} is not imported",
            pl.col(_DIGITS).is_null(),
        )
    ]


@cache
def _timezones() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


def _customers_plan(refs: Refs) -> _Plan:
    duplicate = _unique(("customer_id",), lambda row: f"customer_id {row['customer_id']!r}")
    unzoned = ~pl.col("timezone").is_in(list(_timezones()))
    unknown_zone = ~_blank("timezone") & unzoned
    checks = [
        *_id("customer_id"),
        duplicate,
        _required("name"),
        *_choice("locale", LOCALES, "locale"),
        _required("timezone"),
        _Check(
            "import.unknown_timezone",
            "timezone",
            unknown_zone,
            lambda row: f"unknown time zone {row['timezone']!r} (expected an IANA name like Asia/Shanghai)",
            unzoned,
        ),
        *_choice("jurisdiction", JURISDICTIONS, "jurisdiction"),
        _shape(
            "phone",
            _PHONE_SHAPE,
            "import.bad_phone",
            "is not an E.164 phone number ('+', country code and number, digits only, like +8613800138000)",
        ),
        _shape("email", _EMAIL_SHAPE, "import.bad_email", "does not look like an email address"),
        _shape(
            "country",
            _COUNTRY_SHAPE,
            "import.bad_country",
            "is not an ISO 3166 alpha-2 country code (two capital letters, like CN)",
        ),
    ]
    stages = ((_plain_helper("customer_id"),),)
    return _Plan(stages, tuple(checks), tuple(pl.col(c) for c in FRAMES["customers"]))


def _accounts_plan(refs: Refs) -> _Plan:
    duplicate = _unique(("account_id",), lambda row: f"account_id {row['account_id']!r}")
    checks = [*_id("account_id"), duplicate, *_id("customer_id")]
    if refs.customer_ids is not None:
        known = refs.customer_ids.cast(pl.String).implode()
        outside = ~pl.col("customer_id").is_in(known)
        checks.append(
            _Check(
                "import.unknown_customer",
                "customer_id",
                _valid_id("customer_id") & outside,
                lambda row: f"customer {row['customer_id']!r} is not imported",
                outside,
            )
        )
    checks.extend(_id("product_code"))
    if refs.product_digits is not None:
        configured = ", ".join(sorted(refs.product_digits))
        outside = ~pl.col("product_code").is_in(list(refs.product_digits))
        checks.append(
            _Check(
                "import.unknown_product",
                "product_code",
                _valid_id("product_code") & outside,
                lambda row: f"unknown product {row['product_code']!r} (configured: {configured})",
                outside,
            )
        )
    checks.extend(_date_checks("opened_on", required=True))
    output = (
        pl.col("account_id"),
        pl.col("customer_id"),
        pl.col("product_code"),
        pl.col(_date("opened_on")).alias("opened_on"),
    )
    plain = (_plain_helper("account_id"), _plain_helper("customer_id"), _plain_helper("product_code"))
    return _Plan(((*plain, _date_helper("opened_on")),), tuple(checks), output)


def _dues_plan(refs: Refs) -> _Plan:
    duplicate = _unique(
        ("account_id", "due_id"),
        lambda row: f"due {row['due_id']!r} of account {row['account_id']!r}",
    )
    amount_parts, amount_minor = _amount_helpers("amount")
    minimum_parts, minimum_minor = _amount_helpers("minimum_amount")
    above = pl.col("_minor_minimum_amount") > pl.col("_minor_amount")
    after = pl.col(_date("posted_on")) > pl.col(_date("due_date"))
    checks = [
        *_id("account_id"),
        *_known_account(refs),
        *_id("due_id"),
        duplicate,
        *_date_checks("due_date", required=True),
        *_amount_checks("amount", required=True, positive=True),
        *_choice("component", COMPONENTS, "component"),
        *_amount_checks("minimum_amount", required=False, positive=False),
        _Check(
            "import.minimum_above_amount",
            "minimum_amount",
            above,
            lambda row: f"minimum_amount {row['minimum_amount']} is more than amount {row['amount']}",
        ),
        *_date_checks("posted_on", required=False),
        _Check(
            "import.posted_after_due",
            "posted_on",
            after,
            lambda row: f"posted_on {row['posted_on']} is after due_date {row['due_date']}",
        ),
    ]
    stages = (
        (
            _plain_helper("account_id"),
            _plain_helper("due_id"),
            _date_helper("due_date"),
            _date_helper("posted_on"),
            *amount_parts,
            *minimum_parts,
        ),
        (*amount_minor, *minimum_minor),
    )
    output = (
        pl.col("account_id"),
        pl.col("due_id"),
        pl.col(_date("due_date")).alias("due_date"),
        pl.col("_minor_amount").alias("amount_minor"),
        pl.col("component"),
        pl.col("_minor_minimum_amount").alias("minimum_minor"),
        pl.col(_date("posted_on")).alias("posted_on"),
    )
    return _Plan(stages, tuple(checks), output, (_exact_amount("amount"), _exact_amount("minimum_amount")))


def _payments_plan(refs: Refs) -> _Plan:
    duplicate = _unique(("payment_id",), lambda row: f"payment_id {row['payment_id']!r}")
    amount_parts, amount_minor = _amount_helpers("amount")
    checks = [
        *_id("payment_id"),
        duplicate,
        *_id("account_id"),
        *_known_account(refs),
        *_date_checks("paid_on", required=True),
        *_amount_checks("amount", required=True, positive=True),
    ]
    stages = (
        (_plain_helper("payment_id"), _plain_helper("account_id"), _date_helper("paid_on"), *amount_parts),
        amount_minor,
    )
    output = (
        pl.col("payment_id"),
        pl.col("account_id"),
        pl.col(_date("paid_on")).alias("paid_on"),
        pl.col("_minor_amount").alias("amount_minor"),
    )
    return _Plan(stages, tuple(checks), output, (_exact_amount("amount"),))


_PLANS: Mapping[str, Callable[[Refs], _Plan]] = {
    "customers": _customers_plan,
    "accounts": _accounts_plan,
    "dues": _dues_plan,
    "payments": _payments_plan,
}
