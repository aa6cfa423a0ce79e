"""No legal review of a time-barred debt (US-TBD-01, 12 CFR 1006.26(b)), through the run, on SQLite and
PostgreSQL: the statutes of limitations are the institution's (``[governor] limitation_years``); a state
without one fails closed; a payment starts the period again where the institution says it does.

Three US card accounts fall past due on 2021-01-11 (due 2021-01-10, nothing paid) and enter the
``write_off_review`` stage 181 days later, on 2021-07-10, whose action asks for a legal review every 30
days: A1 (New York, 3 years: time-barred from 2024-01-11), A2 (California, 4 years: from 2025-01-11), A3
(Texas, no period set). A4 (New Jersey, 3 years in this test's table) had a payment on 2022-06-01, which
starts its three years again where the institution's table says a payment does (here NJ; by default in
no state: New York's law, for one, does not let a payment revive a consumer debt's time to sue).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cli_support import cli_with
from sqlalchemy import select

from duecourse.config import default_config_text, load_config
from duecourse.domain.errors import ProblemsError
from duecourse.services.policy import check_policy
from duecourse.store.db import make_engine
from duecourse.store.tables import decisions, tasks

CUSTOMERS = """\
customer_id,name,locale,timezone,jurisdiction,phone,email,address_line1,address_line2,city,region,postal_code,country
C1,Ann Lee,en-US,America/New_York,US,+12125550101,ann@example.com,1 Main St,,Albany,NY,12207,US
C2,Bo Diaz,en-US,America/Los_Angeles,US,+14155550102,bo@example.com,2 Oak St,,Fresno,CA,93701,US
C3,Cy Ward,en-US,America/Chicago,US,+15125550103,cy@example.com,3 Elm St,,Austin,TX,73301,US
C4,Di Park,en-US,America/New_York,US,+12015550104,di@example.com,4 Pine St,,Newark,NJ,07102,US
"""
ACCOUNTS = """\
account_id,customer_id,product_code,opened_on
A1,C1,card_us,2020-01-01
A2,C2,card_us,2020-01-01
A3,C3,card_us,2020-01-01
A4,C4,card_us,2020-01-01
"""
DUES = """\
account_id,due_id,due_date,amount,component
A1,S1,2021-01-10,800.00,principal
A2,S1,2021-01-10,800.00,principal
A3,S1,2021-01-10,800.00,principal
A4,S1,2021-01-10,800.00,principal
"""
PAYMENTS = """\
payment_id,account_id,paid_on,amount
P1,A4,2022-06-01,10.00
"""
REVIEW = """
  [[strategy.stages.actions]]
  name = "review"
  channel = "task"
  kind = "legal_review"
  repeat_every_days = 30
  max_times = 100
"""
ENTERED = dt.date(2021, 7, 10)
LATER = ENTERED + dt.timedelta(days=30 * 31)  # 2024-01-26: an occurrence of the review


def _setup(db_url: str, tmp_path: Path, governor: str):  # type: ignore[no-untyped-def]
    text = default_config_text()
    marker = 'min_amount_past_due = "100.00"\n'
    assert text.count(marker) == 1
    text = text.replace(marker, marker + REVIEW) + f"\n[governor]\n{governor}\n"
    files = (("customers", CUSTOMERS), ("accounts", ACCOUNTS), ("dues", DUES), ("payments", PAYMENTS))
    return cli_with(db_url, tmp_path, text, files)


def _decided(db_url: str, day: dt.date) -> dict[str, dict[str, object]]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(decisions).where((decisions.c.day == day) & (decisions.c.kind == "legal_review"))
            ).all()
            return {str(r.account_id): dict(r._mapping) for r in rows}
    finally:
        engine.dispose()


def _tasks(db_url: str) -> list[tuple[str, object, object]]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            query = select(tasks.c.account_id, tasks.c.planned_on, tasks.c.state).order_by(
                tasks.c.planned_on, tasks.c.account_id
            )
            return [tuple(r) for r in connection.execute(query)]
    finally:
        engine.dispose()


def test_a_time_barred_debt_gets_no_legal_review_and_a_state_without_a_period_gets_none(
    db_url: str, tmp_path: Path
) -> None:
    cli, _ = _setup(
        db_url,
        tmp_path,
        'limitation_years = { NY = 3, CA = 4, NJ = 3 }\nlimitation_restarts_on_payment = ["NJ"]',
    )
    assert cli("run", "--as-of", ENTERED.isoformat()) == 0
    first = _decided(db_url, ENTERED)
    assert {a: d["verdict"] for a, d in first.items()} == {
        "A1": "planned",
        "A2": "planned",
        "A3": "suppressed",
        "A4": "planned",
    }
    assert "time-barred from 2024-01-11 (3 years in NY from 2021-01-11; US-TBD-01)" in str(
        first["A1"]["reason"]
    )
    assert json.loads(str(first["A1"]["seen"]))["time_barred_on"] == "2024-01-11"
    assert first["A3"]["rule_id"] == "US-TBD-01"
    assert "no statute of limitations is set for state TX" in str(first["A3"]["reason"])

    assert cli("run", "--as-of", LATER.isoformat()) == 0
    later = _decided(db_url, LATER)
    assert {a: d["verdict"] for a, d in later.items()} == {
        "A1": "suppressed",  # three years from 2021-01-11 ran out on 2024-01-11
        "A2": "planned",  # four years in California: not until 2025-01-11
        "A3": "suppressed",
        "A4": "planned",  # the payment of 2022-06-01 started three years again: not until 2025-06-01
    }
    assert later["A1"]["rule_id"] == "US-TBD-01"
    assert "the debt is time-barred since 2024-01-11" in str(later["A1"]["reason"])
    assert "time-barred from 2025-06-01 (3 years in NJ from 2022-06-01" in str(later["A4"]["reason"])
    # The review opened for A1 in 2021 is cancelled on the first run after its debt became time-barred.
    assert _tasks(db_url) == [
        ("A1", ENTERED, "cancelled"),
        ("A2", ENTERED, "open"),
        ("A4", ENTERED, "open"),
        ("A2", LATER, "open"),
        ("A4", LATER, "open"),
    ]


def test_where_a_payment_does_not_start_the_period_again_the_debt_is_barred(
    db_url: str, tmp_path: Path
) -> None:
    cli, _ = _setup(db_url, tmp_path, "limitation_years = { NY = 3, NJ = 3 }")  # no state restarts
    assert cli("run", "--as-of", ENTERED.isoformat()) == 0
    assert cli("run", "--as-of", LATER.isoformat()) == 0
    later = _decided(db_url, LATER)
    assert later["A4"]["verdict"] == "suppressed"
    assert "time-barred since 2024-01-11" in str(later["A4"]["reason"])


def test_policy_check_warns_when_no_period_is_set_and_config_check_names_a_bad_one(tmp_path: Path) -> None:
    _, config = _setup(f"sqlite:///{tmp_path / 'duecourse.db'}", tmp_path, "daily_contacts_per_customer = 1")
    found = [f for f in check_policy(load_config(config)) if f.code == "policy.no_limitation"]
    assert found and "write_off_review" in found[0].message and "US-TBD-01" in found[0].message
    text = config.read_text(encoding="utf-8").replace(
        "daily_contacts_per_customer = 1",
        'limitation_years = { NYC = 3, CA = 0, TX = "4" }\nlimitation_restarts_on_payment = ["Texas"]',
    )
    config.write_text(text, encoding="utf-8")
    with pytest.raises(ProblemsError) as caught:
        load_config(config)
    message = str(caught.value)
    assert 'limitation_years names "NYC", which is not a US state code' in message
    assert "limitation_years.CA must be whole years from 1 to 30, not 0" in message
    assert "limitation_years.TX must be whole years from 1 to 30" in message
    assert 'limitation_restarts_on_payment names "Texas", which is not a US state code' in message


def test_policy_simulate_judges_legal_reviews_by_the_same_limitation(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The simulation reads the accounts' ages as the run does: on the day the accounts enter the stage,
    the reviews of A1, A2 and A4 go (not time-barred yet), A3's state has no period (fails closed)."""
    cli, _ = _setup(db_url, tmp_path, "limitation_years = { NY = 3, CA = 4, NJ = 3 }")
    capsys.readouterr()
    day = ENTERED.isoformat()
    assert cli("policy", "simulate", "--from", day, "--to", day, "--json") == 0
    data = json.loads(capsys.readouterr().out)
    tasks_by_verdict = {r["verdict"]: r["count"] for r in data["messages"] if r["channel"] == "task"}
    assert tasks_by_verdict == {"planned": 3, "suppressed": 1}
    assert {"verdict": "suppressed", "rule_id": "US-TBD-01", "count": 1} in data["by_rule"]
