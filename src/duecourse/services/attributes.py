"""Account attributes: values a strategy segment may choose by (a risk score, a branch, a campaign).

The attributes an account may carry are declared in ``duecourse.toml``::

    [attributes]
    risk_score = "number"
    branch = "text"

and imported with ``duecourse import attributes FILE`` (.csv or .parquet): the columns ``account_id``,
``valid_from`` (an ISO date) and one or more declared attributes. A value is in force from its
``valid_from`` until the next value of the same attribute of the account; an empty cell means "no value
from that day on". A scoring system's monthly file is imported as it is: a row for each account, the
month's date in ``valid_from``. The same account, attribute and day again with the same value changes
nothing; with another value it is an error (a new value takes a new day), so a re-run of an import is
harmless and history is never rewritten.

As every import: all or nothing, and every problem as ``FILE:ROW:COLUMN: reason``.

The run reads the values in force on its date (``values_as_of``) and gives them to the engine as one
column per attribute (``engine/schema.attribute_column``; a number in exact integer units of
10**-ATTRIBUTE_SCALE, a text as it is). The value of the run's date is used for every day the stage
search looks back at, so a segment chosen by an attribute is the segment of the account as it is known
today.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

import polars as pl
from sqlalchemy import Engine, select

from duecourse.bootstrap import App
from duecourse.config import ATTRIBUTE_RESERVED
from duecourse.domain.errors import Problem, ProblemsError
from duecourse.domain.terms import ATTRIBUTE_LIMIT, ATTRIBUTE_SCALE
from duecourse.engine.schema import attribute_column
from duecourse.io.rows import read_rows
from duecourse.store import outbox as store
from duecourse.store.frames import append_in, many_accounts, read_frame
from duecourse.store.tables import account_attributes, accounts

MAX_PROBLEMS = 1000
MAX_TEXT = 200
STORED: dict[str, pl.DataType] = {
    "account_id": pl.String(),
    "name": pl.String(),
    "valid_from": pl.Date(),
    "value": pl.String(),
}
_QUANTUM = Decimal(1).scaleb(-ATTRIBUTE_SCALE)


@dataclass(frozen=True, slots=True)
class AttributesImported:
    """What an import of attributes did: values added, values already there (the same)."""

    file: str
    rows: int
    added: int
    unchanged: int


def _number(text: str) -> str | None:
    """The exact canonical text of a number attribute (``712``, ``0.035``, ``-1.5``), None if it is not one
    (a number with more than ATTRIBUTE_SCALE decimals, or too large, is not)."""
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    if not number.is_finite() or abs(number) >= ATTRIBUTE_LIMIT or number != number.quantize(_QUANTUM):
        return None
    shown = format(number.normalize(), "f")
    return "0" if shown in {"-0", "0"} else shown


def read_file(path: Path, declared: Mapping[str, str], known: set[str] | None) -> pl.DataFrame:
    """The values of an attributes file (``STORED`` and the file's ``row``, numbers as canonical text),
    every problem raised at once; ``known``: the account ids the store holds (None: not checked)."""
    file = str(path)
    header, rows = read_rows(path)
    problems: list[Problem] = []
    for required in ATTRIBUTE_RESERVED:
        if required not in header:
            problems.append(
                Problem("import.missing_column", f"the header has no {required} column", f"{file}:1")
            )
    names = [h for h in header if h not in ATTRIBUTE_RESERVED]
    for name in names:
        if name not in declared:
            known_names = ", ".join(sorted(declared)) or "none is declared"
            problems.append(
                Problem(
                    "import.unexpected_column",
                    f"{name!r} is not an attribute declared in [attributes] of duecourse.toml "
                    f"({known_names})",
                    f"{file}:1:{name}",
                )
            )
    repeated = sorted({h for h in header if header.count(h) > 1})
    problems += [
        Problem("import.repeated_column", "the column is there twice", f"{file}:1:{h}") for h in repeated
    ]
    if not names and not problems:
        problems.append(Problem("import.no_attributes", "the file has no attribute column", f"{file}:1"))
    if problems:
        raise ProblemsError(problems)
    position = {h: i for i, h in enumerate(header)}
    values: list[tuple[str, str, dt.date, str, int]] = []
    seen: dict[tuple[str, str, str], int] = {}
    for number, row in rows:
        cells = row + [""] * (len(header) - len(row))

        def where(column: str, number: int = number) -> str:
            return f"{file}:{number}:{column}"

        if len(row) > len(header):
            problems.append(
                Problem("import.extra_cells", "the row has more cells than the header", f"{file}:{number}")
            )
            continue
        account = cells[position["account_id"]].strip()
        if not account:
            problems.append(Problem("import.missing_value", "account_id is empty", where("account_id")))
        elif known is not None and account not in known:
            problems.append(
                Problem(
                    "import.unknown_account", f"account {account} is not in the store", where("account_id")
                )
            )
        raw_day = cells[position["valid_from"]].strip()
        try:
            day = dt.date.fromisoformat(raw_day) if len(raw_day) == 10 else None
        except ValueError:
            day = None
        if day is None:
            problems.append(
                Problem(
                    "import.bad_date",
                    f"valid_from must be a date as YYYY-MM-DD, not {raw_day!r}",
                    where("valid_from"),
                )
            )
        for name in names:
            text = cells[position[name]].strip()
            if text and declared[name] == "number":
                canonical = _number(text)
                if canonical is None:
                    problems.append(
                        Problem(
                            "import.bad_number",
                            f"{name} must be a number with at most {ATTRIBUTE_SCALE} decimals and less than "
                            f"{ATTRIBUTE_LIMIT:,}, not {text!r}",
                            where(name),
                        )
                    )
                    continue
                text = canonical
            elif len(text) > MAX_TEXT or any(ord(c) < 32 for c in text):
                problems.append(
                    Problem(
                        "import.bad_text",
                        f"{name} must be at most {MAX_TEXT} characters of text",
                        where(name),
                    )
                )
                continue
            if account and day is not None:
                key = (account, name, day.isoformat())
                first = seen.get(key)
                if first is not None:
                    problems.append(
                        Problem(
                            "import.repeated_key",
                            f"account {account} has {name} from {day} already on row {first}",
                            where(name),
                        )
                    )
                    continue
                seen[key] = number
                values.append((account, name, day, text, number))
        if len(problems) >= MAX_PROBLEMS:
            break
    if problems:
        raise ProblemsError(problems[:MAX_PROBLEMS])
    return pl.DataFrame(values, schema=STORED | {"row": pl.Int64()}, orient="row")


def import_attributes(app: App, path: Path, now: dt.datetime) -> AttributesImported:
    """Import an attributes file, all or nothing (see the module's text)."""
    declared = app.config.attributes
    if not declared:
        raise ProblemsError(
            [
                Problem(
                    "import.no_attributes_declared",
                    "duecourse.toml declares no [attributes]: say which an account may carry, e.g. "
                    '[attributes] risk_score = "number"',
                    str(path),
                )
            ]
        )
    known = set(read_frame(app.engine, select(accounts.c.account_id))["account_id"].to_list())
    frame = read_file(path, declared, known)
    with store.write_transaction(app.engine) as connection:
        stored = pl.DataFrame(
            [
                dict(r._mapping)
                for r in connection.execute(
                    select(
                        account_attributes.c.account_id,
                        account_attributes.c.name,
                        account_attributes.c.valid_from,
                        account_attributes.c.value,
                    ).where(account_attributes.c.name.in_(sorted(set(frame["name"].to_list()))))
                )
            ],
            schema=STORED,
        )
        both = frame.join(stored, on=["account_id", "name", "valid_from"], how="left", suffix="_stored")
        changed = both.filter(
            pl.col("value_stored").is_not_null() & (pl.col("value") != pl.col("value_stored"))
        )
        if changed.height:
            problems = [
                Problem(
                    "import.changed_value",
                    f"account {row['account_id']} has {row['name']} {row['value_stored']!r} from "
                    f"{row['valid_from']} already; a new value needs a new valid_from",
                    f"{path}:{row['row']}:{row['name']}",
                )
                for row in changed.head(MAX_PROBLEMS).iter_rows(named=True)
            ]
            raise ProblemsError(problems)
        new = both.filter(pl.col("value_stored").is_null()).select(list(STORED))
        append_in(connection, "account_attributes", new.with_columns(pl.lit(now).alias("imported_at")))
    return AttributesImported(str(path), frame.height, new.height, frame.height - new.height)


def values_as_of(engine: Engine, as_of: dt.date, needed: Mapping[str, str]) -> pl.DataFrame:
    """Every account's attribute values in force on ``as_of``, one column per needed attribute
    (``attribute_column``; a number in exact integer units, a text as it is; null: no value), and
    ``account_id``; accounts with no value at all are not in it."""
    schema = {"account_id": pl.String()} | {
        attribute_column(n): (pl.Int64() if k == "number" else pl.String()) for n, k in needed.items()
    }
    if not needed:
        return pl.DataFrame(schema=schema)
    rows = read_frame(
        engine,
        select(
            account_attributes.c.account_id,
            account_attributes.c.name,
            account_attributes.c.valid_from,
            account_attributes.c.value,
        ).where(account_attributes.c.name.in_(sorted(needed)), account_attributes.c.valid_from <= as_of),
        schema=STORED,
        bulk=many_accounts(engine),  # a value or more per account: the run's bulk reader on a portfolio
    )
    latest = rows.sort("valid_from").group_by("account_id", "name").agg(pl.col("value").last())
    if latest.is_empty():
        return pl.DataFrame(schema=schema)
    wide = latest.pivot(on="name", index="account_id", values="value")
    columns = [pl.col("account_id")]
    for name, kind in needed.items():
        value = pl.col(name) if name in wide.columns else pl.lit(None, pl.String())
        value = pl.when(value == "").then(None).otherwise(value)
        if kind == "number":
            value = (value.cast(pl.Decimal(38, ATTRIBUTE_SCALE)) * 10**ATTRIBUTE_SCALE).cast(pl.Int64)
        columns.append(value.alias(attribute_column(name)))
    return wide.select(columns).cast(schema)  # type: ignore[arg-type]


def with_attributes(frame: pl.DataFrame, values: pl.DataFrame) -> pl.DataFrame:
    """``frame`` (with ``account_id``) with the attribute columns of ``values`` (null where none)."""
    return frame.join(values, on="account_id", how="left")


def values_of(
    engine: Engine, account_id: str, as_of: dt.date, needed: Mapping[str, str]
) -> dict[str, Decimal | str]:
    """One account's attribute values in force on ``as_of`` (the readable path: ``explain``)."""
    found: dict[str, Decimal | str] = {}
    with engine.connect() as connection:
        for name, kind in needed.items():
            query = (
                select(account_attributes.c.value)
                .where(
                    account_attributes.c.account_id == account_id,
                    account_attributes.c.name == name,
                    account_attributes.c.valid_from <= as_of,
                )
                .order_by(account_attributes.c.valid_from.desc())
                .limit(1)
            )
            value = connection.execute(query).scalar()
            if value:
                found[name] = Decimal(value) if kind == "number" else str(value)
    return found
