"""The use cases of the core: import a file, run the day, export the state, explain an account.

Each is one function taking the ``App`` (database and configuration); the CLI, the API and the web call
these and never touch tables or rules themselves.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from duecourse.bootstrap import App
from duecourse.domain import delinquency
from duecourse.domain.errors import Problem, ProblemsError, UnknownAccount
from duecourse.domain.model import Account, Customer, Due, Payment
from duecourse.domain.money import currency_spec, from_minor
from duecourse.engine import schema
from duecourse.engine.snapshot import compute_snapshots
from duecourse.io.readers import ROW, Refs, open_table
from duecourse.services import attributes, stages
from duecourse.services import explain as explain_words
from duecourse.services.contacts import explain_contacts
from duecourse.store import repo
from duecourse.store.db import init_db
from duecourse.store.frames import BULK_MIN_ROWS, count_accounts, many_accounts, read_frame, writing

KINDS = ("customers", "accounts", "dues", "payments")
KEYS = {
    "customers": ["customer_id"],
    "accounts": ["account_id"],
    "dues": ["account_id", "due_id"],
    "payments": ["payment_id"],
}
STATE_COLUMNS = (
    "account_id",
    "as_of",
    "days_past_due",
    "delinquency_days",
    "bucket",
    "amount_past_due",
    "principal_past_due",
    "interest_past_due",
    "fee_past_due",
    "penalty_past_due",
    "oldest_unpaid_due_date",
    "missed_dues",
    "stage",
    "on_hold",
)


def init_database(app: App) -> str:
    """Create or migrate the database; returns the schema revision."""
    return init_db(app.url)


# ---------------------------------------------------------------- import


@dataclass(frozen=True)
class ImportResult:
    kind: str
    file: str
    rows_added: int
    rows_unchanged: int


def account_digits(app: App) -> pl.DataFrame:
    accounts = read_frame(
        app.engine,
        "SELECT account_id, product_code FROM accounts",
        schema={"account_id": pl.String(), "product_code": pl.String()},
        bulk=many_accounts(app.engine),
    )
    digits = {code: currency_spec(p.currency).minor_digits for code, p in app.config.terms.products.items()}
    return accounts.select(
        "account_id",
        pl.col("product_code").replace_strict(digits, default=2, return_dtype=pl.Int64).alias("minor_digits"),
    )


def _refs(app: App, kind: str) -> Refs:
    if kind == "accounts":
        customers = read_frame(
            app.engine,
            "SELECT customer_id FROM customers",
            schema={"customer_id": pl.String()},
            bulk=many_accounts(app.engine),
        )
        return Refs(
            customer_ids=customers.get_column("customer_id"),
            product_digits={
                code: currency_spec(p.currency).minor_digits for code, p in app.config.terms.products.items()
            },
        )
    if kind in ("dues", "payments"):
        return Refs(account_digits=account_digits(app))
    return Refs()


USER_COLUMN = {"amount_minor": "amount", "minimum_minor": "minimum_amount"}


def _changed_rows(
    kind: str, path: Path, frame: pl.DataFrame, stored: pl.DataFrame, digits: pl.DataFrame | None
) -> list[Problem]:
    """Rows whose id is already stored with other content: each differing cell is a problem."""
    keys = KEYS[kind]
    # The row the user sees (a blank line or a quoted line break in the CSV moves the rows down).
    numbered = frame.rename({ROW: "row"}) if ROW in frame.columns else frame.with_row_index("row", offset=2)
    joined = numbered.join(stored, on=keys, how="inner", suffix="__stored")
    if digits is not None and "account_id" in joined.columns:
        joined = joined.join(digits, on="account_id", how="left")
    problems: list[Problem] = []
    for column in [c for c in frame.columns if c not in (*keys, ROW)]:
        mine, theirs = pl.col(column), pl.col(f"{column}__stored")
        if column in USER_COLUMN:
            shown = [money_text(e, pl.col("minor_digits")) for e in (mine, theirs)]
        else:
            shown = [e.cast(pl.String) for e in (mine, theirs)]
        differs = joined.filter(mine.ne_missing(theirs)).select(
            "row", *keys, shown[0].alias("new"), shown[1].alias("old")
        )
        name = USER_COLUMN.get(column, column)
        for row in differs.iter_rows(named=True):
            ident = "/".join(str(row[k]) for k in keys)
            problems.append(
                Problem(
                    "import.changed_row",
                    f"{kind[:-1]} {ident} is already imported with {name} {row['old'] or '(empty)'}; "
                    f"this file says {row['new'] or '(empty)'} (stored rows are never changed; use a new id)",
                    f"{path}:{row['row']}:{name}",
                )
            )
    return problems


def _differing(kind: str, chunk: pl.DataFrame, stored: pl.DataFrame) -> pl.DataFrame:
    """The rows of ``chunk`` whose id is stored with other content (worded by ``_changed_rows``)."""
    keys = KEYS[kind]
    joined = chunk.join(stored, on=keys, how="inner", suffix="__stored", maintain_order="left")
    columns = [c for c in chunk.columns if c not in (*keys, ROW)]
    differs = pl.any_horizontal(pl.col(c).ne_missing(pl.col(f"{c}__stored")) for c in columns)
    return joined.filter(differs).select(chunk.columns)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# Rows checked and written at a time: the database writes one slice while the next is checked. Small
# enough that the first check and the last write, which nothing overlaps, take about a second each.
IMPORT_CHUNK_ROWS = 500_000


def import_file(app: App, kind: str, path: Path) -> ImportResult:
    """Check a file and write its new rows in one transaction, or nothing at all.

    The rows are checked in slices (``IMPORT_CHUNK_ROWS``) and each valid slice handed to the database
    while the next is checked: checking and writing take about as long, and each keeps a core busy. A
    problem anywhere (a row that breaks a rule, a stored id with other content, a key or reference the
    database refuses) rolls the transaction back, so nothing of the file is written; every problem of
    the file is still reported. The stored rows that share an id with the file are looked up once, by the
    ids as written, before the rows are checked.
    """
    if kind not in KINDS:
        raise ProblemsError(
            [Problem("import.kind", f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")]
        )
    keys = KEYS[kind]
    with ThreadPoolExecutor(2, thread_name_prefix="duecourse-import") as pool:
        # Beside the reading of the file: the ids it may refer to (read by the SQLite worker, or by
        # PostgreSQL) and the file's hash (hashlib lets go of the GIL).
        looked_up = pool.submit(_refs, app, kind)
        digest = pool.submit(_sha256, path)
        table = open_table(kind, path, looked_up.result)
        refs = looked_up.result()
        stored = repo.existing_keys(app.engine, kind, table.keys())
        differing: list[pl.DataFrame] = []
        added = 0
        with writing(app.engine, table.height, f"importing {path}", analyze=True) as writer:
            if stored.is_empty() and table.height >= BULK_MIN_ROWS:
                writer.load_empty(kind)
            for chunk in table.chunks(IMPORT_CHUNK_ROWS, keep_row=True):
                new_rows = chunk
                if stored.height:
                    differing.append(_differing(kind, chunk, stored))
                    new_rows = chunk.join(stored.select(keys), on=keys, how="anti")
                if not any(d.height for d in differing):  # once a row conflicts, nothing more is written
                    writer.append(kind, new_rows.drop(ROW))
                    added += new_rows.height
            if any(d.height for d in differing):
                changed = pl.concat(differing)
                raise ProblemsError(_changed_rows(kind, path, changed, stored, refs.account_digits))
        repo.record_import(
            app.engine,
            kind,
            str(path),
            digest.result(),
            added,
            table.height - added,
            dt.datetime.now(dt.UTC),
        )
    return ImportResult(kind, str(path), added, table.height - added)


# ---------------------------------------------------------------- the daily run


@dataclass(frozen=True)
class RunResult:
    as_of: dt.date
    accounts: int
    seconds: dict[str, float]
    stages: dict[str, int] = field(default_factory=dict)
    stage_changes: int = 0
    store_seconds: dict[str, float] = field(default_factory=dict)


def _holds_active(app: App, as_of: dt.date) -> pl.DataFrame:
    return repo.accounts_on_hold(app.engine, as_of)


def compute_day(
    app: App,
    portfolio: repo.Portfolio | repo.PortfolioChunk,
    as_of: dt.date,
    on_hold: pl.DataFrame | None,
) -> pl.DataFrame:
    """The snapshot of every account of the portfolio (or chunk) as of the date (the set-based engine)."""
    return compute_snapshots(
        portfolio.accounts, portfolio.dues, portfolio.payments, app.config.terms, as_of, on_hold
    )


def _stage_changes(
    app: App, as_of: dt.date, snaps: pl.DataFrame, portfolio: repo.Portfolio, known: stages.Known
) -> stages.StageChanges:
    """The stage changes since the previous stored run, each on the day it happened."""
    return stages.stage_changes(app.engine, app.config.terms, as_of, snaps, portfolio, known)


_NO_PREVIOUS = pl.DataFrame(schema={"account_id": pl.String(), "previous": pl.String()})


def _known_for(
    app: App, as_of: dt.date, chunk: repo.Portfolio | repo.PortfolioChunk, previous_day: dt.date | None
) -> stages.Known:
    """What the stage changes of ``chunk`` need of the previous run: its day and the chunk's stages then.

    A chunk read by account range brings its accounts' previous stages along (the same read, the same
    snapshot of the database). Joining each chunk to the previous stages of the whole portfolio instead
    cost 0.36 s a chunk (3.6 of the 7 s of store of a run of 1,000,000 accounts), and reading those
    1,000,000 rows apart, a worker and a core of their own beside the first chunk.
    """
    if isinstance(chunk, repo.Portfolio):  # one pass over a portfolio the caller read
        return stages.known_before(app.engine, as_of)
    if previous_day is None or chunk.previous_stages is None:
        return stages.Known(None, _NO_PREVIOUS)
    return stages.Known(
        previous_day, chunk.previous_stages.select("account_id", pl.col("stage").alias("previous"))
    )


def _as_portfolio(chunk: repo.PortfolioChunk) -> repo.Portfolio:
    return repo.Portfolio(schema.empty(schema.CUSTOMERS), chunk.accounts, chunk.dues, chunk.payments)


def _chunks(
    app: App,
    portfolio: repo.Portfolio | None,
    accounts_per_chunk: int,
    previous_day: dt.date | None,
    as_of: dt.date,
) -> Generator[repo.Portfolio | repo.PortfolioChunk, None, None]:
    """The portfolio to compute, in chunks, with what the strategy's segments choose by: the customer's
    jurisdiction (read with the accounts) and the accounts' attributes in force on ``as_of`` (read once,
    joined onto each chunk: ``services/attributes.py``)."""
    jurisdiction = app.config.terms.needs_jurisdiction
    needed = app.config.terms.needed_attributes
    values = attributes.values_as_of(app.engine, as_of, needed) if needed else None

    def with_values(accounts: pl.DataFrame) -> pl.DataFrame:
        return accounts if values is None else attributes.with_attributes(accounts, values)

    if portfolio is not None:
        accounts = portfolio.accounts
        if jurisdiction:
            accounts = repo.with_jurisdiction(accounts, portfolio.customers)
        yield replace(portfolio, accounts=with_values(accounts))
        return
    chunks = repo.portfolio_chunks(
        app.engine,
        accounts_per_chunk,
        previous_day=previous_day,
        for_run=True,
        with_jurisdiction=jurisdiction,
    )
    if values is None:
        yield from chunks
        return
    try:
        for chunk in chunks:
            yield replace(chunk, accounts=with_values(chunk.accounts))
    finally:
        stop = getattr(chunks, "close", None)  # the readers stop when the run stops early
        if stop is not None:
            stop()


def _merged(parts: list[stages.StageChanges]) -> stages.StageChanges:
    """The stage changes of several chunks of accounts, as if found for all at once."""
    return stages.StageChanges(
        pl.concat([part.changes for part in parts]),
        min(part.since for part in parts),
        sum(part.searched for part in parts),
        pl.concat([part.new_accounts for part in parts]),
    )


def run_day(
    app: App,
    as_of: dt.date,
    portfolio: repo.Portfolio | None = None,
    *,
    accounts_per_chunk: int = repo.ACCOUNTS_PER_CHUNK,
) -> RunResult:
    """The daily run: snapshot every account, store the day and the stage changes. Idempotent per date.

    Without ``portfolio`` the stored portfolio is read and computed in chunks of ``accounts_per_chunk``
    whole accounts (the engine computes each account on its own, so the result is the same as one pass),
    the next chunks read while this one is computed; memory then holds a few chunks. Each chunk's
    snapshots are handed to the database as soon as they are computed, in one write transaction with
    the day's stage changes and the run's record (staged on SQLite, see ``frames.writing``): a failed
    run stores nothing.

    The seconds reported: ``read`` is the time spent waiting for the reads (the rest overlaps
    ``compute``), ``store`` the rest: in ``store_seconds``, ``stage_changes`` (finding them),
    ``hand_over`` (handing the snapshots to the database, which writes them beside the next chunk) and
    ``commit`` (the last writes and the commit).
    """
    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    engine = app.engine
    computed = handed = searched = 0.0
    found: list[stages.StageChanges] = []
    counts: dict[str, int] = {}
    accounts = 0
    expected = portfolio.accounts.height if portfolio is not None else count_accounts(engine)
    previous_day = repo.previous_run_day(engine, as_of)
    with writing(engine, expected, f"storing the run of {as_of}", staged=True) as writer:
        on_hold = _holds_active(app, as_of)
        repo.clear_day_in(writer, as_of)
        chunks = _chunks(app, portfolio, accounts_per_chunk, previous_day, as_of)
        with closing(chunks):  # stops the reader on an error
            for chunk in chunks:
                t1 = time.perf_counter()
                part = compute_day(app, chunk, as_of, on_hold)
                t2 = time.perf_counter()
                computed += t2 - t1
                repo.append_snapshots_in(writer, as_of, part)
                accounts += part.height
                for stage, n in part.group_by("stage").len().iter_rows():
                    counts[str(stage)] = counts.get(str(stage), 0) + int(n)
                t3 = time.perf_counter()
                handed += t3 - t2
                # The stage changes may search the accounts' own rows (after a gap, on a first run, for
                # accounts new since the previous run), so they are found chunk by chunk.
                rows = chunk if isinstance(chunk, repo.Portfolio) else _as_portfolio(chunk)
                known = _known_for(app, as_of, chunk, previous_day)
                found.append(_stage_changes(app, as_of, part, rows, known))
                searched += time.perf_counter() - t3
        t_read = time.perf_counter() - t0 - computed - handed - searched
        t4 = time.perf_counter()
        changes = _merged(found)
        repo.write_stage_changes_in(writer, changes.since, as_of, changes.changes, changes.new_accounts)
        repo.record_run_in(writer, as_of, started, dt.datetime.now(dt.UTC), accounts, "ok")
    committed = time.perf_counter() - t4
    return RunResult(
        as_of,
        accounts,
        {"read": t_read, "compute": computed, "store": searched + handed + committed},
        dict(sorted(counts.items())),
        changes.changes.height,
        {"stage_changes": searched, "hand_over": handed, "commit": committed},
    )


# ---------------------------------------------------------------- export


def money_text(minor: pl.Expr, digits: pl.Expr) -> pl.Expr:
    """Integer minor units as a plain decimal string with the currency's digits ("100000" → "1000.00")."""
    absolute = minor.abs()
    scale = pl.lit(10, dtype=pl.Int64).pow(digits)
    whole = (absolute // scale).cast(pl.String)
    frac = (absolute % scale).cast(pl.String).str.zfill(digits)
    sign = pl.when(minor < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    return pl.when(digits == 0).then(sign + whole).otherwise(sign + whole + pl.lit(".") + frac)


def state_frame(snaps: pl.DataFrame) -> pl.DataFrame:
    """The export columns from stored snapshots, amounts as plain decimals."""
    digits = (
        pl.col("currency").replace_strict(
            {
                code: currency_spec(code).minor_digits
                for code in snaps.get_column("currency").unique().to_list()
            },
            return_dtype=pl.Int64,
        )
        if snaps.height
        else pl.lit(2, dtype=pl.Int64)
    )
    amounts = [
        "amount_past_due",
        "principal_past_due",
        "interest_past_due",
        "fee_past_due",
        "penalty_past_due",
    ]
    return snaps.sort("account_id").select(
        "account_id",
        pl.col("as_of").cast(pl.String),
        "days_past_due",
        "delinquency_days",
        "bucket",
        *[money_text(pl.col(f"{a}_minor"), digits).alias(a) for a in amounts],
        pl.col("oldest_unpaid_due_date").cast(pl.String),
        "missed_dues",
        "stage",
        pl.when(pl.col("on_hold")).then(pl.lit("true")).otherwise(pl.lit("false")).alias("on_hold"),
    )


def export_state(app: App, as_of: dt.date, out: Path) -> int:
    """Write the state of every account as of the date (from that day's run) to a CSV file."""
    snaps = repo.snapshot_for(app.engine, as_of)
    if snaps.height == 0:
        raise ProblemsError(
            [
                Problem(
                    "export.no_run",
                    f"no run is stored for {as_of}; run `duecourse run --as-of {as_of}` first",
                )
            ]
        )
    frame = state_frame(snaps)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.write_csv(out, null_value="")
    return frame.height


# ---------------------------------------------------------------- explain


@dataclass(frozen=True)
class Explanation:
    text: str
    data: dict[str, Any]
    snapshot: delinquency.AccountSnapshot


def due_records(frame: pl.DataFrame, currency: str) -> list[Due]:
    """Domain dues from a frame in the DUES schema."""
    return [
        Due(
            r["account_id"],
            r["due_id"],
            r["due_date"],
            from_minor(r["amount_minor"], currency),
            r["component"],
            None if r["minimum_minor"] is None else from_minor(r["minimum_minor"], currency),
            r["posted_on"],
        )
        for r in frame.iter_rows(named=True)
    ]


def payment_records(frame: pl.DataFrame, currency: str) -> list[Payment]:
    """Domain payments from a frame in the PAYMENTS schema."""
    return [
        Payment(r["payment_id"], r["account_id"], r["paid_on"], from_minor(r["amount_minor"], currency))
        for r in frame.iter_rows(named=True)
    ]


def _records(app: App, account_id: str) -> tuple[Account, Customer | None, list[Due], list[Payment]]:
    acc = read_frame(
        app.engine, "SELECT * FROM accounts WHERE account_id = :a", {"a": account_id}, schema.ACCOUNTS
    )
    if acc.height == 0:
        raise UnknownAccount(f"account {account_id!r} is not imported")
    a = acc.row(0, named=True)
    account = Account(a["account_id"], a["customer_id"], a["product_code"], a["opened_on"])
    product = app.config.terms.products[account.product_code]
    cur = product.currency
    cust = read_frame(
        app.engine,
        "SELECT * FROM customers WHERE customer_id = :c",
        {"c": account.customer_id},
        schema.CUSTOMERS,
    )
    customer = Customer(**cust.row(0, named=True)) if cust.height else None
    dues_f = read_frame(
        app.engine, "SELECT * FROM dues WHERE account_id = :a", {"a": account_id}, schema.DUES
    )
    pays_f = read_frame(
        app.engine, "SELECT * FROM payments WHERE account_id = :a", {"a": account_id}, schema.PAYMENTS
    )
    dues = due_records(dues_f, cur)
    payments = payment_records(pays_f.sort("paid_on", "payment_id"), cur)
    return account, customer, dues, payments


def explain_account(app: App, account_id: str, as_of: dt.date) -> Explanation:
    """Why the account is where it is as of the date, computed by the readable specification."""
    account, customer, dues, payments = _records(app, account_id)
    terms = app.config.terms
    product = terms.products[account.product_code]
    bucket_set = terms.bucket_sets[product.bucket_set]
    held = _holds_active(app, as_of)
    on_hold = bool(held.filter(pl.col("account_id") == account_id).height)
    snap = delinquency.snapshot(
        account_id,
        product,
        bucket_set,
        terms.stages,
        dues,
        payments,
        as_of,
        on_hold=on_hold,
        segments=terms.segments,
        jurisdiction=None if customer is None else customer.jurisdiction,
        attributes=attributes.values_of(app.engine, account_id, as_of, terms.needed_attributes),
    )
    entered = repo.stage_entered_on(app.engine, account_id, as_of, snap.stage)
    ordered = delinquency.ordered_dues(dues, product)
    text = explain_words.explain_text(
        snap, account, customer, product, bucket_set, ordered, payments, entered
    )
    barred_text, barred_data = _time_barred(app, account, customer, snap, payments, as_of)
    contact_text, contact_data = explain_contacts(app, account_id, as_of)
    data = explain_words.explain_json(snap, entered) | {"contacts": contact_data}
    if barred_data:
        data["time_barred"] = barred_data
    return Explanation(text + barred_text + contact_text, data, snap)


def _time_barred(
    app: App,
    account: Account,
    customer: Customer | None,
    snap: delinquency.AccountSnapshot,
    payments: list[Payment],
    as_of: dt.date,
) -> tuple[str, dict[str, Any]]:
    """A US account's debt as the letters and e-mails of the day see it (US-TBD-01): time-barred or not,
    since when, and the disclosure they carry, or why they are refused."""
    from duecourse.services import time_barred

    if customer is None or customer.jurisdiction != "US":
        return "", {}
    notice: time_barred.Notice | time_barred.DisclosureUnknown
    try:
        notice = time_barred.notice_of(
            app.config,
            account,
            customer,
            snap.oldest_unpaid_due_date,
            payments,
            as_of,
            customer.locale or "en-US",
        )
    except time_barred.DisclosureUnknown as refused:
        notice = refused
    return time_barred.explain(notice, customer)
