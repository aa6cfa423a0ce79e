"""A segmented strategy through the run: the chunks carry the customer's jurisdiction, the run in chunks
(the SQLite worker, PostgreSQL's readers) stores what one pass over the whole portfolio stores, and the
segment's stages get the segment's actions, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from test_bulk_paths import bulk  # noqa: F401 - a fixture
from test_governed_run import DAY, _rows, _setup

from duecourse.bootstrap import App, bootstrap
from duecourse.config import default_config_text
from duecourse.services import portfolio as svc
from duecourse.services.synth import generate_bench_portfolio, write_csvs
from duecourse.store import repo
from duecourse.store.db import init_db
from duecourse.store.frames import read_frame

AS_OF = dt.date(2026, 6, 30)
# US accounts with a balance of 2,000 or more, then every other US account, each on stages of their own.
SEGMENTS = """
[[strategy.segments]]
name = "us-large"
when = { jurisdictions = ["US"], min_balance = "2000.00" }

  [[strategy.segments.stages]]
  name = "US-L1"
  min_days_past_due = 1

  [[strategy.segments.stages]]
  name = "US-L2"
  min_delinquency_days = 30

[[strategy.segments]]
name = "us"
when = { jurisdictions = ["US"] }

  [[strategy.segments.stages]]
  name = "US-1"
  min_days_past_due = 1
"""


def _config(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "duecourse.toml"
    path.write_text(default_config_text() + extra, encoding="utf-8")
    return path


@pytest.fixture
def segmented_app(db_url: str, tmp_path: Path) -> Iterator[App]:
    """A small benchmark portfolio (customers in CN, the US and the UK) under a segmented strategy."""
    init_db(db_url)
    app = bootstrap(db_url, _config(tmp_path, SEGMENTS))
    files = write_csvs(generate_bench_portfolio(accounts=60, seed=11, as_of=AS_OF), tmp_path / "in")
    for kind in svc.KINDS:
        svc.import_file(app, kind, files[kind])
    try:
        yield app
    finally:
        app.engine.dispose()


@pytest.mark.usefixtures("bulk")
def test_the_chunks_carry_each_accounts_jurisdiction(segmented_app: App) -> None:
    """Read in bulk (the SQLite worker, PostgreSQL's readers); the standard driver's read is the CLI
    test's below."""
    engine = segmented_app.engine
    whole = repo.load_portfolio(engine)
    expected = repo.with_jurisdiction(whole.accounts, whole.customers).select(
        *repo.RUN_COLUMNS["accounts"], "jurisdiction"
    )
    chunks = list(repo.portfolio_chunks(engine, 25, for_run=True, with_jurisdiction=True))
    assert len(chunks) == 3
    got = pl.concat([chunk.accounts for chunk in chunks]).sort("account_id")
    assert got.columns == [*repo.RUN_COLUMNS["accounts"], "jurisdiction"]
    assert got.equals(expected.sort("account_id"))
    assert set(got["jurisdiction"]) == {"CN", "US", "UK"}


@pytest.mark.usefixtures("bulk")
def test_a_segmented_run_in_chunks_stores_what_one_pass_stores(segmented_app: App) -> None:
    app = segmented_app
    one_pass = svc.run_day(app, AS_OF, repo.load_portfolio(app.engine))
    expected = repo.snapshot_for(app.engine, AS_OF)
    chunked = svc.run_day(app, AS_OF, accounts_per_chunk=25)
    assert chunked.stages == one_pass.stages
    got = repo.snapshot_for(app.engine, AS_OF)
    assert got.equals(expected)
    # Every overdue US account is on a US segment's stages, and no other account is.
    whole = repo.load_portfolio(app.engine)
    staged = got.join(repo.with_jurisdiction(whole.accounts, whole.customers), on="account_id")
    us = staged.filter(pl.col("jurisdiction") == "US", pl.col("days_past_due") > 0)
    assert us.height and set(us["stage"]) <= {"US-L1", "US-L2", "US-1"}
    large = staged.filter(pl.col("jurisdiction") == "US", pl.col("outstanding_minor") >= 200_000)
    assert set(large.filter(pl.col("days_past_due") > 0)["stage"]) <= {"US-L1", "US-L2"}
    others = staged.filter(pl.col("jurisdiction") != "US")
    assert not set(others["stage"]) & {"US-L1", "US-L2", "US-1"}
    history = read_frame(app.engine, "stage_history")
    assert set(history.filter(pl.col("account_id").is_in(us["account_id"].to_list()))["stage"]) & {
        "US-L1",
        "US-L2",
        "US-1",
    }


CN_CARDS = """
[[strategy.segments]]
name = "cn-cards"
when = { jurisdictions = ["CN"], products = ["card_cn"] }

  [[strategy.segments.stages]]
  name = "CN-card-1"
  min_days_past_due = 1

    [[strategy.segments.stages.actions]]
    name = "card-mail"
    channel = "email"
    kind = "overdue_reminder"
    repeat_every_days = 1
    max_times = 30
    at = "09:00"
"""


def test_a_segments_stage_gets_the_segments_actions_and_explain_says_why(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """C1 has a card (A1) and a loan (A2) overdue: the card is on the CN card segment's stage and gets
    that stage's e-mail; the loan stays on the default M1 and gets the default stages' actions."""
    cli = _setup(db_url, tmp_path, extra=CN_CARDS)
    capsys.readouterr()
    assert cli("run", "--as-of", DAY, "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["stages"]["CN-card-1"] == 1
    out = tmp_path / "decisions.csv"
    assert cli("export", "decisions", "--from", DAY, "--to", DAY, "--out", str(out)) == 0
    by = {(r["account_id"], r["action"]): r for r in _rows(out)}
    assert by["A1", "card-mail"]["stage"] == "CN-card-1"
    assert {r["stage"] for (account, _), r in by.items() if account == "A2"} == {"M1"}
    # One contact a day for C1 across both accounts, and across the two ladders: the loan's M1 (the
    # second stage of its ladder) outranks the card's first stage, so the card's e-mail waits a day.
    assert by["A2", "mail"]["verdict"] == "planned"
    assert by["A1", "card-mail"]["verdict"] == "deferred"
    assert by["A1", "card-mail"]["rule_id"] == "COMMON-CAP-DAILY"
    assert by["A1", "card-mail"]["scheduled_at"].startswith("2025-05-06T")
    assert not [key for key in by if key[0] == "A1" and key[1] != "card-mail"]

    assert cli("explain", "A1", "--as-of", DAY) == 0
    text = capsys.readouterr().out
    assert "Segment cn-cards: product card_cn in card_cn and jurisdiction CN in CN" in text
    assert "Stage CN-card-1" in text
    assert cli("explain", "A2", "--as-of", DAY, "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["segment"], data["segment_condition"]) == ("default", "no segment's conditions hold")
