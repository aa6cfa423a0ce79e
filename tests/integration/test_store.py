"""The store on both databases: migrations, bulk frame I/O, and the functions the services call."""

from __future__ import annotations

import datetime as dt
import sqlite3
from contextlib import closing
from pathlib import Path

import polars as pl
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, Table, insert, select, text

from duecourse.engine import schema
from duecourse.store import repo, tables
from duecourse.store.db import (
    SQLITE_PAGE_SIZE,
    StoreConflict,
    UnsupportedDatabase,
    current_revision,
    head_revision,
    init_db,
    make_engine,
    normalize_url,
)
from duecourse.store.frames import read_frame, replace_snapshots, table_schema, write_frame

D = dt.date
BIG = 9_000_000_000_000  # beyond 32 bits, in minor units


def customers_frame(*ids: str) -> pl.DataFrame:
    rows = [
        {
            "customer_id": cid,
            "name": "Zhang Wěi" if n % 2 else 'O\'Brien, "Pat"',
            "locale": "zh-CN" if n % 2 else "en-GB",
            "timezone": "Asia/Shanghai" if n % 2 else "Europe/London",
            "jurisdiction": "CN" if n % 2 else "UK",
            "phone": "" if n % 2 else "+44 20 7946 0000",
            "email": f"{cid}@example.com",
            "address_line1": "1 Long Road\twith a tab",
            "address_line2": "",
            "city": "北京" if n % 2 else "London",
            "region": "",
            "postal_code": "100000" if n % 2 else "N1 9GU",
            "country": "CN" if n % 2 else "GB",
        }
        for n, cid in enumerate(ids)
    ]
    return pl.DataFrame(rows, schema=schema.CUSTOMERS)


def accounts_frame(pairs: list[tuple[str, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "account_id": [a for a, _ in pairs],
            "customer_id": [c for _, c in pairs],
            "product_code": ["card_full"] * len(pairs),
            "opened_on": [D(2024, 2, 29)] * len(pairs),
        },
        schema=schema.ACCOUNTS,
    )


def dues_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "account_id": ["A1", "A1", "A2", "A2"],
            "due_id": ["d1", "d2", "d1", "d\\N"],
            "due_date": [D(2025, 1, 31), D(1970, 1, 1), D(2099, 12, 31), D(2000, 1, 1)],
            "amount_minor": [BIG, 1, -250, 0],
            "component": ["principal", "interest", "fee", "penalty"],
            "minimum_minor": [BIG // 10, None, None, 5],
            "posted_on": [D(2025, 1, 1), None, D(1999, 12, 31), None],
        },
        schema=schema.DUES,
    )


def payments_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "payment_id": ["p1", "p2"],
            "account_id": ["A1", "A2"],
            "paid_on": [D(2025, 2, 3), D(2025, 2, 4)],
            "amount_minor": [BIG, 1],
        },
        schema=schema.PAYMENTS,
    )


def snapshots_frame(as_of: dt.date, stages: dict[str, str]) -> pl.DataFrame:
    n = len(stages)
    return pl.DataFrame(
        {
            "account_id": list(stages),
            "as_of": [as_of] * n,
            "currency": ["CNY"] * n,
            "days_past_due": list(range(n)),
            "delinquency_days": [max(0, d - 3) for d in range(n)],
            "bucket": ["current" if d == 0 else "M1" for d in range(n)],
            "amount_past_due_minor": [BIG * (d % 2) for d in range(n)],
            "principal_past_due_minor": list(range(n)),
            "interest_past_due_minor": [0] * n,
            "fee_past_due_minor": [0] * n,
            "penalty_past_due_minor": [-1] * n,
            "oldest_unpaid_due_date": [None if d == 0 else as_of - dt.timedelta(days=d) for d in range(n)],
            "missed_dues": list(range(n)),
            "stage": list(stages.values()),
            "on_hold": [d % 2 == 1 for d in range(n)],
            "outstanding_minor": [BIG] * n,
            "credit_minor": [0] * n,
            "penalty_interest_minor": [7] * n,
            "card_interest_minor": [8] * n,
            "late_fees_minor": [9] * n,
        },
        schema=schema.SNAPSHOTS,
    )


def stored_portfolio(engine: Engine) -> None:
    write_frame(engine, "customers", customers_frame("C1", "C2"))
    write_frame(engine, "accounts", accounts_frame([("A1", "C1"), ("A2", "C2"), ("A3", "C2")]))
    write_frame(engine, "dues", dues_frame())
    write_frame(engine, "payments", payments_frame())


# --- schema and migrations ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "frame_schema"),
    [
        pytest.param(tables.customers, schema.CUSTOMERS, id="customers"),
        pytest.param(tables.accounts, schema.ACCOUNTS, id="accounts"),
        pytest.param(tables.dues, schema.DUES, id="dues"),
        pytest.param(tables.payments, schema.PAYMENTS, id="payments"),
        pytest.param(tables.snapshots, schema.SNAPSHOTS, id="snapshots"),
    ],
)
def test_each_frame_table_has_the_columns_and_dtypes_of_its_frame_schema(
    table: Table, frame_schema: dict[str, pl.DataType]
) -> None:
    assert table_schema(table) == frame_schema
    assert list(table_schema(table)) == list(frame_schema)


def test_init_db_is_idempotent_and_reports_the_head_revision(db_url: str) -> None:
    assert current_revision(db_url) is None
    first = init_db(db_url)
    again = init_db(db_url)
    assert first == again == head_revision() == current_revision(db_url)


def test_the_first_migration_creates_the_tables_as_declared(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, tables.metadata) == []


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = "sqlite:///./relative.db"
    init_db(url)
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
            assert connection.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
        write_frame(engine, "customers", customers_frame("C1"))
        assert read_frame(engine, "customers")["customer_id"].to_list() == ["C1"]
    finally:
        engine.dispose()
    assert (tmp_path / "relative.db").exists()


def test_a_new_sqlite_file_has_16_kib_pages_and_an_existing_one_keeps_its_own(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    with closing(sqlite3.connect(old)) as connection:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("CREATE TABLE t (x)")
    for path, size in ((tmp_path / "new.db", SQLITE_PAGE_SIZE), (old, 4096)):
        init_db(f"sqlite:///{path}")
        with closing(sqlite3.connect(path)) as connection:
            assert connection.execute("PRAGMA page_size").fetchone() == (size,)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("sqlite://", id="sqlite-in-memory"),
        pytest.param("sqlite:///:memory:", id="sqlite-memory-path"),
        pytest.param("mysql://u@h/db", id="mysql"),
        pytest.param("postgresql+psycopg2://u@h/db", id="psycopg2"),
    ],
)
def test_urls_the_store_cannot_serve_are_refused(url: str) -> None:
    with pytest.raises(UnsupportedDatabase):
        normalize_url(url)


def test_a_bare_postgresql_url_means_psycopg_3() -> None:
    assert normalize_url("postgresql://u@h:5432/db").drivername == "postgresql+psycopg"


# --- bulk frames --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "frame_schema"),
    [
        pytest.param("customers", schema.CUSTOMERS, id="customers"),
        pytest.param("accounts", schema.ACCOUNTS, id="accounts"),
        pytest.param("dues", schema.DUES, id="dues"),
        pytest.param("payments", schema.PAYMENTS, id="payments"),
        pytest.param("snapshots", schema.SNAPSHOTS, id="snapshots"),
    ],
)
def test_a_frame_reads_back_exactly_as_written(
    engine: Engine, kind: str, frame_schema: dict[str, pl.DataType]
) -> None:
    stored_portfolio(engine)
    written = {
        "customers": customers_frame("C1", "C2"),
        "accounts": accounts_frame([("A1", "C1"), ("A2", "C2"), ("A3", "C2")]),
        "dues": dues_frame(),
        "payments": payments_frame(),
        "snapshots": snapshots_frame(D(2025, 3, 1), {"A1": "current", "A2": "early", "A3": "late"}),
    }[kind]
    if kind == "snapshots":
        write_frame(engine, "snapshots", written)
    key = list(tables.KEYS[kind])
    read = read_frame(engine, kind)
    assert read.schema == pl.Schema(frame_schema)
    assert read.sort(key).equals(written.sort(key))


def test_an_empty_table_reads_as_an_empty_frame_of_its_schema(engine: Engine) -> None:
    read = read_frame(engine, "dues")
    assert read.height == 0
    assert read.schema == pl.Schema(schema.DUES)


def test_a_frame_with_columns_in_another_order_is_written_by_name(engine: Engine) -> None:
    customers = customers_frame("C1")
    write_frame(engine, "customers", customers.select(reversed(customers.columns)))
    assert read_frame(engine, "customers").equals(customers)


def test_sql_text_with_parameters_reads_typed_like_the_stored_columns(engine: Engine) -> None:
    stored_portfolio(engine)
    read = read_frame(
        engine,
        "SELECT account_id, due_id, due_date, amount_minor FROM dues"
        " WHERE due_date >= :day ORDER BY account_id, due_id",
        {"day": D(2025, 1, 1)},
    )
    assert read.to_dicts() == [
        {"account_id": "A1", "due_id": "d1", "due_date": D(2025, 1, 31), "amount_minor": BIG},
        {"account_id": "A2", "due_id": "d1", "due_date": D(2099, 12, 31), "amount_minor": -250},
    ]
    one = read_frame(engine, "SELECT * FROM accounts WHERE account_id = :a", {"a": "A2"}, schema.ACCOUNTS)
    assert one.rows() == [("A2", "C2", "card_full", D(2024, 2, 29))]
    nothing = read_frame(engine, "SELECT customer_id FROM customers WHERE customer_id = :c", {"c": "none"})
    assert nothing.schema == pl.Schema({"customer_id": pl.String()})


def test_a_core_select_reads_typed_by_its_columns(engine: Engine) -> None:
    stored_portfolio(engine)
    stmt = select(tables.dues.c.due_id, tables.dues.c.posted_on).where(tables.dues.c.account_id == "A2")
    read = read_frame(engine, stmt).sort("due_id")
    assert read.rows() == [("d1", D(1999, 12, 31)), ("d\\N", None)]
    assert read.schema == pl.Schema({"due_id": pl.String(), "posted_on": pl.Date()})


def test_a_duplicate_key_writes_nothing_of_the_frame(engine: Engine) -> None:
    write_frame(engine, "customers", customers_frame("C1"))
    with pytest.raises(StoreConflict):
        write_frame(engine, "customers", customers_frame("C2", "C1", "C3"))
    assert read_frame(engine, "customers")["customer_id"].to_list() == ["C1"]


def test_an_account_of_an_unknown_customer_is_refused(engine: Engine) -> None:
    with pytest.raises(StoreConflict):
        write_frame(engine, "accounts", accounts_frame([("A1", "nobody")]))
    assert read_frame(engine, "accounts").height == 0


def test_a_column_the_table_lacks_is_refused(engine: Engine) -> None:
    with pytest.raises(ValueError, match="no columns"):
        write_frame(engine, "payments", payments_frame().with_columns(currency=pl.lit("CNY")))


def test_replace_snapshots_replaces_only_that_day(engine: Engine) -> None:
    day1, day2 = D(2025, 3, 1), D(2025, 3, 2)
    first = snapshots_frame(day1, {"A1": "current", "A2": "early"})
    replace_snapshots(engine, day1, first)
    replace_snapshots(engine, day2, snapshots_frame(day2, {"A1": "current", "A2": "early"}))
    rerun = snapshots_frame(day2, {"A1": "late", "A3": "current"})
    assert replace_snapshots(engine, day2, rerun) == 2
    assert repo.snapshot_for(engine, day1).equals(first)
    assert repo.snapshot_for(engine, day2).equals(rerun)
    assert repo.snapshot_for(engine, D(2025, 3, 3)).height == 0
    assert replace_snapshots(engine, day2, rerun.head(0)) == 0
    assert repo.snapshot_for(engine, day2).height == 0
    assert repo.snapshot_for(engine, day1).equals(first)


def test_a_connection_held_open_sees_what_the_frames_write(engine: Engine) -> None:
    with engine.connect() as held:
        assert held.execute(text("SELECT count(*) FROM customers")).scalar_one() == 0
        write_frame(engine, "customers", customers_frame("C1", "C2"))
        assert held.execute(text("SELECT count(*) FROM customers")).scalar_one() == 2
        held.commit()
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM customers WHERE customer_id = 'C1'"))
    assert read_frame(engine, "customers")["customer_id"].to_list() == ["C2"]


def test_replace_snapshots_refuses_rows_of_another_day(engine: Engine) -> None:
    with pytest.raises(ValueError, match="not as of"):
        replace_snapshots(engine, D(2025, 3, 1), snapshots_frame(D(2025, 3, 2), {"A1": "current"}))


def test_two_hundred_thousand_dues_are_written_and_read_back(engine: Engine) -> None:
    n = 200_000
    i = pl.int_range(n, dtype=pl.Int64)
    frame = pl.select(
        account_id=(i // 4).cast(pl.String).str.zfill(9),
        due_id=(i % 4).cast(pl.String),
        due_date=pl.lit(D(2020, 1, 1)) + pl.duration(days=i % 3650),
        amount_minor=i * 1_000_003,
        component=pl.lit("principal"),
        minimum_minor=pl.when(i % 3 == 0).then(i),
        posted_on=pl.lit(None, dtype=pl.Date),
    ).cast(pl.Schema(schema.DUES))
    assert write_frame(engine, "dues", frame) == n
    read = read_frame(engine, "dues")
    assert read.sort("account_id", "due_id").equals(frame.sort("account_id", "due_id"))


# --- the functions the services call ------------------------------------------------------------


def test_existing_keys_finds_the_same_and_the_changed_rows_with_their_stored_values(engine: Engine) -> None:
    stored_portfolio(engine)
    incoming = pl.DataFrame(
        {
            "account_id": ["A1", "A1", "A9"],
            "due_id": ["d1", "d2", "d1"],
            "due_date": [D(2025, 1, 31), D(1970, 1, 1), D(2025, 1, 1)],
            "amount_minor": [BIG, 2, 3],  # d1 the same, d2 changed, A9/d1 new
            "component": ["principal", "interest", "fee"],
            "minimum_minor": [BIG // 10, None, None],
            "posted_on": [D(2025, 1, 1), None, None],
        },
        schema=schema.DUES,
    )
    found = repo.existing_keys(engine, "dues", incoming)
    assert found.schema == pl.Schema(schema.DUES)
    assert found.equals(dues_frame().filter(pl.col("account_id") == "A1").sort("account_id", "due_id"))
    assert repo.existing_keys(engine, "payments", payments_frame().head(0)).height == 0
    customers = repo.existing_keys(engine, "customers", customers_frame("C2", "C2", "C7"))
    assert customers["customer_id"].to_list() == ["C2"]


def test_load_portfolio_reads_every_frame_sorted_by_key(engine: Engine) -> None:
    stored_portfolio(engine)
    portfolio = repo.load_portfolio(engine)
    assert portfolio.customers.equals(customers_frame("C1", "C2"))
    assert portfolio.accounts.equals(accounts_frame([("A1", "C1"), ("A2", "C2"), ("A3", "C2")]))
    assert portfolio.dues.equals(dues_frame().sort("account_id", "due_id"))
    assert portfolio.payments.equals(payments_frame())


def test_record_run_keeps_one_record_per_day_with_aware_instants(engine: Engine) -> None:
    day = D(2025, 3, 1)
    shanghai = dt.timezone(dt.timedelta(hours=8))
    started = dt.datetime(2025, 3, 2, 1, 0, 0, 123456, tzinfo=shanghai)
    repo.record_run(engine, day, started, started + dt.timedelta(minutes=5), 10, "failed")
    repo.record_run(engine, day, started, started + dt.timedelta(minutes=7), 12, "ok")
    with engine.connect() as connection:
        rows = connection.execute(select(tables.runs)).all()
    assert len(rows) == 1
    (run,) = rows
    assert (run.accounts, run.status, run.engine) == (12, "ok", "polars")
    assert run.started_at == started
    assert run.started_at.utcoffset() == dt.timedelta(0)
    assert run.finished_at == started + dt.timedelta(minutes=7)
    read = read_frame(engine, "runs")
    assert read["started_at"].to_list() == [started]
    assert read.schema["started_at"] == pl.Datetime("us", "UTC")


def test_record_import_returns_a_new_id_each_time(engine: Engine) -> None:
    now = dt.datetime(2025, 3, 1, 9, 30, tzinfo=dt.UTC)
    first = repo.record_import(engine, "dues", "dues.csv", "ab" * 32, 10, 0, now)
    second = repo.record_import(engine, "dues", "dues.csv", "ab" * 32, 0, 10, now)
    assert second > first
    read = read_frame(engine, "imports").sort("id")
    assert read.select("rows_added", "rows_unchanged", "imported_at").rows() == [(10, 0, now), (0, 10, now)]


def test_a_naive_instant_is_refused(engine: Engine) -> None:
    with pytest.raises(Exception, match="naive"):
        repo.record_import(engine, "dues", "f", "x", 0, 0, dt.datetime(2025, 3, 1, 9, 30))


STAGE_CHANGE = {"account_id": pl.String(), "stage": pl.String(), "entered_on": pl.Date()}


def stage_changes(day: dt.date, stages: dict[str, str]) -> pl.DataFrame:
    return pl.DataFrame(
        {"account_id": list(stages), "stage": list(stages.values()), "entered_on": [day] * len(stages)},
        schema=STAGE_CHANGE,
    )


def test_stage_history_and_the_latest_stages_before_a_day(engine: Engine) -> None:
    d1, d2, d3 = D(2025, 3, 1), D(2025, 3, 2), D(2025, 3, 3)
    replace_snapshots(engine, d1, snapshots_frame(d1, {"A1": "current", "A2": "early"}))
    repo.write_stage_changes(engine, stage_changes(d1, {"A1": "current", "A2": "early"}))
    replace_snapshots(engine, d2, snapshots_frame(d2, {"A1": "early", "A2": "early", "A3": "current"}))
    repo.write_stage_changes(engine, stage_changes(d2, {"A1": "early", "A3": "current"}))

    assert repo.latest_stages_before(engine, d1).height == 0
    assert repo.latest_stages_before(engine, d2).rows() == [("A1", "current", d1), ("A2", "early", d1)]
    latest = repo.latest_stages_before(engine, d3)
    assert latest.schema == pl.Schema(
        {"account_id": pl.String(), "stage": pl.String(), "entered_on": pl.Date()}
    )
    assert latest.rows() == [("A1", "early", d2), ("A2", "early", d1), ("A3", "current", d2)]
    assert repo.stage_history(engine, "A1").rows() == [("A1", "current", d1), ("A1", "early", d2)]
    assert repo.stage_entered_on(engine, "A2", d3, "early") == d1
    assert repo.stage_entered_on(engine, "A2", d3, "late") is None

    assert repo.accounts_ever_in_collection(engine, d1, d1).to_list() == ["A2"]
    assert repo.accounts_ever_in_collection(engine, d1, d3).to_list() == ["A1", "A2"]
    assert repo.accounts_ever_in_collection(engine, d3, d3).to_list() == []

    assert repo.replace_stage_changes_on(engine, d2, stage_changes(d2, {"A2": "late"})) == 1
    assert repo.stage_history(engine, "A1").rows() == [("A1", "current", d1)]
    assert repo.stage_history(engine, "A2").rows() == [("A2", "early", d1), ("A2", "late", d2)]
    assert repo.delete_stage_changes_from(engine, d2) == 1
    assert repo.stage_history(engine, "A2").rows() == [("A2", "early", d1)]


def hold_row(**values: object) -> dict[str, object]:
    created = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
    return {
        "reason": "",
        "created_at": created,
        "account_id": None,
        "channel": None,
        "ends_on": None,
    } | values


def test_accounts_on_hold_are_those_under_an_active_customer_or_account_hold(engine: Engine) -> None:
    stored_portfolio(engine)
    rows = [
        hold_row(scope="customer", customer_id="C2", kind="dispute", starts_on=D(2025, 3, 1)),
        hold_row(
            scope="account",
            customer_id="C1",
            account_id="A1",
            kind="promise",
            starts_on=D(2025, 2, 1),
            ends_on=D(2025, 2, 28),
        ),
        hold_row(scope="channel", customer_id="C1", channel="sms", kind="opt_out", starts_on=D(2025, 1, 1)),
    ]
    with engine.begin() as connection:
        connection.execute(insert(tables.holds), rows)
    assert repo.accounts_on_hold(engine, D(2025, 2, 28)).rows() == [("A1", True)]
    assert repo.accounts_on_hold(engine, D(2025, 3, 1)).rows() == [("A2", True), ("A3", True)]


def test_a_hold_of_an_unknown_scope_is_refused(engine: Engine) -> None:
    stored_portfolio(engine)
    with pytest.raises(Exception, match="(?i)check"), engine.begin() as connection:
        connection.execute(
            insert(tables.holds).values(
                scope="planet",
                customer_id="C1",
                kind="x",
                starts_on=D(2025, 1, 1),
                reason="",
                created_at=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
            )
        )
