"""The daily run plans the stages' actions through the governor, stores every decision with its rule, and
puts only the allowed ones in the outbox; ``export decisions``, ``export communications`` and ``explain``
show them. On SQLite and PostgreSQL, through the command line."""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, select
from test_cli import ACCOUNTS, CUSTOMERS, DUES, PAYMENTS, write

from duecourse.cli import main
from duecourse.config import default_config_text
from duecourse.services.contacts import COMMUNICATION_COLUMNS, DECISION_COLUMNS
from duecourse.store.db import make_engine
from duecourse.store.tables import assignments, decisions, holds, outbox

DAY = "2025-05-05"
# C1 (Asia/Shanghai) has a card (A1) and a loan (A2), both in M1 on DAY; C2's card (A3) is current.
ACTIONS = """
  [[strategy.stages.actions]]
  name = "mail"
  channel = "email"
  kind = "overdue_reminder"
  repeat_every_days = 1
  max_times = 30
  at = "10:00"

  [[strategy.stages.actions]]
  name = "notice"
  channel = "letter"
  kind = "us_validation_notice"
  repeat_every_days = 1
  max_times = 30

"""


def _setup(db_url: str, tmp_path: Path, extra: str = "", actions: str = ACTIONS) -> Callable[..., int]:
    text = default_config_text()
    marker = '[[strategy.stages]]\nname = "M2"'
    assert marker in text
    text = text.replace(marker, actions + marker)
    text += (
        f'\n[channels.email]\ntransport = "files"\ndir = "{tmp_path / "email"}"\n'
        'from = "示例消费金融 <collect@example.cn>"\n'
        f'\n[channels.post]\ndir = "{tmp_path / "print"}"\n' + extra
    )
    config = tmp_path / "duecourse.toml"
    config.write_text(text, encoding="utf-8")

    def cli(*args: str) -> int:
        return main(["--db", db_url, "--config", str(config), *args])

    assert cli("init") == 0
    for kind, body in (
        ("customers", CUSTOMERS),
        ("accounts", ACCOUNTS),
        ("dues", DUES),
        ("payments", PAYMENTS),
    ):
        assert cli("import", kind, str(write(tmp_path, f"{kind}.csv", body))) == 0
    return cli


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file))


def test_one_customer_gets_one_contact_a_day_and_every_decision_says_why(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = _setup(db_url, tmp_path)
    capsys.readouterr()
    assert cli("run", "--as-of", DAY, "--json") == 0
    first = json.loads(capsys.readouterr().out)
    assert first["verdicts"] == {"planned": 1, "deferred": 1, "suppressed": 2}
    assert cli("run", "--as-of", DAY) == 0
    capsys.readouterr()

    out = tmp_path / "decisions.csv"
    assert cli("export", "decisions", "--from", DAY, "--to", DAY, "--out", str(out)) == 0
    rows = _rows(out)
    assert tuple(rows[0]) == DECISION_COLUMNS
    by = {(r["account_id"], r["action"]): r for r in rows}
    assert len(rows) == 4  # the re-run replaced the day's decisions, it did not add to them
    # The card's e-mail goes at 10:00 in Shanghai; the loan's waits for the next day (one contact a day).
    assert by["A1", "mail"]["verdict"] == "planned"
    assert by["A1", "mail"]["scheduled_at"] == "2025-05-05T10:00:00+08:00"
    assert by["A1", "mail"]["planned_because"].startswith("stage M1 entered ")
    assert by["A2", "mail"]["verdict"] == "deferred"
    assert by["A2", "mail"]["rule_id"] == "COMMON-CAP-DAILY"
    assert by["A2", "mail"]["scheduled_at"].startswith("2025-05-06T")
    assert by["A2", "mail"]["scheduled_at"].endswith("+08:00")
    assert by["A2", "mail"]["reason"]
    # A US validation notice is not a letter China uses: suppressed, saying so.
    for account in ("A1", "A2"):
        notice = by[account, "notice"]
        assert notice["verdict"] == "suppressed"
        assert notice["rule_id"] == "POLICY-KIND-NOT-USED"
        assert notice["scheduled_at"] == ""
        assert notice["reason"] == "us_validation_notice is not used for customers in CN"

    out = tmp_path / "communications.csv"
    assert cli("export", "communications", "--from", DAY, "--to", DAY, "--out", str(out)) == 0
    sent = _rows(out)
    assert tuple(sent[0]) == COMMUNICATION_COLUMNS
    assert sorted((r["account_id"], r["channel"], r["state"]) for r in sent) == [
        ("A1", "email", "planned"),
        ("A2", "email", "planned"),
    ]
    assert {r["idempotency_key"] for r in sent} == {
        f"A1|M1|mail|{DAY}|email",
        f"A2|M1|mail|{DAY}|email",
    }
    deferred = next(r for r in sent if r["account_id"] == "A2")
    assert deferred["scheduled_at"] == by["A2", "mail"]["scheduled_at"]

    assert cli("explain", "A2", "--as-of", DAY) == 0
    text = capsys.readouterr().out
    assert "Contacts on 2025-05-05" in text
    assert "email overdue_reminder (stage M1, action mail): deferred to 2025-05-06T08:00:00+08:00" in text
    assert "COMMON-CAP-DAILY" in text
    assert cli("explain", "A2", "--as-of", DAY, "--json") == 0
    contacts = json.loads(capsys.readouterr().out)["contacts"]
    assert [(c["action"], c["verdict"]) for c in contacts] == [("mail", "deferred"), ("notice", "suppressed")]
    assert contacts[0]["seen"]  # the values the rule looked at


def test_a_not_mine_claim_suppresses_the_accounts_reminders(db_url: str, tmp_path: Path) -> None:
    cli = _setup(db_url, tmp_path, "\n[governor]\ndaily_contacts_per_customer = 2\n")
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
                    ends_on=None,
                    reason="the customer says the loan is not theirs",
                    created_at=dt.datetime(2025, 5, 1, tzinfo=dt.UTC),
                )
            )
        assert cli("run", "--as-of", DAY) == 0
        with engine.connect() as connection:
            verdicts = {
                (account, action): (verdict, rule)
                for account, action, verdict, rule in connection.execute(
                    select(
                        decisions.c.account_id, decisions.c.action, decisions.c.verdict, decisions.c.rule_id
                    )
                )
            }
            queued = sorted(connection.execute(select(outbox.c.account_id)).scalars())
    finally:
        engine.dispose()
    assert verdicts["A1", "mail"] == ("planned", "ALLOWED")
    assert verdicts["A2", "mail"] == ("suppressed", "COMMON-HOLD-NOT-MINE")
    assert queued == ["A1"]


def test_an_export_of_a_backwards_range_is_refused(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = _setup(db_url, tmp_path)
    out = tmp_path / "d.csv"
    assert cli("export", "decisions", "--from", "2025-05-06", "--to", DAY, "--out", str(out)) == 1
    assert "--from 2025-05-06 is after --to 2025-05-05" in capsys.readouterr().err
    assert not out.exists()


EXPERIMENT = """
[[strategy.experiments]]
name = "trial-0"
stages = ["M1"]
variants = [
  { name = "champion", percent = 50 },
  { name = "challenger", percent = 25 },
  { name = "holdout", percent = 25, holdout = true },
]
"""
# By the hash of "trial-0|A1" and "trial-0|A2": A1 is in the challenger arm, A2 in the holdout.
CHALLENGER_TEXT = """
  [[strategy.stages.actions]]
  name = "text"
  channel = "sms"
  kind = "overdue_reminder"
  repeat_every_days = 1
  max_times = 30
  at = "11:00"
  experiment = "trial-0"
  variants = ["challenger"]

"""


def test_champion_challenger_arms_are_recorded_and_a_holdout_gets_no_contact(
    db_url: str, tmp_path: Path
) -> None:
    extra = EXPERIMENT + f'\n[channels.sms]\ngateway = "files"\ndir = "{tmp_path / "sms"}"\n'
    extra += "\n[governor]\ndaily_contacts_per_customer = 3\n"
    cli = _setup(db_url, tmp_path, extra, ACTIONS + CHALLENGER_TEXT)
    assert cli("run", "--as-of", DAY) == 0
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            arms = dict(connection.execute(select(assignments.c.account_id, assignments.c.variant)).all())
            verdicts = {
                (a, action): (verdict, rule)
                for a, action, verdict, rule in connection.execute(
                    select(
                        decisions.c.account_id, decisions.c.action, decisions.c.verdict, decisions.c.rule_id
                    )
                )
            }
            reasons = dict(connection.execute(select(outbox.c.key, outbox.c.reason)).all())
        # The arms are recorded and kept: a later change of the percentages moves no one.
        assert arms == {"A1": "challenger", "A2": "holdout"}
        assert verdicts["A1", "text"] == ("planned", "ALLOWED")
        assert verdicts["A1", "mail"] == ("planned", "ALLOWED")
        assert ("A2", "text") not in verdicts  # the challenger's action is not the holdout's
        assert verdicts["A2", "mail"] == ("suppressed", "EXPERIMENT-HOLDOUT")
        assert reasons[f"A1|M1|text|{DAY}|sms"].endswith("for arm challenger of experiment trial-0")
        with engine.begin() as connection:
            connection.execute(delete(decisions))
        config = tmp_path / "duecourse.toml"
        text = config.read_text(encoding="utf-8")
        config.write_text(
            text.replace("percent = 50", "percent = 25").replace(
                "percent = 25, holdout", "percent = 50, holdout"
            ),
            encoding="utf-8",
        )
        assert cli("run", "--as-of", "2025-05-06") == 0
        with engine.connect() as connection:
            again = dict(connection.execute(select(assignments.c.account_id, assignments.c.variant)).all())
        assert again == arms
    finally:
        engine.dispose()


PRE_DUE = """
[[strategy.pre_due]]
channel = "email"
offset_days = -3
at = "09:00"
"""
# C2's card (A3) is current on 2025-05-05; a statement of 800.00 with a minimum of 40.00 falls due on
# 2025-05-25, and the customer has no credit: the reminder goes on 2025-05-22, once.
NEXT_STATEMENT = "A3,S2,2025-05-25,800.00,principal,40.00,2025-04-28\n"


def test_a_reminder_before_the_due_date_goes_once_to_a_current_account(db_url: str, tmp_path: Path) -> None:
    cli = _setup(db_url, tmp_path)
    config = tmp_path / "duecourse.toml"
    text = config.read_text(encoding="utf-8")
    marker = '[[strategy.stages]]\nname = "early"'
    assert marker in text
    config.write_text(text.replace(marker, PRE_DUE + "\n" + marker), encoding="utf-8")
    assert (
        cli("import", "dues", str(write(tmp_path, "more.csv", DUES.splitlines()[0] + "\n" + NEXT_STATEMENT)))
        == 0
    )
    for day in ("2025-05-21", "2025-05-22", "2025-05-23"):
        assert cli("run", "--as-of", day) == 0
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(outbox.c.key, outbox.c.stage, outbox.c.kind, outbox.c.scheduled_at).where(
                    outbox.c.account_id == "A3"
                )
            ).all()
            decided = connection.execute(
                select(decisions.c.day, decisions.c.verdict).where(decisions.c.account_id == "A3")
            ).all()
    finally:
        engine.dispose()
    assert [(k, stage, kind) for k, stage, kind, _ in rows] == [
        ("A3|current|email-pre_due--3|2025-05-22|email", "current", "pre_due")
    ]
    # 09:00 in New York (EDT, UTC-4)
    assert rows[0][3].astimezone(dt.UTC) == dt.datetime(2025, 5, 22, 13, 0, tzinfo=dt.UTC)
    assert decided == [(dt.date(2025, 5, 22), "planned")]
