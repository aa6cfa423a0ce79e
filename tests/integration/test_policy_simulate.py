"""``duecourse policy simulate`` replays the stored portfolio with the current or a proposed strategy and
counts messages by day, channel and verdict, the governor's rules, the cost and the peak day, on SQLite and
PostgreSQL, through the command line; it writes nothing.

The portfolio: C1 (Asia/Shanghai) has a card A1 (in M1 since 2025-04-27) and a loan A2 (in M1 since
2025-04-11, in M2 from 2025-05-11); C2 (New York) has a card A3 that is current until its 2025-05-06
minimum goes unpaid and enters M1 on 2025-05-07. The current strategy e-mails every day in M1.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest
from sqlalchemy import insert, select

from duecourse.bootstrap import bootstrap
from duecourse.cli import main
from duecourse.config import default_config_text, load_config
from duecourse.services.simulate import simulate
from duecourse.store.db import make_engine
from duecourse.store.tables import decisions, holds, metadata

FIRST, LAST = "2025-05-05", "2025-05-11"

CUSTOMERS = """\
customer_id,name,locale,timezone,jurisdiction,phone,email,address_line1,address_line2,city,region,postal_code,country
C1,王芳,zh-CN,Asia/Shanghai,CN,+8613800138000,wang@example.cn,朝阳区建国路88号,,北京,北京,100022,CN
C2,Jane Roe,en-US,America/New_York,US,+12125550100,jane@example.com,1 Main St,,Albany,NY,12207,US
"""
ACCOUNTS = """\
account_id,customer_id,product_code,opened_on
A1,C1,card_cn,2024-01-10
A2,C1,loan_cn,2024-06-01
A3,C2,card_us,2024-02-01
"""
DUES = """\
account_id,due_id,due_date,amount,component,minimum_amount,posted_on
A1,S1,2025-04-23,3000.00,principal,300.00,2025-03-30
A2,I1,2025-03-10,500.00,principal,,
A2,I1i,2025-03-10,50.00,interest,,
A2,I2,2025-04-10,500.00,principal,,
A2,I2i,2025-04-10,50.00,interest,,
A2,I3,2025-05-10,500.00,principal,,
A2,I3i,2025-05-10,50.00,interest,,
A3,S1,2025-04-25,800.00,principal,40.00,2025-03-28
A3,S2,2025-05-06,500.00,principal,25.00,2025-04-28
"""
PAYMENTS = """\
payment_id,account_id,paid_on,amount
P1,A2,2025-03-09,550.00
P2,A2,2025-04-20,300.00
P3,A3,2025-04-24,40.00
"""
MAIL = """
  [[strategy.stages.actions]]
  name = "mail"
  channel = "email"
  kind = "overdue_reminder"
  repeat_every_days = 1
  max_times = 30
  at = "10:00"
"""
TEXT = """
  [[strategy.stages.actions]]
  name = "text"
  channel = "sms"
  kind = "overdue_reminder"
  repeat_every_days = 7
  max_times = 5
  at = "10:00"
"""
COSTS = """
[costs]
currency = "CNY"
email = "0.01"
letter = "1.20"
sms_segment = "0.05"
"""
M2 = '[[strategy.stages]]\nname = "M2"'
M1_THRESHOLD = 'name = "M1"                    # delinquent, 1-30 days after grace\nmin_delinquency_days = 1'


def _config_text(tmp_path: Path, actions: str, *, m1_days: int = 1, extra: str = COSTS) -> str:
    text = default_config_text()
    assert M2 in text and M1_THRESHOLD in text
    text = text.replace(M2, actions + "\n" + M2)
    text = text.replace(M1_THRESHOLD, f'name = "M1"\nmin_delinquency_days = {m1_days}')
    return (
        text
        + f'\n[channels.email]\ntransport = "files"\ndir = "{tmp_path / "email"}"\n'
        + 'from = "示例消费金融 <collect@example.cn>"\n'
        + f'\n[channels.sms]\ngateway = "files"\ndir = "{tmp_path / "sms"}"\n'
        + f'\n[channels.post]\ndir = "{tmp_path / "print"}"\n'
        + extra
    )


def _file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(dedent(text), encoding="utf-8")
    return path


def _setup(db_url: str, tmp_path: Path) -> tuple[Callable[..., int], Path]:
    """The current configuration (M1 e-mails daily) and the portfolio imported; the CLI on both."""
    config = _file(tmp_path, "duecourse.toml", _config_text(tmp_path, MAIL))

    def cli(*args: str) -> int:
        return main(["--db", db_url, "--config", str(config), *args])

    assert cli("init") == 0
    for kind, body in (
        ("customers", CUSTOMERS),
        ("accounts", ACCOUNTS),
        ("dues", DUES),
        ("payments", PAYMENTS),
    ):
        assert cli("import", kind, str(_file(tmp_path, f"{kind}.csv", body))) == 0
    return cli, config


def _simulated(cli: Callable[..., int], capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    capsys.readouterr()
    assert cli("policy", "simulate", "--from", FIRST, "--to", LAST, "--json", *args) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def _totals(data: dict[str, Any]) -> dict[tuple[str, str], int]:
    """Messages by (channel, verdict) over the whole range."""
    out: dict[tuple[str, str], int] = {}
    for row in data["messages"]:
        key = (row["channel"], row["verdict"])
        out[key] = out.get(key, 0) + row["count"]
    return out


def _costs(data: dict[str, Any]) -> dict[str, tuple[int, int, str]]:
    return {c["channel"]: (c["messages"], c["units"], c["cost"]) for c in data["costs"]["channels"]}


def test_a_proposed_sms_action_shows_more_texts_and_what_they_cost(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli, _ = _setup(db_url, tmp_path)
    current = _simulated(cli, capsys)
    # C1's two accounts want an e-mail every day (A2's stop when it enters M2 on 05-11): 13, one a day
    # (the first planned, 12 deferred); A3 gets one a day from 05-07: 5.
    assert _totals(current) == {("email", "planned"): 6, ("email", "deferred"): 12}
    assert current["by_rule"] == [{"verdict": "deferred", "rule_id": "COMMON-CAP-DAILY", "count": 12}]
    assert _costs(current) == {"email": (18, 18, "0.18")}
    assert current["costs"]["total"] == "0.18"
    assert current["costs"]["currency"] == "CNY"

    proposed = _file(tmp_path, "proposed.toml", _config_text(tmp_path, MAIL + TEXT))
    data = _simulated(cli, capsys, "--strategy", str(proposed))
    assert data["strategy"] == str(proposed)
    # A weekly text from the day of entry: A3 on 05-07, A2 on 05-09, A1 on 05-11, each behind the day's
    # e-mail (the strategy's first action goes first): deferred, and the e-mails queue behind them.
    assert _totals(data) == {("email", "planned"): 2, ("email", "deferred"): 16, ("sms", "deferred"): 3}
    assert data["by_rule"] == [{"verdict": "deferred", "rule_id": "COMMON-CAP-DAILY", "count": 19}]
    # Both texts take 2 segments: the English one in GSM-7 (248 septets), the Chinese one in UCS-2 (131
    # units: more than 70, so 67 a segment).
    shapes = {
        (s["kind"], s["locale"]): (s["encoding"], s["units"], s["segments"], s["messages"])
        for s in data["sms"]
    }
    assert shapes == {
        ("overdue_reminder", "en-US"): ("GSM-7", 248, 2, 1),
        ("overdue_reminder", "zh-CN"): ("UCS-2", 131, 2, 2),
    }
    assert _costs(data) == {"email": (18, 18, "0.18"), "sms": (3, 6, "0.30")}
    assert data["costs"]["total"] == "0.48"

    capsys.readouterr()
    assert cli("policy", "simulate", "--from", FIRST, "--to", LAST, "--strategy", str(proposed)) == 0
    text = capsys.readouterr().out
    assert "3 accounts of 2 customers would hear from us: 21 messages (0 more suppressed)." in text
    rows = [line.split() for line in text.splitlines()]
    assert ["day", "email", "sms", "messages", "deferred", "suppressed"] in rows
    assert ["2025-05-07", "3", "1", "4", "3", "0"] in rows
    assert ["all", "18", "3", "21", "19", "0"] in rows
    assert "Cost of the messages that would go (CNY, prices from" in text
    assert ["sms", "3", "6", "segments", "0.05", "0.30"] in rows
    assert ["total", "21", "0.48"] in rows
    assert "    overdue_reminder zh-CN: UCS-2, 131 UTF-16 units, 2 segment(s) a text; 2 text(s)" in text
    assert ["all", "2025-05-07", "2"] in rows
    assert "representative data" in text
    assert "Peak daily load" in text


def test_a_higher_stage_threshold_changes_who_is_contacted(db_url: str, tmp_path: Path) -> None:
    _, config = _setup(db_url, tmp_path)
    # M1 from 20 days after grace: A1 (9-15 days) and A3 (1-5 days) stay in "early", which has no action.
    proposed = _file(tmp_path, "m1-20.toml", _config_text(tmp_path, MAIL, m1_days=20))
    app = bootstrap(db_url, config)
    try:
        day = dt.date.fromisoformat
        now = simulate(app, day(FIRST), day(LAST))
        later = simulate(app, day(FIRST), day(LAST), load_config(proposed))
    finally:
        app.engine.dispose()
    assert sorted(now.decisions["account_id"].unique().to_list()) == ["A1", "A2", "A3"]
    assert (now.reached, now.customers_reached) == (3, 2)
    # A2 alone: 05-05..05-10, one a day, nothing over the cap.
    assert later.decisions["account_id"].unique().to_list() == ["A2"]
    assert (later.reached, later.customers_reached) == (1, 1)
    assert later.messages == {(day(FIRST) + dt.timedelta(days=n), "email", "planned"): 1 for n in range(6)}
    assert later.by_rule == {}
    assert [(c.channel, c.messages, c.cost) for c in later.costs] == [("email", 6, Decimal("0.06"))]


def test_the_daily_cap_holds_across_the_simulated_days(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli, config = _setup(db_url, tmp_path)
    app = bootstrap(db_url, config)
    try:
        sim = simulate(app, dt.date.fromisoformat(FIRST), dt.date.fromisoformat(LAST))
    finally:
        app.engine.dispose()
    going = sim.decisions.filter(sim.decisions["verdict"] != "suppressed")
    c1 = going.filter(going["customer_id"] == "C1").sort("local_day")
    # 13 e-mails for C1's card and loan, each on a day of its own, 05-05 through 05-17.
    assert c1["local_day"].to_list() == [dt.date(2025, 5, 5) + dt.timedelta(days=n) for n in range(13)]
    assert sim.beyond == 6
    # The load: C1 one a day, C2 one a day from 05-07; the first busiest day is 05-07.
    assert sim.peak == {"all": (dt.date(2025, 5, 7), 2), "email": (dt.date(2025, 5, 7), 2)}
    assert sum(sim.load.values()) == 12
    data = _simulated(cli, capsys)
    assert data["peak"]["all"] == {"day": "2025-05-07", "count": 2}
    assert data["deferred_beyond_range"] == 6


def test_a_not_mine_hold_suppresses_on_the_days_it_is_in_force(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli, _ = _setup(db_url, tmp_path)
    engine = make_engine(db_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                insert(holds).values(
                    scope="account",
                    customer_id="C1",
                    account_id="A2",
                    channel=None,
                    kind="not_mine",
                    starts_on=dt.date(2025, 5, 1),
                    ends_on=dt.date(2025, 5, 7),
                    reason="the customer says the loan is not theirs",
                    created_at=dt.datetime(2025, 5, 1, tzinfo=dt.UTC),
                )
            )
    finally:
        engine.dispose()
    data = _simulated(cli, capsys)
    # A2 is suppressed 05-05..05-07; from 05-08 it shares C1's one message a day with A1 again.
    assert _totals(data) == {("email", "planned"): 9, ("email", "deferred"): 6, ("email", "suppressed"): 3}
    assert data["by_rule"] == [
        {"verdict": "deferred", "rule_id": "COMMON-CAP-DAILY", "count": 6},
        {"verdict": "suppressed", "rule_id": "COMMON-HOLD-NOT-MINE", "count": 3},
    ]
    # Suppressed messages cost nothing.
    assert _costs(data) == {"email": (15, 15, "0.15")}


def _everything(db_url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            return {
                table.name: sorted((tuple(row) for row in connection.execute(select(table))), key=repr)
                for table in metadata.sorted_tables
            }
    finally:
        engine.dispose()


def test_the_outbox_counts_and_nothing_is_written(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli, config = _setup(db_url, tmp_path)
    # Real runs of 05-04 and 05-05: 05-04 defers A2's e-mail to 05-05, which fills C1's day there.
    assert cli("run", "--as-of", "2025-05-04") == 0
    assert cli("run", "--as-of", FIRST) == 0
    before = _everything(db_url)
    assert before["outbox"] and before["decisions"] and before["snapshots"]

    # With the current strategy the simulation decides the day that was run as the run did.
    app = bootstrap(db_url, config)
    try:
        sim = simulate(app, dt.date.fromisoformat(FIRST), dt.date.fromisoformat(LAST))
        with app.engine.connect() as connection:
            run = sorted(
                connection.execute(
                    select(decisions.c.key, decisions.c.verdict, decisions.c.rule_id).where(
                        decisions.c.day == dt.date.fromisoformat(FIRST)
                    )
                ).all()
            )
    finally:
        app.engine.dispose()
    day_one = sim.decisions.filter(sim.decisions["day"] == dt.date.fromisoformat(FIRST))
    assert sorted(day_one.select("key", "verdict", "rule_id").iter_rows()) == [tuple(r) for r in run]
    assert [verdict for _, verdict, _ in run] == ["deferred", "deferred"]
    assert _everything(db_url) == before

    proposed = _file(tmp_path, "proposed.toml", _config_text(tmp_path, MAIL + TEXT))
    data = _simulated(cli, capsys, "--strategy", str(proposed))
    assert _everything(db_url) == before
    capsys.readouterr()
    assert cli("policy", "simulate", "--from", FIRST, "--to", LAST) == 0
    assert _everything(db_url) == before

    # The outbox's message of 05-05 (planned on 05-04) takes C1's 05-05: both of its e-mails move on.
    first = {(r["channel"], r["verdict"]): r["count"] for r in data["messages"] if r["day"] == FIRST}
    assert first == {("email", "deferred"): 2}
    # C1 never gets a day of its own in the range; C2's first e-mail (05-07) is the one planned.
    assert _totals(data) == {("email", "planned"): 1, ("email", "deferred"): 17, ("sms", "deferred"): 3}
    # A strategy that contacts only A2: the real run of 05-05 (which it stands in for) e-mailed A1 too,
    # but only the outbox's message planned before the range (A2's of 05-04, on 05-05) holds A2 back.
    narrow = _file(tmp_path, "m1-20.toml", _config_text(tmp_path, MAIL, m1_days=20))
    only_a2 = _simulated(cli, capsys, "--strategy", str(narrow))
    assert _everything(db_url) == before
    assert _totals(only_a2) == {("email", "deferred"): 6}
    assert only_a2["load"] == [
        {"day": f"2025-05-{n:02}", "channel": "email", "count": 1} for n in range(6, 12)
    ]
    assert only_a2["deferred_beyond_range"] == 0
    assert any(
        "outbox: 2 message(s) planned before 2025-05-05" in note
        and "; 2 planned from 2025-05-05 on are left out" in note
        for note in data["notes"]
    )


def test_bad_ranges_and_strategy_files_are_refused_with_every_problem(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli, _ = _setup(db_url, tmp_path)
    capsys.readouterr()
    assert cli("policy", "simulate", "--from", "2025-05-12", "--to", FIRST) == 1
    assert "--from 2025-05-12 is after --to 2025-05-05" in capsys.readouterr().err
    assert cli("policy", "simulate", "--from", "2025-01-01", "--to", "2026-01-02") == 1
    assert "is 367 days; a simulation covers at most 366" in capsys.readouterr().err

    bad = _file(
        tmp_path,
        "bad.toml",
        _config_text(tmp_path, MAIL, extra="\n[governor]\ndaily_contacts_per_customer = 0\nsurprise = 1\n"),
    )
    lines = bad.read_text(encoding="utf-8").splitlines()
    cap_line = lines.index("daily_contacts_per_customer = 0") + 1
    key_line = lines.index("surprise = 1") + 1
    assert (
        cli("policy", "simulate", "--from", "2025-05-12", "--to", FIRST, "--strategy", str(bad), "--json")
        == 1
    )
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert problems[0]["code"] == "simulate.bad_range"
    assert sorted(p["source"] for p in problems[1:]) == [f"{bad}:{cap_line}", f"{bad}:{key_line}"]

    missing = tmp_path / "nowhere.toml"
    assert cli("policy", "simulate", "--from", FIRST, "--to", LAST, "--strategy", str(missing)) == 1
    assert f"{missing}: no such strategy file" in capsys.readouterr().err


def test_an_empty_database_has_nothing_to_simulate(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before `init`: no tables (and on SQLite no file, which the simulation does not create).
    assert main(["--db", db_url, "policy", "simulate", "--from", FIRST, "--to", LAST]) == 1
    assert "run `duecourse init` and import the portfolio first" in capsys.readouterr().err
    assert not (tmp_path / "duecourse.db").exists()
    assert main(["--db", db_url, "init"]) == 0
    capsys.readouterr()
    assert main(["--db", db_url, "policy", "simulate", "--from", FIRST, "--to", LAST]) == 1
    assert "no accounts are imported: there is nothing to simulate" in capsys.readouterr().err


PRE_DUE = """
[[strategy.pre_due]]
name = "soon"
channel = "sms"
kind = "pre_due"
offset_days = -1
at = "10:00"
"""


def test_reminders_before_the_due_date_are_simulated_as_the_runs_plan_them(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A3's statement minimum of 25.00 falls due on 05-06 and its credit does not cover it: the reminder
    one day before, on 05-05, is simulated, and the runs of those days plan the very same one."""
    cli, config = _setup(db_url, tmp_path)
    proposed = _file(tmp_path, "proposed.toml", _config_text(tmp_path, MAIL) + PRE_DUE)
    data = _simulated(cli, capsys, "--strategy", str(proposed))
    reminders = [r for r in data["messages"] if r["channel"] == "sms"]
    assert [(r["day"], r["count"]) for r in reminders if r["verdict"] == "planned"] == [("2025-05-05", 1)]

    config.write_text(proposed.read_text(encoding="utf-8"), encoding="utf-8")
    day = dt.date.fromisoformat(FIRST)
    while day <= dt.date.fromisoformat(LAST):
        assert cli("run", "--as-of", day.isoformat()) == 0
        day += dt.timedelta(days=1)
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            planned = connection.execute(
                select(decisions.c.day, decisions.c.account_id, decisions.c.verdict).where(
                    decisions.c.action == "soon"
                )
            ).all()
    finally:
        engine.dispose()
    assert [(str(d), a, v) for d, a, v in planned] == [("2025-05-05", "A3", "planned")]
