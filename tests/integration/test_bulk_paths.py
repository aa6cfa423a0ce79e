"""The bulk paths of the store on both databases: the SQLite worker process, reading by account, and the
chunked daily run, which must give exactly what one pass over the whole portfolio gives.

The size thresholds below which SQLite keeps to the standard driver are set to 0 here, so that small
frames take the bulk paths.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import Engine, text

from duecourse.bootstrap import App, bootstrap
from duecourse.domain.errors import ProblemsError
from duecourse.engine import schema
from duecourse.services import portfolio as svc
from duecourse.services.synth import generate_bench_portfolio, write_csvs
from duecourse.store import frames, repo
from duecourse.store.db import StoreConflict, init_db, make_engine
from duecourse.store.frames import read_by_account, read_frame, replace_snapshots, write_frame, writing
from duecourse.store.tables import accounts, dues, payments

D = dt.date
AS_OF = D(2026, 6, 30)
BIG = 9_000_000_000_000


@pytest.fixture
def bulk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every frame, however small, through the bulk paths."""
    monkeypatch.setattr(frames, "BULK_MIN_ROWS", 0)
    monkeypatch.setattr(frames, "BULK_MIN_ACCOUNTS", 0)


def customers(*ids: str) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                name: cid if name == "customer_id" else f"{name} 'of' \\ 北京 {cid}"
                for name in schema.CUSTOMERS
            }
            for cid in ids
        ],
        schema=schema.CUSTOMERS,
    )


def accounts_of(ids: list[str], customer: str = "C1") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "account_id": ids,
            "customer_id": [customer] * len(ids),
            "product_code": ["card_full"] * len(ids),
            "opened_on": [D(2024, 2, 29)] * len(ids),
        },
        schema=schema.ACCOUNTS,
    )


def many_dues(n: int, account_ids: list[str]) -> pl.DataFrame:
    """n dues over the accounts; the first 3,000 have no minimum and no posting day (nulls first)."""
    i = pl.int_range(n, dtype=pl.Int64)
    ids = pl.Series(account_ids)
    return pl.select(
        account_id=ids.gather((i % len(account_ids)).cast(pl.UInt32)),
        due_id=pl.format("d{}", i),
        due_date=pl.lit(D(2020, 1, 1)) + pl.duration(days=i % 3650),
        amount_minor=i * 1_000_003 + BIG,
        component=pl.lit("principal"),
        minimum_minor=pl.when(i >= 3000).then(i),
        posted_on=pl.when(i >= 3000).then(pl.lit(D(2019, 12, 31))),
    ).cast(pl.Schema(schema.DUES))


def snapshots_of(as_of: dt.date, ids: list[str]) -> pl.DataFrame:
    n = len(ids)
    return pl.DataFrame(
        {
            "account_id": ids,
            "as_of": [as_of] * n,
            "currency": ["CNY"] * n,
            "days_past_due": list(range(n)),
            "delinquency_days": list(range(n)),
            "bucket": ["M1"] * n,
            "amount_past_due_minor": [BIG] * n,
            "principal_past_due_minor": [1] * n,
            "interest_past_due_minor": [0] * n,
            "fee_past_due_minor": [0] * n,
            "penalty_past_due_minor": [-1] * n,
            "oldest_unpaid_due_date": [None if d % 2 else as_of for d in range(n)],
            "missed_dues": [1] * n,
            "stage": ["early"] * n,
            "on_hold": [d % 3 == 0 for d in range(n)],
            "outstanding_minor": [BIG] * n,
            "credit_minor": [0] * n,
            "penalty_interest_minor": [7] * n,
            "card_interest_minor": [8] * n,
            "late_fees_minor": [9] * n,
        },
        schema=schema.SNAPSHOTS,
    )


ODD_IDS = ["A1", "A2", "O'Neil", "back\\slash", "北京-7", "Z9"]


def stored(engine: Engine) -> pl.DataFrame:
    write_frame(engine, "customers", customers("C1", "C2"))
    write_frame(engine, "accounts", accounts_of(ODD_IDS))
    frame = many_dues(5000, ODD_IDS)
    write_frame(engine, "dues", frame)
    return frame


# --- the worker -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("bulk")
def test_frames_written_and_read_in_bulk_come_back_exactly(engine: Engine) -> None:
    written = stored(engine)
    snaps = snapshots_of(AS_OF, ODD_IDS)
    assert replace_snapshots(engine, AS_OF, snaps) == len(ODD_IDS)
    for table, frame in [("customers", customers("C1", "C2")), ("dues", written), ("snapshots", snaps)]:
        for bulk_read in (False, True):
            read = read_frame(engine, table, bulk=bulk_read)
            assert read.schema == frame.schema
            assert read.sort(read.columns[:2]).equals(frame.sort(frame.columns[:2])), (table, bulk_read)


@pytest.mark.usefixtures("bulk")
def test_a_bulk_write_that_breaks_a_key_or_a_reference_writes_nothing(engine: Engine) -> None:
    write_frame(engine, "customers", customers("C1"))
    with pytest.raises(StoreConflict):
        write_frame(engine, "customers", customers("C2", "C1", "C3"))
    with pytest.raises(StoreConflict):
        write_frame(engine, "accounts", accounts_of(["A1"], customer="nobody"))
    assert read_frame(engine, "customers")["customer_id"].to_list() == ["C1"]
    assert read_frame(engine, "accounts").height == 0


@pytest.mark.usefixtures("bulk")
def test_a_bulk_replace_of_snapshots_replaces_only_that_day(engine: Engine) -> None:
    day1, day2 = AS_OF, AS_OF + dt.timedelta(days=1)
    replace_snapshots(engine, day1, snapshots_of(day1, ODD_IDS))
    replace_snapshots(engine, day2, snapshots_of(day2, ODD_IDS))
    assert replace_snapshots(engine, day2, snapshots_of(day2, ["A1"])) == 1
    assert repo.snapshot_for(engine, day1).height == len(ODD_IDS)
    assert repo.snapshot_for(engine, day2)["account_id"].to_list() == ["A1"]


@pytest.mark.usefixtures("bulk")
def test_existing_keys_in_bulk_finds_the_stored_rows(engine: Engine) -> None:
    assert repo.existing_keys(engine, "dues", many_dues(10, ODD_IDS)).height == 0  # nothing stored yet
    written = stored(engine)
    incoming = pl.concat([written.slice(4000, 20), many_dues(5020, ODD_IDS).slice(5000, 20)])
    found = repo.existing_keys(engine, "dues", incoming)
    assert found.equals(written.slice(4000, 20).sort("account_id", "due_id"))


# --- reading by account ---------------------------------------------------------------------------


@pytest.mark.parametrize("forced", [pytest.param(True, id="bulk"), pytest.param(False, id="small")])
def test_every_row_is_in_exactly_one_chunk_of_whole_accounts(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, forced: bool
) -> None:
    if forced:
        monkeypatch.setattr(frames, "BULK_MIN_ACCOUNTS", 0)
    written = stored(engine)
    # Dues of accounts that are not stored, below the first id and above the last.
    orphans = many_dues(4, ["0-before", "龘-after"]).with_columns(due_id=pl.format("o{}", pl.int_range(4)))
    write_frame(engine, "dues", orphans)
    tables = {"accounts": accounts, "dues": dues, "payments": payments}
    chunks = list(read_by_account(engine, tables, 4))
    assert len(chunks) == 2
    seen = [set(chunk["dues"]["account_id"]) for chunk in chunks]
    assert not seen[0] & seen[1]
    assert [chunk["accounts"].height for chunk in chunks] == [4, 2]
    for chunk, ids in zip(chunks, seen, strict=True):
        assert set(chunk["accounts"]["account_id"]) <= ids
    every = pl.concat([chunk["dues"] for chunk in chunks]).sort("account_id", "due_id")
    assert every.equals(pl.concat([written, orphans]).sort("account_id", "due_id"))
    assert all(chunk["payments"].schema == pl.Schema(schema.PAYMENTS) for chunk in chunks)


@pytest.mark.usefixtures("bulk")
def test_every_chunk_is_read_from_the_database_as_it_was_when_the_reading_began(engine: Engine) -> None:
    ids = [f"A{n:02d}" for n in range(12)]
    write_frame(engine, "customers", customers("C1"))
    write_frame(engine, "accounts", accounts_of(ids))
    tables = {"accounts": accounts, "dues": dues, "payments": payments}
    chunks = read_by_account(engine, tables, 2)
    first = next(chunks)
    later = pl.DataFrame(
        {"payment_id": ids, "account_id": ids, "paid_on": [AS_OF] * 12, "amount_minor": [1] * 12},
        schema=schema.PAYMENTS,
    )
    write_frame(engine, "payments", later)  # committed while the chunks are being read
    rest = list(chunks)
    assert [chunk["accounts"].height for chunk in [first, *rest]] == [2] * 6
    assert all(chunk["payments"].is_empty() for chunk in [first, *rest])


@pytest.mark.usefixtures("bulk")
def test_the_readers_of_the_chunks_share_one_snapshot(engine: Engine) -> None:
    write_frame(engine, "customers", customers("C1"))
    query = 'SELECT "customer_id" FROM "customers"'
    with frames._range_reader(engine, in_worker=frames.backend_of(engine) == "sqlite") as (fetches, _):
        assert len(fetches) == 2
        write_frame(engine, "customers", customers("C2"))  # committed after the reading began
        for fetch in fetches:
            assert fetch(query, (), {"customer_id": pl.String()})["customer_id"].to_list() == ["C1"]


@pytest.mark.usefixtures("bulk")
def test_the_runs_chunks_hold_the_columns_it_reads_typed_as_stored(engine: Engine) -> None:
    written = stored(engine)
    (whole,) = list(repo.portfolio_chunks(engine, 10))
    (lean,) = list(repo.portfolio_chunks(engine, 10, for_run=True))
    assert lean.accounts.columns == list(repo.RUN_COLUMNS["accounts"])
    assert lean.payments.columns == list(repo.RUN_COLUMNS["payments"])
    assert lean.accounts.equals(whole.accounts.select(repo.RUN_COLUMNS["accounts"]))
    postgres = frames.backend_of(engine) == "postgresql"
    if postgres and not frames._pg_byte_ordered(engine, "dues", repo.RUN_DUES_ORDER):
        assert lean.dues.schema == pl.Schema(schema.DUES)
        assert lean.dues.sort("account_id", "due_id").equals(written.sort("account_id", "due_id"))
        return
    # The SQLite worker, and PostgreSQL where the ids sort by their bytes (a C locale, as the tests'),
    # read the dues without their ids, in the order of their key (the bytes of the texts, as Polars sorts
    # them); in the worker the nulls are read as stand-ins and put back, and the dates parsed.
    columns = [name for name in repo.RUN_COLUMNS["dues"] if name != "due_id"]
    assert lean.dues.schema == pl.Schema({name: schema.DUES[name] for name in columns})
    assert lean.dues.equals(written.sort(repo.RUN_DUES_ORDER).select(columns))
    assert lean.dues["posted_on"].null_count() == lean.dues["minimum_minor"].null_count() == 3000


@pytest.mark.usefixtures("bulk")
def test_an_ordered_read_of_a_nullable_column_needs_a_stand_in_for_its_nulls(engine: Engine) -> None:
    stored(engine)
    ordered = frames.Ranged(dues, ("account_id", "minimum_minor"), order_by=("account_id", "due_id"))
    read = read_by_account(engine, {"dues": ordered}, 10)
    if frames.backend_of(engine) == "postgresql":  # stand-ins are the SQLite worker's alone
        assert next(read)["dues"].height == 5000
        return
    with pytest.raises(ValueError, match="minimum_minor"):
        next(read)


@pytest.mark.usefixtures("bulk")
def test_a_stored_date_that_is_not_iso_fails_a_bulk_read(engine: Engine) -> None:
    if frames.backend_of(engine) != "sqlite":
        pytest.skip("only SQLite stores dates as text")
    stored(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE dues SET due_date = '2020-1-1' WHERE due_id = 'd7'"))
    with pytest.raises(frames.StoreError, match="2020-1-1"):
        read_frame(engine, "dues", bulk=True)


@pytest.mark.usefixtures("bulk")
def test_accounts_without_dues_or_payments_read_as_empty_frames_of_the_runs_columns(engine: Engine) -> None:
    # No typed first row in these reads (no column of them can be null): the types of an empty result
    # come from the columns' types all the same.
    write_frame(engine, "customers", customers("C1"))
    write_frame(engine, "accounts", accounts_of(["A1", "A2"]))
    chunks = list(repo.portfolio_chunks(engine, 1, for_run=True, previous_day=AS_OF))
    assert len(chunks) == 2
    for chunk in chunks:
        assert chunk.dues.height == chunk.payments.height == 0
        assert chunk.payments.schema == pl.Schema(
            {n: schema.PAYMENTS[n] for n in repo.RUN_COLUMNS["payments"]}
        )
        assert set(chunk.dues.schema.items()) <= set(schema.DUES.items())
        assert chunk.previous_stages is not None
        assert chunk.previous_stages.schema == pl.Schema({"account_id": pl.String(), "stage": pl.String()})


@pytest.mark.postgres
def test_postgresql_reads_in_key_order_only_where_the_ids_sort_by_their_bytes(
    postgres_databases: Callable[..., AbstractContextManager[str]],
) -> None:
    with postgres_databases() as url:
        init_db(url)
        engine = make_engine(url)
        try:
            with engine.begin() as connection:
                connection.execute(text('CREATE TABLE t (a text COLLATE "C", p text COLLATE "POSIX", n int)'))
                icu = connection.execute(
                    text("SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu'")
                ).first()
                if icu:
                    connection.execute(text('ALTER TABLE t ADD COLUMN u text COLLATE "und-x-icu"'))
                locale = connection.execute(
                    text("SELECT datcollate FROM pg_database WHERE datname = current_database()")
                ).scalar_one()
            c_like = locale in {"C", "POSIX", "C.UTF-8", "C.utf8"}
            assert frames._pg_byte_ordered(engine, "dues", ("account_id", "due_id")) == c_like
            assert frames._pg_byte_ordered(engine, "t", ("a", "p"))
            assert not frames._pg_byte_ordered(engine, "t", ("a", "n"))  # not text
            assert not frames._pg_byte_ordered(engine, "t", ("a", "missing"))
            assert not frames._pg_byte_ordered(engine, "missing", ("a",))
            if icu:
                assert not frames._pg_byte_ordered(engine, "t", ("a", "u"))
        finally:
            engine.dispose()


def test_an_empty_database_reads_as_one_empty_chunk(engine: Engine) -> None:
    (chunk,) = list(repo.portfolio_chunks(engine, 10))
    assert chunk.accounts.height == chunk.dues.height == chunk.payments.height == 0
    assert chunk.dues.schema == pl.Schema(schema.DUES)


def _import_bench_portfolio(url: str, folder: Path) -> None:
    """A small benchmark portfolio imported through the importer, every frame through the bulk paths."""
    init_db(url)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(frames, "BULK_MIN_ROWS", 0)
        patch.setattr(frames, "BULK_MIN_ACCOUNTS", 0)
        app = bootstrap(url, None)
        try:
            files = write_csvs(generate_bench_portfolio(accounts=50, seed=7, as_of=AS_OF), folder)
            for kind in svc.KINDS:
                svc.import_file(app, kind, files[kind])
        finally:
            app.engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def bench_template(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_databases: Callable[..., AbstractContextManager[str]],
) -> Iterator[str]:
    """A database of each kind holding the benchmark portfolio, imported once for the module (each
    import costs the SQLite worker's start-ups); the tests change copies of it (``bench_app``)."""
    folder = tmp_path_factory.mktemp("bench")
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'template.db'}"
        _import_bench_portfolio(url, folder / "in")
        yield url
        return
    with postgres_databases() as url:
        _import_bench_portfolio(url, folder / "in")
        yield url


@pytest.fixture
def bench_app(
    bench_template: str, tmp_path: Path, database_copy: Callable[[str, Path], AbstractContextManager[str]]
) -> Iterator[App]:
    """A database of its own holding a small benchmark portfolio, imported through the importer: a copy
    of ``bench_template``."""
    with database_copy(bench_template, tmp_path) as url:
        app = bootstrap(url, None)
        try:
            yield app
        finally:
            app.engine.dispose()


def _stored_day(app: App, day: dt.date) -> tuple[pl.DataFrame, pl.DataFrame]:
    history = read_frame(app.engine, "stage_history").sort("account_id", "entered_on")
    return repo.snapshot_for(app.engine, day), history


@pytest.mark.usefixtures("bulk")
def test_the_run_in_chunks_stores_what_one_pass_stores(bench_app: App) -> None:
    app = bench_app
    one_pass = svc.run_day(app, AS_OF, repo.load_portfolio(app.engine))
    expected = _stored_day(app, AS_OF)
    chunked = svc.run_day(app, AS_OF, accounts_per_chunk=25)  # a re-run of the day replaces it
    assert chunked.accounts == one_pass.accounts == 50
    assert chunked.stages == one_pass.stages
    assert chunked.stage_changes == one_pass.stage_changes
    got = _stored_day(app, AS_OF)
    assert got[0].equals(expected[0])
    assert got[1].equals(expected[1])
    # The next day, in a daily rhythm, the same again.
    nxt = AS_OF + dt.timedelta(days=1)
    svc.run_day(app, nxt, accounts_per_chunk=30)
    expected_next = _stored_day(app, nxt)
    svc.run_day(app, nxt, repo.load_portfolio(app.engine))
    assert _stored_day(app, nxt)[0].equals(expected_next[0])
    assert _stored_day(app, nxt)[1].equals(expected_next[1])


@pytest.mark.usefixtures("bulk")
def test_the_run_in_chunks_takes_dues_of_one_day_and_component_in_the_order_of_their_ids(
    bench_app: App,
) -> None:
    app = bench_app
    cards = read_frame(app.engine, "accounts").filter(pl.col("product_code").str.starts_with("card"))
    ids = cards["account_id"].head(5).to_list()
    n = len(ids)
    # Two statements of each card account on the same day, written in the reverse of their ids' order
    # (so not in the order of the key as stored); the payment pays the first in full by its due date,
    # so that only the second bears interest.
    tied = pl.DataFrame(
        {
            "account_id": ids * 2,
            "due_id": ["T-2"] * n + ["T-1"] * n,
            "due_date": [D(2026, 5, 20)] * 2 * n,
            "amount_minor": [500_000] * n + [20_000] * n,
            "component": ["principal"] * 2 * n,
            "minimum_minor": [None] * 2 * n,
            "posted_on": [D(2026, 4, 30)] * 2 * n,
        },
        schema=schema.DUES,
    )
    write_frame(app.engine, "dues", tied)
    paid = pl.DataFrame(
        {
            "payment_id": [f"T-{i}" for i in range(n)],
            "account_id": ids,
            "paid_on": [D(2026, 5, 20)] * n,
            "amount_minor": [20_000] * n,
        },
        schema=schema.PAYMENTS,
    )
    write_frame(app.engine, "payments", paid)
    one_pass = svc.run_day(app, AS_OF, repo.load_portfolio(app.engine))
    expected = _stored_day(app, AS_OF)
    chunked = svc.run_day(app, AS_OF, accounts_per_chunk=7)
    assert chunked.stages == one_pass.stages
    got = _stored_day(app, AS_OF)
    assert got[0].equals(expected[0])
    assert got[1].equals(expected[1])


@pytest.mark.usefixtures("bulk")
def test_a_bulk_import_is_all_or_nothing_and_idempotent(bench_app: App, tmp_path: Path) -> None:
    app = bench_app
    before = read_frame(app.engine, "payments")
    again = write_csvs(generate_bench_portfolio(accounts=50, seed=7, as_of=AS_OF), tmp_path / "again")
    assert svc.import_file(app, "payments", again["payments"]).rows_added == 0
    more = tmp_path / "more.csv"
    rows = pl.read_csv(again["payments"], infer_schema=False)
    rows.head(2).with_columns(payment_id=pl.format("NEW{}", pl.int_range(2))).vstack(
        rows.slice(2, 1).with_columns(amount=pl.lit("1.00"))  # a stored id with other content
    ).write_csv(more)
    with pytest.raises(ProblemsError):
        svc.import_file(app, "payments", more)
    assert read_frame(app.engine, "payments").sort("payment_id").equals(before.sort("payment_id"))


@pytest.fixture
def small_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """Imports checked and written in slices of 7 rows."""
    monkeypatch.setattr(svc, "IMPORT_CHUNK_ROWS", 7)


def _payments_file(app: App, path: Path, changed: bool) -> tuple[Path, int]:
    """Stored payments again, new ones, then a last row that is bad (or a stored id with another amount).

    Returns the file and the row of its last line.
    """
    stored = read_frame(app.engine, "payments").sort("payment_id")
    text = stored.select(
        "payment_id",
        "account_id",
        pl.col("paid_on").cast(pl.String),
        (pl.col("amount_minor") // 100).cast(pl.String).alias("whole"),
        (pl.col("amount_minor") % 100).cast(pl.String).str.zfill(2).alias("cents"),
    ).select("payment_id", "account_id", "paid_on", pl.format("{}.{}", "whole", "cents").alias("amount"))
    new = text.head(30).with_columns(payment_id=pl.format("NEW{}", pl.int_range(30)))
    if changed:
        last = text.head(1).with_columns(amount=pl.lit("1.23"))
        text = text.slice(1)
    else:
        last = text.head(1).with_columns(payment_id=pl.lit("NEW-LAST"), amount=pl.lit("abc"))
    rows = pl.concat([text, new, last])
    rows.write_csv(path)
    return path, rows.height + 1


@pytest.mark.usefixtures("bulk", "small_slices")
@pytest.mark.parametrize("changed", [pytest.param(False, id="bad-row"), pytest.param(True, id="changed-row")])
def test_an_import_in_slices_writes_nothing_when_its_last_slice_has_a_problem(
    bench_app: App, tmp_path: Path, changed: bool
) -> None:
    app = bench_app
    before = read_frame(app.engine, "payments").sort("payment_id")
    path, last = _payments_file(app, tmp_path / "more.csv", changed)
    with pytest.raises(ProblemsError) as caught:
        svc.import_file(app, "payments", path)
    (problem,) = caught.value.problems
    assert problem.source == f"{path}:{last}:amount"
    assert problem.code == ("import.changed_row" if changed else "import.bad_amount")
    assert read_frame(app.engine, "payments").sort("payment_id").equals(before)


@pytest.mark.usefixtures("bulk", "small_slices")
def test_an_import_in_slices_adds_the_new_rows_and_counts_the_stored_ones(
    bench_app: App, tmp_path: Path
) -> None:
    app = bench_app
    stored = read_frame(app.engine, "payments").height
    path, _last = _payments_file(app, tmp_path / "more.csv", changed=False)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n")  # without the bad last row
    result = svc.import_file(app, "payments", path)
    assert (result.rows_added, result.rows_unchanged) == (30, stored)
    assert read_frame(app.engine, "payments").height == stored + 30
    assert svc.import_file(app, "payments", path).rows_added == 0


def _schema_of(engine: Engine, table: str) -> set[tuple[str, ...]]:
    """The indexes and constraints of a table as the database describes them."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            rows = connection.execute(
                text("SELECT type, name, sql FROM sqlite_master WHERE tbl_name = :t"), {"t": table}
            )
        else:
            rows = connection.execute(
                text(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = :t "
                    "UNION ALL SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conrelid = CAST(:t AS regclass)"
                ),
                {"t": table},
            )
        return {tuple(str(v) for v in row) for row in rows}


@pytest.mark.usefixtures("bulk", "small_slices")
def test_a_first_import_in_slices_stores_every_row_and_keeps_each_tables_keys_and_indexes(
    engine: Engine, tmp_path: Path, db_url: str
) -> None:
    tables = ("customers", "accounts", "dues", "payments")
    before = {name: _schema_of(engine, name) for name in tables}
    app = bootstrap(db_url, None)
    try:
        synth = generate_bench_portfolio(accounts=40, seed=3, as_of=AS_OF)
        files = write_csvs(synth, tmp_path / "in")
        for kind in svc.KINDS:
            expected = getattr(synth, kind)
            assert svc.import_file(app, kind, files[kind]).rows_added == expected.height
            key = svc.KEYS[kind]
            assert read_frame(engine, kind).sort(key).equals(expected.sort(key))
    finally:
        app.engine.dispose()
    assert {name: _schema_of(engine, name) for name in tables} == before


@pytest.mark.usefixtures("bulk")
def test_a_load_into_an_empty_table_that_repeats_a_key_writes_nothing_and_keeps_the_key(
    engine: Engine,
) -> None:
    before = _schema_of(engine, "dues")
    frame = many_dues(20, ["A1", "A2"])
    with pytest.raises(StoreConflict), writing(engine, 40) as writer:
        writer.load_empty("dues")
        writer.append("dues", frame)
        writer.append("dues", frame.slice(5, 1))
    assert read_frame(engine, "dues").height == 0
    assert _schema_of(engine, "dues") == before
    write_frame(engine, "dues", frame)
    with pytest.raises(StoreConflict):
        write_frame(engine, "dues", frame.slice(5, 1))


@pytest.mark.usefixtures("bulk")
def test_a_load_into_an_empty_table_that_breaks_a_reference_writes_nothing_and_keeps_it(
    engine: Engine,
) -> None:
    write_frame(engine, "customers", customers("C1"))
    before = _schema_of(engine, "accounts")
    with pytest.raises(StoreConflict), writing(engine, 2) as writer:
        writer.load_empty("accounts")
        writer.append("accounts", accounts_of(["A1"]))
        writer.append("accounts", accounts_of(["A2"], customer="nobody"))
    assert read_frame(engine, "accounts").height == 0
    assert _schema_of(engine, "accounts") == before
    with pytest.raises(StoreConflict):
        write_frame(engine, "accounts", accounts_of(["A3"], customer="nobody"))


@pytest.mark.usefixtures("bulk")
def test_a_load_into_a_table_that_is_not_empty_keeps_its_indexes_as_it_writes(engine: Engine) -> None:
    write_frame(engine, "customers", customers("C1"))
    write_frame(engine, "accounts", accounts_of(["A1"]))
    before = _schema_of(engine, "accounts")
    with writing(engine, 1) as writer:
        writer.load_empty("accounts")
        writer.append("accounts", accounts_of(["A2"]))
    assert _schema_of(engine, "accounts") == before
    assert read_frame(engine, "accounts").height == 2


# --- beside a writer in another process -----------------------------------------------------------

_WRITER = textwrap.dedent(
    """
    import sqlite3, sys, time
    db, first, last, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    connection = sqlite3.connect(db, timeout=30, isolation_level=None)
    connection.execute("PRAGMA busy_timeout = 30000")
    done, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        connection.execute("BEGIN IMMEDIATE")
        for account in (first, last):
            connection.execute(
                "INSERT INTO payments VALUES (?, ?, '2026-06-01', 100)", (f"W{done}-{account}", account)
            )
        connection.execute("COMMIT")
        done += 1
    print(done)
    """
)


@pytest.mark.usefixtures("bulk")
def test_bulk_reads_and_writes_stay_consistent_beside_a_writer_in_another_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    init_db(url)
    engine = make_engine(url)
    try:
        ids = [f"A{n:03d}" for n in range(40)]
        write_frame(engine, "customers", customers("C1"))
        write_frame(engine, "accounts", accounts_of(ids))
        write_frame(engine, "dues", many_dues(4000, ids))
        writer = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(tmp_path / "shared.db"), ids[0], ids[-1], "4"],
            stdout=subprocess.PIPE,
            text=True,
        )
        tables = {"accounts": accounts, "dues": dues, "payments": payments}
        rounds = 0
        while writer.poll() is None or rounds < 2:
            chunks = list(read_by_account(engine, tables, 10))
            first, last = chunks[0]["payments"], chunks[-1]["payments"]
            # Both payments of a writer's transaction, or neither: every chunk saw the same snapshot.
            assert first.filter(pl.col("account_id") == ids[0]).height == last.height
            replace_snapshots(engine, AS_OF, snapshots_of(AS_OF, ids))
            rounds += 1
        committed = int(writer.communicate(timeout=60)[0])
        assert writer.returncode == 0
        assert committed > 0
        assert read_frame(engine, "payments").height == 2 * committed
        assert repo.snapshot_for(engine, AS_OF).height == len(ids)
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA integrity_check")).scalar_one() == "ok"
    finally:
        engine.dispose()


def test_two_workers_read_one_snapshot_unless_another_writer_holds_the_lock(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    init_db(url)
    engine = make_engine(url)
    count = 'SELECT count(*) AS n FROM "customers"'
    try:
        with frames._sqlite_worker(engine) as first, frames._sqlite_worker(engine) as second:
            assert frames._one_snapshot(engine, first, second)
            write_frame(engine, "customers", customers("C1"))  # committed after both snapshots were taken
            for worker in (first, second):
                assert worker.query(count, (), {"n": pl.Int64()}, typed=True).item() == 0
                worker.execute("ROLLBACK")
            with engine.begin() as connection:  # another writer holds the write lock
                connection.execute(text("DELETE FROM customers"))
                assert not frames._one_snapshot(engine, first, second)
            for worker in (first, second):  # neither was left in a transaction: they see the commit
                assert worker.query(count, (), {"n": pl.Int64()}, typed=True).item() == 0
    finally:
        engine.dispose()


def test_the_worker_refuses_to_run_beside_pythons_sqlite3(tmp_path: Path) -> None:
    script = Path(frames.__file__).with_name("_sqlite_worker.py")
    database = tmp_path / "x.db"
    guarded = (
        f"import runpy, sqlite3, sys; sys.argv = ['worker', {str(database)!r}]; "
        f"runpy.run_path({str(script)!r}, run_name='__main__')"
    )
    done = subprocess.run(
        [sys.executable, "-c", guarded], check=False, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert "must not load Python's sqlite3" in done.stderr
    assert not database.exists()
