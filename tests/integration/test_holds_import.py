"""Holds from the institution's other systems (``duecourse import holds``), on SQLite and PostgreSQL,
through the command line: all or nothing with every problem named; the same file again changes nothing; a
hold is lifted by importing its end; a vulnerability hold of a UK customer in collection opens the
specialist team's review (UK-CONC-01), once, and stops the automated reminders; a CN customer's opens
none (the CN pack has no such task)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_support import cli_with
from sqlalchemy import select

from duecourse.config import default_config_text
from duecourse.store.db import make_engine
from duecourse.store.tables import decisions, holds, tasks

CUSTOMERS = """\
customer_id,name,locale,timezone,jurisdiction,phone,email,address_line1,address_line2,city,region,postal_code,country
U1,Jane Doe,en-GB,Europe/London,UK,+447700900123,jane@example.co.uk,1 High Street,,Leeds,,LS1 1AA,GB
U2,John Roe,en-GB,Europe/London,UK,+447700900124,john@example.co.uk,2 High Street,,Leeds,,LS1 1AB,GB
C1,王芳,zh-CN,Asia/Shanghai,CN,+8613800138000,wf@example.cn,建国路1号,,朝阳区,北京市,100022,CN
"""
ACCOUNTS = """\
account_id,customer_id,product_code,opened_on
L1,U1,loan_uk,2025-01-01
L2,U1,loan_uk,2025-01-01
L3,U2,loan_uk,2025-01-01
K1,C1,loan_cn,2025-01-01
"""
# L1 and L3 miss their March instalment; L2 (U1's second loan) is paid up; K1 misses its own.
DUES = """\
account_id,due_id,due_date,amount,component
L1,L1-1,2025-03-01,200.00,principal
L2,L2-1,2025-03-01,200.00,principal
L3,L3-1,2025-03-01,200.00,principal
K1,K1-1,2025-03-01,500.00,principal
"""
PAYMENTS = """\
payment_id,account_id,paid_on,amount
P1,L2,2025-02-28,200.00
"""
ACTIONS = """
  [[strategy.stages.actions]]
  name = "nudge"
  channel = "email"
  kind = "overdue_reminder"
  repeat_every_days = 1
  max_times = 30
  at = "10:00"

"""
HEADER = "hold_id,customer_id,account_id,channel,kind,starts_on,ends_on,reason\n"


def _setup(db_url: str, tmp_path: Path) -> Callable[..., int]:
    text = default_config_text()
    marker = '[[strategy.stages]]\nname = "M2"'
    assert marker in text
    text = text.replace(marker, ACTIONS + marker)
    text += f'\n[channels.email]\ntransport = "files"\ndir = "{tmp_path / "email"}"\n'
    text += 'from = "Bank <bank@example.com>"\n'
    files = (("customers", CUSTOMERS), ("accounts", ACCOUNTS), ("dues", DUES), ("payments", PAYMENTS))
    return cli_with(db_url, tmp_path, text, files)[0]


def _file(tmp_path: Path, name: str, rows: str) -> str:
    path = tmp_path / name
    path.write_text(HEADER + rows, encoding="utf-8")
    return str(path)


def _read(db_url: str, table):  # type: ignore[no-untyped-def]
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            return [dict(r._mapping) for r in connection.execute(select(table))]
    finally:
        engine.dispose()


def test_a_bad_holds_file_is_refused_whole_with_every_problem_named(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = _setup(db_url, tmp_path)
    bad = _file(
        tmp_path,
        "holds.csv",
        "H1,U1,,,bankruptcy,2025-03-10,,chapter 7 filed\n"  # good, but the file is refused whole
        "H2,U9,,,deceased,2025-03-10,,register\n"
        "H3,U1,L3,,litigation,2025-03-10,,suit\n"
        "H4,U1,,sms,vulnerability,2025-03-10,,x\n"
        "H5,U1,,,holiday,2025-03-32,2025-03-01,\n"
        "H1,U2,,,deceased,2025-03-10,,again\n",
    )
    capsys.readouterr()
    assert cli("import", "holds", bad, "--json") == 1
    problems = {(p["source"], p["code"]) for p in json.loads(capsys.readouterr().out)["problems"]}
    assert problems == {
        (f"{bad}:3:customer_id", "import.unknown_customer"),
        (f"{bad}:4:account_id", "import.bad_value"),  # L3 is U2's
        (f"{bad}:5:channel", "import.bad_value"),  # a channel is for an opt-out only
        (f"{bad}:6:kind", "import.bad_value"),
        (f"{bad}:6:starts_on", "import.bad_date"),
        (f"{bad}:6:reason", "import.missing_value"),
        (f"{bad}:7:hold_id", "import.repeated_key"),
    }
    assert _read(db_url, holds) == []


def test_holds_import_once_and_are_lifted_by_their_end(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = _setup(db_url, tmp_path)
    first = _file(
        tmp_path,
        "holds.csv",
        "H1,U2,,,bankruptcy,2025-03-10,,chapter 7 filed\n"
        "H2,U1,,sms,opt_out,2025-03-10,,asked at the branch\n",
    )
    assert cli("import", "holds", first) == 0
    assert cli("import", "holds", first) == 0
    assert "0 holds added, 0 with a new end, 2 already there" in capsys.readouterr().out
    stored = {h["source_id"]: h for h in _read(db_url, holds)}
    assert (stored["H1"]["scope"], stored["H1"]["kind"], stored["H1"]["ends_on"]) == (
        "customer",
        "bankruptcy",
        None,
    )
    assert (stored["H2"]["scope"], stored["H2"]["channel"]) == ("channel", "sms")
    lifted = _file(tmp_path, "lifted.csv", "H1,U2,,,bankruptcy,2025-03-10,2025-04-30,chapter 7 filed\n")
    assert cli("import", "holds", lifted) == 0
    assert "0 holds added, 1 with a new end, 0 already there" in capsys.readouterr().out
    assert {h["source_id"]: h for h in _read(db_url, holds)}["H1"]["ends_on"].isoformat() == "2025-04-30"
    changed = _file(tmp_path, "changed.csv", "H1,U2,,,deceased,2025-03-10,2025-04-30,chapter 7 filed\n")
    assert cli("import", "holds", changed, "--json") == 1
    (problem,) = json.loads(capsys.readouterr().out)["problems"]
    assert problem["source"] == f"{changed}:2:kind" and "only its end may change" in problem["message"]


def test_a_vulnerable_uk_customer_goes_to_the_specialist_team_once(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = _setup(db_url, tmp_path)
    path = _file(
        tmp_path,
        "holds.csv",
        "V1,U1,,,vulnerability,2025-03-20,,bereavement; asked for time\n"
        "V2,C1,,,vulnerability,2025-03-20,,hospital stay\n",
    )
    assert cli("import", "holds", path) == 0
    assert cli("run", "--as-of", "2025-03-25") == 0
    assert cli("run", "--as-of", "2025-03-25") == 0  # a re-run of the day adds nothing
    assert cli("run", "--as-of", "2025-03-26") == 0  # nor does the next day, the same hold
    found = _read(db_url, tasks)
    # U1's loan in collection (L1) gets the review; L2 is paid up; C1 (China) gets none.
    assert [(t["account_id"], t["kind"], t["state"], t["rule_id"]) for t in found] == [
        ("L1", "specialist_review", "open", "UK-CONC-01")
    ]
    assert "a vulnerability hold since 2025-03-20 (bereavement; asked for time)" in found[0]["reason"]
    assert found[0]["planned_on"].isoformat() == "2025-03-25"
    # The automated reminder to U1 is suppressed; U2's goes.
    verdicts = {(d["account_id"], d["day"].isoformat()): d for d in _read(db_url, decisions)}
    assert verdicts["L1", "2025-03-25"]["verdict"] == "suppressed"
    assert "vulnerable" in verdicts["L1", "2025-03-25"]["reason"]
    assert verdicts["L3", "2025-03-25"]["verdict"] != "suppressed"
    out = tmp_path / "tasks.csv"
    capsys.readouterr()
    assert cli("export", "tasks", "--from", "2025-03-01", "--to", "2025-03-31", "--out", str(out)) == 0
    assert "1 tasks from 2025-03-01 to 2025-03-31" in capsys.readouterr().out
    assert "specialist_review" in out.read_text(encoding="utf-8")


def test_a_lawsuit_leaves_the_uk_arrears_notice_due_and_a_judgment_before_the_trigger_starts_none(
    db_url: str, tmp_path: Path
) -> None:
    """CCA s86B: the notice of sums in arrears is due until the arrears are cleared or judgment is given;
    a judgment before the trigger starts no duty (s86B(1)(e)), one after it still wants the first notice
    (s86B(3))."""
    text = default_config_text() + f'\n[channels.post]\ndir = "{tmp_path / "print"}"\n'
    two_missed = (  # L1, L2 and L3 each miss two monthly instalments: the s86B trigger on 03-01
        "account_id,due_id,due_date,amount,component\n"
        "L1,L1-1,2025-02-01,200.00,principal\nL1,L1-2,2025-03-01,200.00,principal\n"
        "L2,L2-1,2025-02-01,200.00,principal\nL2,L2-2,2025-03-01,200.00,principal\n"
        "L3,L3-1,2025-02-01,200.00,principal\nL3,L3-2,2025-03-01,200.00,principal\n"
    )
    files = (("customers", CUSTOMERS), ("accounts", ACCOUNTS), ("dues", two_missed), ("payments", ""))
    files = tuple((k, v or "payment_id,account_id,paid_on,amount\n") for k, v in files)
    cli = cli_with(db_url, tmp_path, text, files)[0]
    suits = _file(
        tmp_path,
        "holds.csv",
        "H1,U1,L1,,litigation,2025-02-20,,claim issued\n"
        "H2,U1,L2,,judgment,2025-03-03,,judgment for the bank after the trigger\n"
        "H3,U2,L3,,judgment,2025-02-20,,judgment for the bank before the trigger\n",
    )
    assert cli("import", "holds", suits) == 0
    assert cli("run", "--as-of", "2025-03-05") == 0
    notices = {
        d["account_id"]: (d["verdict"], d["rule_id"])
        for d in _read(db_url, decisions)
        if d["kind"] == "uk_nosia"
    }
    assert notices == {"L1": ("planned", "ALLOWED"), "L2": ("planned", "ALLOWED")}
