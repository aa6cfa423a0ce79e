"""The disclosure of a time-barred debt (US-TBD-01) from the command line, on SQLite and PostgreSQL: the
letter, ``explain`` and the outbox.

Four US card accounts fall past due on 2021-01-11 (due 2021-01-10, nothing paid): B1 in Brooklyn (New York
City), B2 in Albany (New York State, the bank's own account), B3 in Los Angeles (California) and B4 in
Austin (Texas). The institution's table sets three years for New York only: B1's debt is time-barred from
2024-01-11 and New York City requires its disclosure in every communication; Albany's rule binds
third-party collectors, Texas requires none of a creditor; California requires one, and no period is set
for it, so B3's communications are refused.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import subprocess
from pathlib import Path

import pytest
from cli_support import cli_with
from sqlalchemy import select

from duecourse.config import default_config_text
from duecourse.store.db import make_engine
from duecourse.store.tables import outbox

CUSTOMERS = """\
customer_id,name,locale,timezone,jurisdiction,phone,email,address_line1,address_line2,city,region,postal_code,country
N1,Ann Lee,en-US,America/New_York,US,+17185550101,ann@example.com,1 Court St,,Brooklyn,NY,11201,US
N2,Bo Diaz,en-US,America/New_York,US,+15185550102,bo@example.com,2 State St,,Albany,NY,12207,US
N3,Cy Ward,en-US,America/Los_Angeles,US,+12135550103,cy@example.com,3 Spring St,,Los Angeles,CA,90012,US
N4,Di Park,en-US,America/Chicago,US,+15125550104,di@example.com,4 Congress Ave,,Austin,TX,73301,US
"""
ACCOUNTS = """\
account_id,customer_id,product_code,opened_on
B1,N1,card_us,2020-01-01
B2,N2,card_us,2020-01-01
B3,N3,card_us,2020-01-01
B4,N4,card_us,2020-01-01
"""
DUES = """\
account_id,due_id,due_date,amount,component
B1,S1,2021-01-10,800.00,principal
B2,S1,2021-01-10,800.00,principal
B3,S1,2021-01-10,800.00,principal
B4,S1,2021-01-10,800.00,principal
"""
PAYMENTS = """\
payment_id,account_id,paid_on,amount
"""
TEXT = """
  [[strategy.stages.actions]]
  name = "text"
  channel = "sms"
  kind = "overdue_reminder"
  at = "10:00"
  fallback = ["email"]
  repeat_every_days = 1
  max_times = 2000
"""
BARRED = dt.date(2024, 1, 11)
BOX = "Important notice about the age of this debt"


def _setup(db_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    text = default_config_text()
    marker = 'min_amount_past_due = "100.00"\n'  # the write_off_review stage, where the accounts are
    assert text.count(marker) == 1
    text = text.replace(marker, marker + TEXT)
    text += (
        f'\n[channels.email]\ntransport = "files"\ndir = "{tmp_path / "email"}"\n'
        'from = "Example Bank <service@example.com>"\n'
        f'\n[channels.sms]\ngateway = "files"\ndir = "{tmp_path / "sms"}"\n'
        "\n[governor]\nlimitation_years = { NY = 3 }\n"
    )
    files = (("customers", CUSTOMERS), ("accounts", ACCOUNTS), ("dues", DUES), ("payments", PAYMENTS))
    return cli_with(db_url, tmp_path, text, files)[0]


def _pdf_text(path: Path) -> str:
    done = subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, check=True)
    return " ".join(done.stdout.decode("utf-8").split())


def test_the_letter_carries_the_disclosure_from_the_day_the_debt_is_time_barred_or_is_refused(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DUECOURSE_PORTAL_SECRET", "x" * 32)
    cli = _setup(db_url, tmp_path)

    def letter(account: str, day: dt.date) -> str:
        out = tmp_path / f"{account}-{day}.pdf"
        args = ("--account", account, "--kind", "overdue_reminder", "--as-of", day.isoformat())
        assert cli("letter", "render", *args, "-o", str(out)) == 0
        return _pdf_text(out)

    before = letter("B1", BARRED - dt.timedelta(days=1))
    assert BOX not in before and "statute of limitations" not in before
    on = letter("B1", BARRED)
    assert BOX in on and "We are required by regulation of the New York State Department" in on
    assert on.index("Total overdue") < on.index(BOX) < on.index("Please pay the total overdue by")
    assert BOX not in letter("B2", BARRED)  # Albany: 23 NYCRR 1.3 binds third-party collectors
    assert BOX not in letter("B4", dt.date(2030, 1, 1))  # Texas requires none of a creditor
    capsys.readouterr()
    out = tmp_path / "B3.pdf"
    args = ("--account", "B3", "--kind", "overdue_reminder", "--as-of", "2021-02-01", "-o", str(out))
    assert cli("letter", "render", *args) == 1
    refused = capsys.readouterr().err
    assert "account B3 (customer N3): the customer lives in California (CA)" in refused
    assert "set [governor] limitation_years.CA (with counsel)" in refused
    assert not out.exists()
    # A print batch reports the account before it renders anything, and makes none.
    assert cli("run", "--as-of", "2021-07-10") == 0  # the four accounts enter write_off_review
    capsys.readouterr()
    assert cli("letters", "batch", "--date", "2021-07-10", "--out", str(tmp_path / "print")) == 1
    problems = capsys.readouterr()
    assert (
        "B3/2021-07-10: account B3 (customer N3): the customer lives in California"
        in problems.out + problems.err
    )
    assert not (tmp_path / "print" / "batch-2021-07-10.pdf").exists()


def test_explain_says_whether_the_debt_is_time_barred_since_when_and_which_disclosure(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = _setup(db_url, tmp_path)
    capsys.readouterr()
    assert cli("explain", "B1", "--as-of", BARRED.isoformat()) == 0
    text = capsys.readouterr().out
    assert "Time-barred debt (US-TBD-01" in text
    assert "time-barred since 2024-01-11 (3 years in NY from 2021-01-11, when the oldest unpaid due" in text
    assert "letters and e-mails carry the disclosure NYC of New York City (US-TBD-01: NYC Admin." in text
    assert "not sent by sms, push: the rule covers them and they cannot carry it" in text
    assert cli("explain", "B1", "--as-of", "2024-01-10", "--json") == 0
    data = json.loads(capsys.readouterr().out)["time_barred"]
    assert data["time_barred"] is False and data["time_barred_on"] == "2024-01-11"
    assert data["disclosure"]["name"] == "NYC" and data["disclosure"]["carried"] is False
    assert cli("explain", "B3", "--as-of", BARRED.isoformat()) == 0
    assert "refused: account B3 (customer N3): the customer lives in California" in capsys.readouterr().out
    assert cli("explain", "B2", "--as-of", BARRED.isoformat()) == 0
    albany = capsys.readouterr().out
    assert (
        "time-barred since 2024-01-11" in albany and "New York City: ZIP code 12207 is outside it" in albany
    )
    assert "New York State (outside New York City): binds accounts collected as a third party only" in albany
    assert cli("explain", "B4", "--as-of", BARRED.isoformat()) == 0
    assert "no state or city rule in rulepacks/us.toml requires a disclosure there" in capsys.readouterr().out


def test_the_outbox_sends_the_email_with_the_disclosure_instead_of_the_text_and_fails_closed(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DUECOURSE_PORTAL_SECRET", "x" * 32)
    cli = _setup(db_url, tmp_path)
    assert cli("run", "--as-of", BARRED.isoformat()) == 0
    for now in ("2024-01-11T18:00:00+00:00", "2024-01-11T18:05:00+00:00"):  # 10:00 in Los Angeles
        assert cli("dispatch", "--once", "--now", now) == 0
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(outbox.c.account_id, outbox.c.channel, outbox.c.state, outbox.c.reason).order_by(
                    outbox.c.account_id, outbox.c.id
                )
            ).all()
    finally:
        engine.dispose()
    states = [(r.account_id, r.channel, r.state) for r in rows]
    # New York City: no text (a text cannot carry the words); its e-mail carries them.
    assert states[:2] == [("B1", "sms", "failed"), ("B1", "email", "sent")]  # failed over to the e-mail
    assert "not sent by sms" in rows[0].reason and "6 RCNY 5-77" in rows[0].reason
    # Albany and Austin: their texts go as before.
    assert ("B2", "sms", "sent") in states and ("B4", "sms", "sent") in states
    # California with no period set: refused, not sent by any channel, with the reason.
    b3 = [r for r in rows if r.account_id == "B3"]
    assert [(r.channel, r.state) for r in b3] == [("sms", "failed")]
    assert "no statute of limitations is set for CA" in b3[0].reason
    assert "[governor] limitation_years.CA" in b3[0].reason
    (sent,) = (tmp_path / "email").rglob("*.eml")
    message = email.message_from_bytes(sent.read_bytes(), policy=email.policy.default)
    assert message["To"] == "ann@example.com"
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None and html is not None
    said = " ".join(plain.get_content().split())
    shown = " ".join(html.get_content().split())
    assert "IMPORTANT NOTICE ABOUT THE AGE OF THIS DEBT" in said and BOX in shown
    words = "your creditor or debt collector will NOT sue you to collect this debt"
    assert words in said and words in shown
