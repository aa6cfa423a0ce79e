"""The customers' consent to be contacted by a channel, where the institution asks for it.

``[governor] consent_required = { US = ["sms"] }`` names, per jurisdiction, the channels the institution
uses only with the customer's recorded consent (its counsel's reading of, say, the TCPA for texts to a
mobile number). The records come from ``duecourse import consents FILE`` (.csv): ``customer_id``,
``channel``, ``since`` (an ISO date), ``consent`` (``yes`` or ``no``: given or withdrawn) and an optional
``source`` (a form, a call, the app). A record holds from its day until the next one of the same customer
and channel; the same record again changes nothing, and another value for a day already recorded is
refused (history is never rewritten). All or nothing, every problem as ``FILE:ROW:COLUMN``.

Without consent in force on the customer's day, the channel is closed to the customer as an opt-out
closes it: the governor suppresses the message at planning (rule ``COMMON-CONSENT``) and the run plans
the action's next channel instead (``contacts.decide_with_fallbacks``); the dispatcher checks again
before sending, so consent withdrawn after planning falls back too. A customer's STOP reply is an
opt-out as before (``services/feedback.py``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from sqlalchemy import Connection, Engine, select

from duecourse.bootstrap import App
from duecourse.config import CONSENT_CHANNELS
from duecourse.domain.errors import Problem, ProblemsError
from duecourse.engine import governor
from duecourse.io.rows import check_header, read_rows
from duecourse.store import outbox as store
from duecourse.store.frames import append_in, read_frame
from duecourse.store.tables import consents, customers

NO_CONSENT = "no_consent"
COLUMNS = ("customer_id", "channel", "since", "consent")
OPTIONAL = ("source",)
STORED: dict[str, pl.DataType] = {
    "customer_id": pl.String(),
    "channel": pl.String(),
    "since": pl.Date(),
    "given": pl.Boolean(),
    "source": pl.String(),
}
_ANSWERS = {"yes": True, "no": False}


@dataclass(frozen=True, slots=True)
class ConsentsImported:
    file: str
    rows: int
    added: int
    unchanged: int


def read_file(path: Path, known: set[str] | None) -> pl.DataFrame:
    """The records of a consents file (``STORED`` and its ``row``), every problem raised at once."""
    file = str(path)
    header, data = read_rows(path, parquet=False)
    check_header(header, COLUMNS, OPTIONAL, file, "consents")
    problems: list[Problem] = []
    at = {name: header.index(name) for name in header}
    rows: list[tuple[str, str, dt.date, bool, str, int]] = []
    seen: dict[tuple[str, str, dt.date], int] = {}
    for number, row in data:
        cells = row + [""] * (len(header) - len(row))

        def cell(name: str, cells: list[str] = cells) -> str:
            return cells[at[name]].strip() if name in at else ""

        def where(name: str, number: int = number) -> str:
            return f"{file}:{number}:{name}"

        before = len(problems)
        customer, channel, answer = cell("customer_id"), cell("channel"), cell("consent").lower()
        if not customer:
            problems.append(Problem("import.missing_value", "customer_id is empty", where("customer_id")))
        elif known is not None and customer not in known:
            message = f"customer {customer} is not in the store"
            problems.append(Problem("import.unknown_customer", message, where("customer_id")))
        if channel not in CONSENT_CHANNELS:
            message = f"channel must be one of {', '.join(CONSENT_CHANNELS)}, not {channel!r}"
            problems.append(Problem("import.bad_value", message, where("channel")))
        try:
            since = dt.date.fromisoformat(cell("since")) if len(cell("since")) == 10 else None
        except ValueError:
            since = None
        if since is None:
            message = f"since must be a date as YYYY-MM-DD, not {cell('since')!r}"
            problems.append(Problem("import.bad_date", message, where("since")))
        if answer not in _ANSWERS:
            message = f"consent must be yes (given) or no (withdrawn), not {cell('consent')!r}"
            problems.append(Problem("import.bad_value", message, where("consent")))
        if len(problems) > before or since is None:
            continue
        key = (customer, channel, since)
        if key in seen:
            message = f"customer {customer} has a {channel} record from {since} already on row {seen[key]}"
            problems.append(Problem("import.repeated_key", message, where("since")))
            continue
        seen[key] = number
        rows.append((customer, channel, since, _ANSWERS[answer], cell("source"), number))
    if problems:
        raise ProblemsError(problems[:1000])
    return pl.DataFrame(rows, schema=STORED | {"row": pl.Int64()}, orient="row")


def import_consents(app: App, path: Path, now: dt.datetime) -> ConsentsImported:
    """Import a consents file, all or nothing (see the module's text)."""
    known = set(read_frame(app.engine, select(customers.c.customer_id))["customer_id"].to_list())
    frame = read_file(path, known)
    with store.write_transaction(app.engine) as connection:
        stored = pl.DataFrame(
            [
                dict(r._mapping)
                for r in connection.execute(
                    select(*(consents.c[name] for name in STORED)).where(
                        consents.c.customer_id.in_(sorted(set(frame["customer_id"].to_list())))
                    )
                )
            ],
            schema=STORED,
        )
        both = frame.join(stored, on=["customer_id", "channel", "since"], how="left", suffix="_stored")
        changed = both.filter(
            pl.col("given_stored").is_not_null()
            & ((pl.col("given") != pl.col("given_stored")) | (pl.col("source") != pl.col("source_stored")))
        )
        if changed.height:
            raise ProblemsError(
                [
                    Problem(
                        "import.changed_value",
                        f"customer {r['customer_id']} has another {r['channel']} record from {r['since']} "
                        "already; a new record needs a new since",
                        f"{path}:{r['row']}:consent",
                    )
                    for r in changed.head(1000).iter_rows(named=True)
                ]
            )
        new = both.filter(pl.col("given_stored").is_null()).select(list(STORED))
        append_in(connection, "consents", new.with_columns(pl.lit(now).alias("imported_at")))
    return ConsentsImported(str(path), frame.height, new.height, frame.height - new.height)


def records_before(engine: Engine, day: dt.date) -> pl.DataFrame:
    """Every consent record (``STORED``) from ``day`` or before."""
    return read_frame(
        engine, select(*(consents.c[name] for name in STORED)).where(consents.c.since <= day), schema=STORED
    )


def latest(rows: pl.DataFrame) -> pl.DataFrame:
    """The record in force of each customer and channel (the latest ``since``)."""
    return rows.sort("since").group_by("customer_id", "channel").agg(pl.col("given").last())


def missing_holds(
    connection: Connection | Engine, required: Mapping[str, tuple[str, ...]], as_of: dt.date
) -> pl.DataFrame:
    """The channels closed for want of consent on ``as_of``, as the governor's ``HOLDS``: one channel hold
    (kind ``no_consent``, that day only) per customer of a jurisdiction that requires consent on a channel
    and has none in force on it."""
    empty = pl.DataFrame(schema=governor.HOLDS)
    wanted = [(j, c) for j, channels in required.items() for c in channels]
    if not wanted:
        return empty
    engine = connection if isinstance(connection, Engine) else connection.engine
    people = read_frame(
        engine,
        select(customers.c.customer_id, customers.c.jurisdiction).where(
            customers.c.jurisdiction.in_(sorted(required))
        ),
        schema={"customer_id": pl.String(), "jurisdiction": pl.String()},
    )
    return holds_for(people, latest(records_before(engine, as_of)), required, as_of)


def holds_for(
    people: pl.DataFrame, latest: pl.DataFrame, required: Mapping[str, tuple[str, ...]], day: dt.date
) -> pl.DataFrame:
    """``missing_holds`` on frames: ``people`` (customer_id, jurisdiction), ``latest`` (customer_id,
    channel, given: the record in force)."""
    pairs = pl.DataFrame(
        [(j, c) for j, channels in required.items() for c in channels],
        schema={"jurisdiction": pl.String(), "channel": pl.String()},
        orient="row",
    )
    needed = people.join(pairs, on="jurisdiction")
    given = latest.filter(pl.col("given")).select("customer_id", "channel")
    closed = needed.join(given, on=["customer_id", "channel"], how="anti")
    return closed.select(
        pl.lit("channel").alias("scope"),
        "customer_id",
        pl.lit(None, pl.String()).alias("account_id"),
        "channel",
        pl.lit(NO_CONSENT).alias("kind"),
        pl.lit(day, pl.Date()).alias("starts_on"),
        pl.lit(day, pl.Date()).alias("ends_on"),
    ).cast(pl.Schema(governor.HOLDS))


def consented(
    connection: Connection, customer_ids: Iterable[str], channels: Iterable[str], day: dt.date
) -> set[tuple[str, str]]:
    """The (customer, channel) pairs with consent in force on ``day`` (the dispatcher's re-check)."""
    ids, wanted = sorted(set(customer_ids)), sorted(set(channels))
    found: set[tuple[str, str]] = set()
    for start in range(0, len(ids), 500):
        rows = connection.execute(
            select(consents.c.customer_id, consents.c.channel, consents.c.since, consents.c.given).where(
                consents.c.customer_id.in_(ids[start : start + 500]),
                consents.c.channel.in_(wanted),
                consents.c.since <= day,
            )
        ).all()
        latest: dict[tuple[str, str], tuple[dt.date, bool]] = {}
        for customer, channel, since, given in rows:
            if (customer, channel) not in latest or since > latest[customer, channel][0]:
                latest[customer, channel] = (since, bool(given))
        found |= {pair for pair, (_, given) in latest.items() if given}
    return found
