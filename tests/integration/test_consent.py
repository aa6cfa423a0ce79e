"""Channels used only with the customer's recorded consent (``[governor] consent_required``), on SQLite
and PostgreSQL, through the command line: without consent the text is suppressed at planning and the
action's letter goes instead; with consent the text goes; consent withdrawn after planning makes the
dispatcher fall back before sending; the consents file is checked row by row, all or nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_support import cli_with
from sqlalchemy import select
from test_cli import write

from duecourse.config import default_config_text
from duecourse.store.db import make_engine
from duecourse.store.tables import decisions, outbox

ACTION = """
  [[strategy.stages.actions]]
  name = "text"
  channel = "sms"
  kind = "overdue_reminder"
  repeat_every_days = 1
  max_times = 30
  at = "10:00"
  fallback = ["letter"]

"""


def _setup(db_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    text = default_config_text()
    marker = '[[strategy.stages]]\nname = "M2"'
    text = text.replace(marker, ACTION + marker) + (
        f'\n[channels.sms]\ngateway = "files"\ndir = "{tmp_path / "sms"}"\n'
        f'\n[channels.post]\ndir = "{tmp_path / "print"}"\n'
        '\n[governor]\nconsent_required = { CN = ["sms"] }\ndaily_contacts_per_customer = 3\n'
    )
    return cli_with(db_url, tmp_path, text)[0]


def _rows(
    db_url: str, day: str
) -> tuple[dict[tuple[str, str], tuple[str, str, str]], list[tuple[str, str, str]]]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            decided = {
                (r.account_id, r.channel): (r.verdict, r.rule_id, r.reason)
                for r in connection.execute(select(decisions).where(decisions.c.action == "text"))
                if str(r.day) == day
            }
            boxed = [
                (r.account_id, r.channel, r.state)
                for r in connection.execute(
                    select(
                        outbox.c.account_id, outbox.c.channel, outbox.c.state, outbox.c.planned_on
                    ).order_by(outbox.c.id)
                )
                if str(r.planned_on) == day
            ]
    finally:
        engine.dispose()
    return decided, boxed


def test_a_channel_without_consent_falls_back_and_consent_opens_it(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DUECOURSE_PORTAL_SECRET", "c" * 32)
    cli = _setup(db_url, tmp_path)
    given = write(
        tmp_path, "consents.csv", "customer_id,channel,since,consent,source\nC1,sms,2025-05-06,yes,app form\n"
    )
    assert cli("import", "consents", str(given)) == 0
    assert cli("import", "consents", str(given)) == 0  # the same again: nothing changes
    assert "0 consent records added, 1 already there" in capsys.readouterr().out

    assert cli("run", "--as-of", "2025-05-05") == 0  # no consent yet
    decided, boxed = _rows(db_url, "2025-05-05")
    verdict, rule, reason = decided[("A1", "sms")]
    assert (verdict, rule) == ("suppressed", "COMMON-CONSENT")
    assert reason.endswith("the action falls back to letter")
    assert decided[("A1", "letter")][0] == "planned"
    assert sorted(set(boxed)) == [("A1", "letter", "planned"), ("A2", "letter", "planned")]

    assert cli("run", "--as-of", "2025-05-06") == 0  # consent from 05-06
    decided, boxed = _rows(db_url, "2025-05-06")
    assert decided[("A1", "sms")][0] == "planned"
    assert ("A1", "sms", "planned") in boxed

    # Withdrawn on 05-07, after the text was planned: the dispatcher falls back before sending it.
    withdrawn = write(tmp_path, "withdrawn.csv", "customer_id,channel,since,consent\nC1,sms,2025-05-07,no\n")
    assert cli("import", "consents", str(withdrawn)) == 0
    assert cli("dispatch", "--once", "--now", "2025-05-07T02:00:00+00:00", "--quiet") == 0
    _, boxed = _rows(db_url, "2025-05-06")
    states = {(a, c): s for a, c, s in boxed}
    assert states[("A1", "sms")] == "failed"
    assert ("A1", "letter") in states  # the fallback


def test_a_consents_file_is_checked_row_by_row_and_nothing_is_written(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = _setup(db_url, tmp_path)
    good = write(tmp_path, "good.csv", "customer_id,channel,since,consent\nC1,sms,2025-05-01,yes\n")
    assert cli("import", "consents", str(good)) == 0
    bad = write(
        tmp_path,
        "bad.csv",
        "customer_id,channel,since,consent\n"
        "C9,sms,2025-05-01,yes\n"
        "C1,fax,2025-05-01,yes\n"
        "C2,sms,2025-5-1,maybe\n"
        "C2,sms,2025-05-02,yes\n"
        "C2,sms,2025-05-02,no\n",
    )
    capsys.readouterr()
    assert cli("import", "consents", str(bad)) == 1
    err = capsys.readouterr().err
    for line in (
        f"{bad}:2:customer_id: customer C9 is not in the store",
        f"{bad}:3:channel: channel must be one of email, sms, push, call, not 'fax'",
        f"{bad}:4:since: since must be a date as YYYY-MM-DD, not '2025-5-1'",
        f"{bad}:4:consent: consent must be yes (given) or no (withdrawn), not 'maybe'",
        f"{bad}:6:since: customer C2 has a sms record from 2025-05-02 already on row 5",
    ):
        assert line in err, err
    changed = write(tmp_path, "changed.csv", "customer_id,channel,since,consent\nC1,sms,2025-05-01,no\n")
    assert cli("import", "consents", str(changed)) == 1
    assert (
        f"{changed}:2:consent: customer C1 has another sms record from 2025-05-01 already"
        in capsys.readouterr().err
    )
    # a column there twice is refused with the header's other problems, before any row is read
    twice = write(
        tmp_path, "twice.csv", "customer_id,channel,since,consent,consent,note\nC1,sms,2025-05-03,yes,no,x\n"
    )
    assert cli("import", "consents", str(twice)) == 1
    err = capsys.readouterr().err
    assert f"{twice}:1:note: 'note' is not a column of a consents file" in err
    assert f"{twice}:1:consent: the column is there twice" in err
