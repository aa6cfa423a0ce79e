"""The store's small typed functions that the services call.

Frames go through ``frames.py`` (bulk); the few single rows (a run, an import) through SQLAlchemy
Core. Each function takes the engine and runs in its own transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import polars as pl
from sqlalchemy import Delete, Engine, Table, and_, delete, func, insert, or_, select, true, union

from duecourse.store import frames
from duecourse.store.tables import (
    KEYS,
    accounts,
    customers,
    dues,
    holds,
    imports,
    payments,
    runs,
    snapshots,
)
from duecourse.store.tables import stage_history as _stage_history

# The stage of an account that no collection stage's conditions hold for.
CURRENT_STAGE = "current"

# The kinds whose rows an import or a run writes, with their keys (see tables.KEYS).
KINDS: tuple[str, ...] = ("customers", "accounts", "dues", "payments", "snapshots", "stage_history")


@dataclass(frozen=True, slots=True)
class Portfolio:
    """The stored portfolio, as frames in the schemas of ``engine/schema.py``, each sorted by its key.

    Attributes:
        customers: one row per customer.
        accounts: one row per account, with its customer and product.
        dues: every due of every account.
        payments: every payment received.
    """

    customers: pl.DataFrame
    accounts: pl.DataFrame
    dues: pl.DataFrame
    payments: pl.DataFrame


def existing_keys(engine: Engine, kind: str, frame: pl.DataFrame) -> pl.DataFrame:
    """The stored rows whose key is also in ``frame``, with their stored values, sorted by key.

    An importer joins this to its incoming rows on the key: equal content is a no-op, different content is
    a conflict, and incoming keys absent here are new.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; the kinds are {KINDS}")
    keys = list(KEYS[kind])
    missing = [name for name in keys if name not in frame.columns]
    if missing:
        raise ValueError(f"the {kind} frame lacks its key columns {missing}")
    stored = frames.read_matching(engine, kind, frame.select(keys))
    return stored.sort(keys)


@dataclass(frozen=True, slots=True)
class PortfolioChunk:
    """Some whole accounts of the stored portfolio (a range of account ids), as frames in the schemas of
    ``engine/schema.py`` (or only their ``RUN_COLUMNS``), in the order the database reads them (not
    sorted here: the engine checks the order and sorts what it needs; SQLite reads them by account and
    date through the tables' indexes, PostgreSQL in the order they were written, which an import makes
    the key's order).

    Attributes:
        accounts: one row per account of the range.
        dues: every due of those accounts (for the run from the SQLite worker: without ``due_id``, in
            the order of the dues' key).
        payments: every payment received on those accounts.
        previous_stages: ``account_id``, ``stage`` of the range's stored snapshots of the day asked for
            (``portfolio_chunks(..., previous_day=)``), read with the rest; None when none was asked.
    """

    accounts: pl.DataFrame
    dues: pl.DataFrame
    payments: pl.DataFrame
    previous_stages: pl.DataFrame | None = None


# Accounts per chunk of the daily run: bounds its memory (at 200,000 accounts of ~12 dues and ~8 payments
# each the run peaked at 2.0 GB with 1,000,000 accounts, docs/performance.md) while keeping each chunk
# large enough for Polars to work on whole columns.
ACCOUNTS_PER_CHUNK = 100_000


# The columns the daily run reads: what the engine and the stage changes use. Neither reads a payment's
# id nor an account's customer, and at 1,000,000 accounts those are 9.4 million strings to read, hand
# over and type. The SQLite worker does not read a due's id either (1.6 CPU s of 12.2 million dues with
# the nulls below): the engine needs it only to order the dues of an account that fall on the same day
# with the same component, so the worker reads the dues in the order of their key (account_id, due_id;
# ``RUN_DUES_ORDER``, served by the primary key's index), which the engine keeps among such dues.
RUN_COLUMNS: dict[str, tuple[str, ...]] = {
    "accounts": ("account_id", "product_code", "opened_on"),
    "dues": ("account_id", "due_id", "due_date", "amount_minor", "component", "minimum_minor", "posted_on"),
    "payments": ("account_id", "paid_on", "amount_minor"),
}
RUN_DUES_ORDER: tuple[str, ...] = KEYS["dues"]
# What the SQLite worker reads in place of a null (see frames.Ranged.nulls): values the columns never
# hold (a minimum is never negative: the import refuses one, and so does the engine; a stored date is
# ISO text). Without nulls the read needs no typed first row, which could not precede its ORDER BY.
_RUN_DUES_NULLS: dict[str, int | str] = {"minimum_minor": -1, "posted_on": ""}


def portfolio_chunks(
    engine: Engine,
    accounts_per_chunk: int = ACCOUNTS_PER_CHUNK,
    *,
    previous_day: dt.date | None = None,
    for_run: bool = False,
    with_jurisdiction: bool = False,
) -> Iterator[PortfolioChunk]:
    """The stored portfolio in chunks of ``accounts_per_chunk`` whole accounts, from one consistent view.

    Every account, due and payment is in exactly one chunk (see ``frames.read_by_account``); the next
    chunk is read while the caller works on this one. At least one chunk, empty for an empty portfolio.
    The rows are not sorted by their keys: sorting 20 million rows by text keys took 3.3 CPU seconds
    of a run of 1,000,000 accounts, and the engine orders them its own way anyway. ``for_run``: only the
    columns the daily run uses (``RUN_COLUMNS``); read by the SQLite worker, the dues come without
    their ids but in the order of their key (``RUN_DUES_ORDER``). ``with_jurisdiction``: the accounts
    with their customer's ``jurisdiction`` too (a strategy segment chooses by it).
    """
    tables: dict[str, Table | frames.Ranged] = {"accounts": accounts, "dues": dues, "payments": payments}
    if for_run:
        tables["accounts"] = frames.Ranged(accounts, RUN_COLUMNS["accounts"])
        tables["payments"] = frames.Ranged(payments, RUN_COLUMNS["payments"])
        tables["dues"] = frames.Ranged(
            dues,
            RUN_COLUMNS["dues"],
            order_by=RUN_DUES_ORDER,
            unread_in_order=("due_id",),
            nulls=_RUN_DUES_NULLS,
        )
    if with_jurisdiction:
        own = RUN_COLUMNS["accounts"] if for_run else tuple(c.name for c in accounts.columns)
        joined = (customers, "customer_id", ("jurisdiction",))
        tables["accounts"] = frames.Ranged(accounts, own, joined=joined)
    if previous_day is not None:
        tables["previous_stages"] = frames.Ranged(snapshots, ("account_id", "stage"), {"as_of": previous_day})
    for read in frames.read_by_account(engine, tables, accounts_per_chunk):
        yield PortfolioChunk(
            accounts=read["accounts"],
            dues=read["dues"],
            payments=read["payments"],
            previous_stages=read.get("previous_stages"),
        )


def with_jurisdiction(accounts: pl.DataFrame, customers: pl.DataFrame) -> pl.DataFrame:
    """The accounts, in their order, with their customer's ``jurisdiction`` (null for an unknown one)."""
    if "jurisdiction" in accounts.columns:
        return accounts
    return accounts.join(
        customers.select("customer_id", "jurisdiction"), on="customer_id", how="left", maintain_order="left"
    )


def load_portfolio(engine: Engine) -> Portfolio:
    """The whole stored portfolio, read in one consistent view."""
    read = frames.read_frames(
        engine,
        {"customers": customers, "accounts": accounts, "dues": dues, "payments": payments},
        bulk=frames.many_accounts(engine),
    )
    return Portfolio(
        customers=read["customers"].sort(KEYS["customers"]),
        accounts=read["accounts"].sort(KEYS["accounts"]),
        dues=read["dues"].sort(KEYS["dues"]),
        payments=read["payments"].sort(KEYS["payments"]),
    )


def record_run(  # noqa: PLR0917 - the services call it positionally, in the order of the columns
    engine: Engine,
    as_of: dt.date,
    started_at: dt.datetime,
    finished_at: dt.datetime,
    accounts: int,
    status: str,
    *,
    engine_name: str = "polars",
) -> None:
    """Record the run of ``as_of``, replacing an earlier record of the same day (a re-run)."""
    with engine.begin() as connection:
        connection.execute(delete(runs).where(runs.c.as_of == as_of))
        connection.execute(
            insert(runs).values(
                as_of=as_of,
                started_at=started_at,
                finished_at=finished_at,
                accounts=accounts,
                status=status,
                engine=engine_name,
            )
        )


def record_run_in(  # noqa: PLR0917 - as record_run
    writer: frames.Writer,
    as_of: dt.date,
    started_at: dt.datetime,
    finished_at: dt.datetime,
    accounts: int,
    status: str,
    *,
    engine_name: str = "polars",
) -> None:
    """``record_run`` inside a write transaction the caller holds (the daily run's)."""
    if started_at.tzinfo is None or finished_at.tzinfo is None:
        raise ValueError("a run's start and finish must be aware instants")
    writer.delete(delete(runs).where(runs.c.as_of == as_of))
    row = {
        "as_of": [as_of],
        "started_at": [started_at.astimezone(dt.UTC)],
        "finished_at": [finished_at.astimezone(dt.UTC)],
        "accounts": [accounts],
        "status": [status],
        "engine": [engine_name],
    }
    writer.append("runs", pl.DataFrame(row, schema=frames.table_schema(runs)))


def clear_day_in(writer: frames.Writer, as_of: dt.date) -> None:
    """Delete the stored snapshots of ``as_of`` inside the caller's write transaction (a re-run)."""
    writer.delete(delete(snapshots).where(snapshots.c.as_of == as_of))


def append_snapshots_in(writer: frames.Writer, as_of: dt.date, frame: pl.DataFrame) -> None:
    """Append snapshots of ``as_of`` inside the caller's write transaction; rows of another day are
    refused."""
    frames.check_snapshot_day(as_of, frame)
    writer.append("snapshots", frame)


def snapshot_for(engine: Engine, as_of: dt.date) -> pl.DataFrame:
    """The stored snapshots of ``as_of``, one row per account, sorted by account."""
    stmt = select(snapshots).where(snapshots.c.as_of == as_of)
    return frames.read_frame(engine, stmt).sort("account_id")


def stage_history(engine: Engine, account_id: str) -> pl.DataFrame:
    """The stage changes of one account, oldest first."""
    stmt = select(_stage_history).where(_stage_history.c.account_id == account_id)
    return frames.read_frame(engine, stmt).sort("entered_on")


def stages_on(engine: Engine, day: dt.date) -> pl.DataFrame:
    """Each account's stage in the stored snapshots of ``day``: ``account_id``, ``stage``, by account."""
    stmt = select(snapshots.c.account_id, snapshots.c.stage).where(snapshots.c.as_of == day)
    # Through the worker only when there are many: starting it costs more than a small read.
    return frames.read_frame(engine, stmt, bulk=frames.many_accounts(engine)).sort("account_id")


def latest_stages_before(engine: Engine, as_of: dt.date) -> pl.DataFrame:
    """Each account's stage on the newest stored snapshot day before ``as_of``, and when it entered it.

    Columns ``account_id``, ``stage``, ``entered_on``, sorted by account. The day is the newest one
    stored before ``as_of`` (the previous run, which stores every account), so the cost is one day's
    snapshot however long the history. ``entered_on`` is the account's newest stage change on or before
    that day, null if none was stored. Empty when no day before ``as_of`` is stored.
    """
    s = snapshots.alias("s")
    h = _stage_history.alias("h")
    newest_day = select(func.max(snapshots.c.as_of)).where(snapshots.c.as_of < as_of).scalar_subquery()
    entered_on = (
        select(func.max(h.c.entered_on))
        .where(h.c.account_id == s.c.account_id, h.c.entered_on <= s.c.as_of)
        .scalar_subquery()
    )
    stmt = select(s.c.account_id, s.c.stage, entered_on.label("entered_on")).where(s.c.as_of == newest_day)
    return frames.read_frame(engine, stmt).sort("account_id")


def stage_entered_on(engine: Engine, account_id: str, as_of: dt.date, stage: str) -> dt.date | None:
    """The day the account entered ``stage``, by the newest stage change on or before ``as_of``.

    None when that change is to another stage (the stored history does not know the stage asked about)
    or when none is stored.
    """
    stmt = (
        select(_stage_history.c.stage, _stage_history.c.entered_on)
        .where(_stage_history.c.account_id == account_id, _stage_history.c.entered_on <= as_of)
        .order_by(_stage_history.c.entered_on.desc())
        .limit(1)
    )
    with engine.connect() as connection:
        row = connection.execute(stmt).first()
    if row is None or row.stage != stage:
        return None
    entered: dt.date = row.entered_on
    return entered


def accounts_ever_in_collection(engine: Engine, start: dt.date, end: dt.date) -> pl.Series:
    """The accounts whose stored snapshot shows a stage other than ``current`` on a day in [start, end]."""
    stmt = (
        select(snapshots.c.account_id)
        .where(snapshots.c.as_of.between(start, end), snapshots.c.stage != CURRENT_STAGE)
        .distinct()
    )
    return frames.read_frame(engine, stmt).get_column("account_id").sort()


def write_stage_changes(engine: Engine, frame: pl.DataFrame) -> int:
    """Append stage changes (``account_id``, ``stage``, ``entered_on``); returns the number written."""
    return frames.write_frame(engine, "stage_history", frame)


def delete_stage_changes_from(engine: Engine, as_of: dt.date) -> int:
    """Delete the stage changes entered on or after ``as_of`` (before re-running that day)."""
    with engine.begin() as connection:
        result = connection.execute(delete(_stage_history).where(_stage_history.c.entered_on >= as_of))
    return result.rowcount


def replace_stage_changes(
    engine: Engine,
    since: dt.date,
    through: dt.date,
    frame: pl.DataFrame,
    new_accounts: pl.Series | None = None,
) -> int:
    """Replace the stage changes entered from ``since`` through ``through`` with ``frame``, at once.

    A run of D stores the changes of the days since the previous stored run (D alone in a daily rhythm);
    re-running D replaces them. ``new_accounts`` (accounts the previous run did not have) have their whole
    history through D replaced, so their rows may be older than ``since``.
    """
    return frames.replace_rows(
        engine, "stage_history", frame, _stage_change_deletes(since, through, frame, new_accounts)
    )


def write_stage_changes_in(
    writer: frames.Writer,
    since: dt.date,
    through: dt.date,
    frame: pl.DataFrame,
    new_accounts: pl.Series | None = None,
) -> None:
    """``replace_stage_changes`` inside a write transaction the caller holds (the daily run's)."""
    for stmt in _stage_change_deletes(since, through, frame, new_accounts):
        writer.delete(stmt)
    writer.append("stage_history", frame)


def _stage_change_deletes(
    since: dt.date, through: dt.date, frame: pl.DataFrame, new_accounts: pl.Series | None
) -> list[Delete]:
    """The deletes that make room for ``frame``, the changes from ``since`` through ``through``."""
    if "entered_on" not in frame.columns:
        raise ValueError("the stage change frame has no entered_on column")
    new = new_accounts if new_accounts is not None else pl.Series("account_id", [], dtype=pl.String)
    in_window = pl.col("entered_on").is_between(since, through).fill_null(False)
    of_new = pl.col("account_id").is_in(new.implode()) & (pl.col("entered_on") <= through).fill_null(False)
    outside = frame.filter(~in_window & ~of_new).height
    if outside:
        raise ValueError(f"{outside} stage changes are not entered between {since} and {through}")
    deletes = [delete(_stage_history).where(_stage_history.c.entered_on.between(since, through))]
    ids = new.unique().sort().to_list()
    for start in range(0, len(ids), 5000):
        deletes.append(
            delete(_stage_history).where(
                _stage_history.c.account_id.in_(ids[start : start + 5000]),
                _stage_history.c.entered_on <= through,
            )
        )
    return deletes


def replace_stage_changes_on(engine: Engine, as_of: dt.date, frame: pl.DataFrame) -> int:
    """Replace the stage changes entered on ``as_of`` with ``frame`` in one transaction (a re-run)."""
    return replace_stage_changes(engine, as_of, as_of, frame)


def previous_run_day(engine: Engine, as_of: dt.date) -> dt.date | None:
    """The newest day before ``as_of`` whose snapshots are stored, or None."""
    stmt = select(func.max(snapshots.c.as_of)).where(snapshots.c.as_of < as_of)
    with engine.connect() as connection:
        day: dt.date | None = connection.execute(stmt).scalar_one_or_none()
    return day


def accounts_on_hold(engine: Engine, as_of: dt.date) -> pl.DataFrame:
    """The accounts under a hold on ``as_of``: columns ``account_id`` and ``on_hold`` (always true).

    A hold holds from ``starts_on`` through ``ends_on`` (inclusive; null: until lifted). A customer hold
    holds every account of the customer; a channel hold only silences its channel, so it is not here.
    """
    active = and_(holds.c.starts_on <= as_of, or_(holds.c.ends_on.is_(None), holds.c.ends_on >= as_of))
    by_account = select(holds.c.account_id).where(
        active, holds.c.scope == "account", holds.c.account_id.is_not(None)
    )
    by_customer = (
        select(accounts.c.account_id)
        .select_from(holds.join(accounts, accounts.c.customer_id == holds.c.customer_id))
        .where(active, holds.c.scope == "customer")
    )
    held = union(by_account, by_customer).subquery("held")
    stmt = select(held.c.account_id, true().label("on_hold"))
    frame = frames.read_frame(engine, stmt, schema={"account_id": pl.String(), "on_hold": pl.Boolean()})
    return frame.unique("account_id").sort("account_id")


def record_import(  # noqa: PLR0917 - the services call it positionally, in the order of the columns
    engine: Engine,
    kind: str,
    file_name: str,
    sha256: str,
    rows_added: int,
    rows_unchanged: int,
    imported_at: dt.datetime,
) -> int:
    """Record one imported file; returns the record's id."""
    with engine.begin() as connection:
        result = connection.execute(
            insert(imports)
            .values(
                kind=kind,
                file_name=file_name,
                sha256=sha256,
                rows_added=rows_added,
                rows_unchanged=rows_unchanged,
                imported_at=imported_at,
            )
            .returning(imports.c.id)
        )
        return int(result.scalar_one())
