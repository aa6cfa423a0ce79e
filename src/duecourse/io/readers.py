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
from collections.abc import Callable, Mapping, Sequence
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

# [0-9], never \d: the Rust regex \d also matches non-ASCII digits, which would not cast to integers.
_AMOUNT_SHAPE = r"^[0-9]+(\.[0-9]+)?$"
_DATE_SHAPE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_PHONE_SHAPE = r"^\+[1-9][0-9]{6,14}$"  # E.164: a country code and at most 15 digits in all
_EMAIL_SHAPE = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
_COUNTRY_SHAPE = r"^[A-Z]{2}$"  # ISO 3166-1 alpha-2

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
    optional: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required + self.optional


_LAYOUTS: Mapping[str, _Layout] = {
    "customers": _Layout(tuple(FRAMES["customers"])),
    "accounts": _Layout(("account_id", "customer_id", "product_code", "opened_on")),
    "dues": _Layout(
        ("account_id", "due_id", "due_date", "amount", "component"), ("minimum_amount", "posted_on")
    ),
    "payments": _Layout(("payment_id", "account_id", "paid_on", "amount")),
}

_Row = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class _Check:
    """One row rule: ``bad`` is true on the rows that break it; ``message`` words it for one such row."""

    code: str
    column: str
    bad: pl.Expr
    message: Callable[[_Row], str]


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


ROW = _ROW  # with ``keep_row``: the row number the user sees (see the module's docstring)


def read_table(kind: str, path: Path, refs: Refs, *, keep_row: bool = False) -> pl.DataFrame:
    """Read a customers, accounts, dues or payments file (CSV or Parquet), or raise all its problems.

    With ``keep_row`` the frame has one more column, ``ROW``, the row number to name in a later problem
    about the row (e.g. an import conflicting with what is stored).
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
    frame = frame.filter(~pl.all_horizontal(pl.col(c) == "" for c in layout.columns))
    if kind in ("dues", "payments"):
        frame = _attach_digits(frame, refs)
    plan = _PLANS[kind](refs)
    return _run(plan, frame, file, FRAMES[kind], keep_row=keep_row)


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


def _load_csv(path: Path, file: str, layout: _Layout) -> pl.DataFrame:
    """Every column as String, empty cells as "", plus the line number of each record."""
    raw = _read_bytes(path, file)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        message = f"not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); save the file as UTF-8"
        raise ProblemsError([Problem("import.not_utf8", message, file)]) from None
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise _empty_file(file, layout)
    end = text.find("\n")
    header = next(csv.reader([text if end < 0 else text[:end]]))
    _check_header(header, layout, file)
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
        raise ProblemsError(_diagnose_csv(text, len(header), file, exc)) from None
    frame = frame.with_columns(pl.all().fill_null(""))
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


def _attach_digits(frame: pl.DataFrame, refs: Refs) -> pl.DataFrame:
    """Add each row's account currency minor digits (null: the account is not known)."""
    if refs.account_digits is None:
        return frame.with_columns(pl.lit(DEFAULT_MINOR_DIGITS, pl.Int64).alias(_DIGITS))
    table = refs.account_digits.select(
        pl.col("account_id").cast(pl.String), pl.col("minor_digits").cast(pl.Int64).alias(_DIGITS)
    )
    if table.get_column("account_id").is_duplicated().any():
        raise ValueError("refs.account_digits holds an account_id more than once")
    return frame.join(table, on="account_id", how="left", maintain_order="left")


# --- running the checks -----------------------------------------------------------------------------


def _run(
    plan: _Plan, frame: pl.DataFrame, file: str, schema: Mapping[str, pl.DataType], *, keep_row: bool
) -> pl.DataFrame:
    masks = [f"_bad_{i}" for i in range(len(plan.checks))]
    lazy = frame.lazy()
    for stage in plan.stages:
        lazy = lazy.with_columns(stage)
    lazy = lazy.with_columns(
        check.bad.fill_null(False).alias(mask) for check, mask in zip(plan.checks, masks, strict=True)
    )
    checked = lazy.collect()
    total = int(checked.select(pl.sum_horizontal(pl.col(masks).sum())).item()) if masks else 0
    if total:
        failed = checked.filter(pl.any_horizontal(masks)).head(MAX_PROBLEMS).to_dicts()
        problems = [
            Problem(check.code, check.message(row), f"{file}:{row[_ROW]}:{check.column}")
            for row in failed
            for check, mask in zip(plan.checks, masks, strict=True)
            if row[mask]
        ]
        raise ProblemsError(_capped(problems, total, file))
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


def _valid_id(column: str) -> pl.Expr:
    """Non-empty and without surrounding spaces: the ids worth looking up and comparing."""
    return (pl.col(column) != "") & (pl.col(column) == pl.col(column).str.strip_chars())


def _required(column: str) -> _Check:
    return _Check("import.empty_value", column, _blank(column), lambda _row: f"{column} is empty")


def _id(column: str) -> list[_Check]:
    spaced = ~_blank(column) & (pl.col(column) != pl.col(column).str.strip_chars())
    control = ~spaced & pl.col(column).str.contains(r"[\x00-\x1f\x7f]")
    return [
        _required(column),
        _Check(
            "import.bad_id", column, spaced, lambda row: f"{row[column]!r} has leading or trailing spaces"
        ),
        _Check(
            "import.bad_id",
            column,
            control,
            lambda row: f"{row[column]!r} holds a line break or another control character",
        ),
    ]


def _unique(key: tuple[str, ...], describe: Callable[[_Row], str]) -> tuple[pl.Expr, _Check]:
    """The repeats of a key: each is reported on its own row, naming the row it repeats."""
    first = f"_first_{'_'.join(key)}"
    helper = pl.col(_ROW).first().over(list(key)).alias(first)
    bad = pl.all_horizontal(_valid_id(c) for c in key) & (pl.col(_ROW) != pl.col(first))
    check = _Check(
        "import.duplicate_id",
        key[-1],
        bad,
        lambda row: f"duplicate {describe(row)} (first on row {row[first]})",
    )
    return helper, check


def _choice(column: str, choices: Sequence[str], what: str) -> list[_Check]:
    listed = ", ".join(choices)
    unknown = ~_blank(column) & ~pl.col(column).is_in(list(choices))
    return [
        _Check(
            "import.empty_value",
            column,
            _blank(column),
            lambda _row: f"{column} is empty (expected: {listed})",
        ),
        _Check(
            "import.unknown_value",
            column,
            unknown,
            lambda row: f"unknown {what} {row[column]!r} (expected: {listed})",
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
    bad = ~_blank(column) & pl.col(_date(column)).is_null()
    checks = [_required(column)] if required else []
    checks.append(_Check("import.bad_date", column, bad, lambda row: _date_reason(row[column])))
    return checks


def _amount_helpers(column: str) -> tuple[tuple[pl.Expr, ...], tuple[pl.Expr, ...]]:
    """Two stages: the amount's parts, then its minor units in the account's digits.

    ``_ok_`` is true when the cell has the shape of a plain decimal; ``_int_`` is the whole part without
    leading zeros and ``_frac_`` the decimals without trailing zeros (so ``0.50`` has one decimal place).
    ``_minor_`` = whole * 10**digits + decimals right-padded to digits, in Int64 (never a float).
    """
    text = pl.col(column)
    parts = text.str.split_exact(".", 1)
    first = (
        text.str.contains(_AMOUNT_SHAPE).alias(f"_ok_{column}"),
        parts.struct.field("field_0").str.strip_chars_start("0").alias(f"_int_{column}"),
        parts.struct.field("field_1").fill_null("").str.strip_chars_end("0").alias(f"_frac_{column}"),
    )
    ok, whole, frac, digits = (
        pl.col(f"_ok_{column}"),
        pl.col(f"_int_{column}"),
        pl.col(f"_frac_{column}"),
        pl.col(_DIGITS),
    )
    fits = (frac.str.len_chars() <= digits) & (whole.str.len_chars() + digits <= _MAX_MINOR_DIGITS)
    # A leading "0" makes "" (no whole part, or no decimals with digits 0) cast to 0.
    whole_value = pl.concat_str(pl.lit("0"), whole).cast(pl.Int64, strict=False)
    frac_value = pl.concat_str(pl.lit("0"), frac.str.pad_end(digits, "0")).cast(pl.Int64, strict=False)
    minor = whole_value * pl.lit(10, pl.Int64).pow(digits) + frac_value
    second = (pl.when(ok & fits).then(minor).alias(f"_minor_{column}"),)
    return first, second


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
    ok, whole, frac, digits = (
        pl.col(f"_ok_{column}"),
        pl.col(f"_int_{column}"),
        pl.col(f"_frac_{column}"),
        pl.col(_DIGITS),
    )
    present = pl.lit(True) if required else ~_blank(column)
    checks = [
        _Check(
            "import.bad_amount",
            column,
            present & ~ok,
            lambda row: _amount_reason(row[column], column, positive=positive),
        ),
        _Check(
            "import.too_many_decimals",
            column,
            ok & (frac.str.len_chars() > digits),
            lambda row: _places_reason(row[column], row[_DIGITS]),
        ),
        _Check(
            "import.amount_too_large",
            column,
            ok & (frac.str.len_chars() <= digits) & (whole.str.len_chars() + digits > _MAX_MINOR_DIGITS),
            lambda row: f"{row[column]} is too large for an amount",
        ),
    ]
    if positive:
        zero = ok & (whole == "") & (frac == "")
        checks.append(
            _Check(
                "import.amount_not_positive",
                column,
                zero,
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
        )
    ]


@cache
def _timezones() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


def _customers_plan(refs: Refs) -> _Plan:
    unique, duplicate = _unique(("customer_id",), lambda row: f"customer_id {row['customer_id']!r}")
    unknown_zone = ~_blank("timezone") & ~pl.col("timezone").is_in(list(_timezones()))
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
    return _Plan(((unique,),), tuple(checks), tuple(pl.col(c) for c in FRAMES["customers"]))


def _accounts_plan(refs: Refs) -> _Plan:
    unique, duplicate = _unique(("account_id",), lambda row: f"account_id {row['account_id']!r}")
    checks = [*_id("account_id"), duplicate, *_id("customer_id")]
    if refs.customer_ids is not None:
        known = refs.customer_ids.cast(pl.String).implode()
        unknown = _valid_id("customer_id") & ~pl.col("customer_id").is_in(known)
        checks.append(
            _Check(
                "import.unknown_customer",
                "customer_id",
                unknown,
                lambda row: f"customer {row['customer_id']!r} is not imported",
            )
        )
    checks.extend(_id("product_code"))
    if refs.product_digits is not None:
        configured = ", ".join(sorted(refs.product_digits))
        unknown = _valid_id("product_code") & ~pl.col("product_code").is_in(list(refs.product_digits))
        checks.append(
            _Check(
                "import.unknown_product",
                "product_code",
                unknown,
                lambda row: f"unknown product {row['product_code']!r} (configured: {configured})",
            )
        )
    checks.extend(_date_checks("opened_on", required=True))
    output = (
        pl.col("account_id"),
        pl.col("customer_id"),
        pl.col("product_code"),
        pl.col(_date("opened_on")).alias("opened_on"),
    )
    return _Plan(((unique, _date_helper("opened_on")),), tuple(checks), output)


def _dues_plan(refs: Refs) -> _Plan:
    unique, duplicate = _unique(
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
        (unique, _date_helper("due_date"), _date_helper("posted_on"), *amount_parts, *minimum_parts),
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
    return _Plan(stages, tuple(checks), output)


def _payments_plan(refs: Refs) -> _Plan:
    unique, duplicate = _unique(("payment_id",), lambda row: f"payment_id {row['payment_id']!r}")
    amount_parts, amount_minor = _amount_helpers("amount")
    checks = [
        *_id("payment_id"),
        duplicate,
        *_id("account_id"),
        *_known_account(refs),
        *_date_checks("paid_on", required=True),
        *_amount_checks("amount", required=True, positive=True),
    ]
    stages = ((unique, _date_helper("paid_on"), *amount_parts), amount_minor)
    output = (
        pl.col("payment_id"),
        pl.col("account_id"),
        pl.col(_date("paid_on")).alias("paid_on"),
        pl.col("_minor_amount").alias("amount_minor"),
    )
    return _Plan(stages, tuple(checks), output)


_PLANS: Mapping[str, Callable[[Refs], _Plan]] = {
    "customers": _customers_plan,
    "accounts": _accounts_plan,
    "dues": _dues_plan,
    "payments": _payments_plan,
}
