"""Escalation tasks wait for what the law wants first (``services/tasks.py``): the rule packs' bars and
prerequisites, on frames."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl

from duecourse.domain.limitation import Limits, add_years
from duecourse.letters.data import deadline_for
from duecourse.letters.settings import DEFAULT_DEADLINES
from duecourse.services.tasks import (
    AGES,
    HOLDS_EVER,
    NOTICES,
    TaskInputs,
    decide_tasks,
)

DAY = dt.date(2025, 6, 2)
ROWS = pl.DataFrame(
    {
        "key": ["cn-place", "cn-report", "uk-chargeoff", "us-place", "uk-place", "us-legal"],
        "account_id": ["A1", "A1", "A2", "A3", "A4", "A3"],
        "customer_id": ["C1", "C1", "C2", "C3", "C4", "C3"],
        "jurisdiction": ["CN", "CN", "UK", "US", "UK", "US"],
        "kind": [
            "agency_placement",
            "credit_report",
            "charge_off_review",
            "agency_placement",
            "agency_placement",
            "legal_review",
        ],
    }
)


def notices(*rows: tuple[str, str, bool, dt.date]) -> pl.DataFrame:
    return pl.DataFrame([dict(zip(NOTICES, row, strict=True)) for row in rows], schema=NOTICES)


def holds(*rows: tuple[str, str, str | None, str, dt.date, dt.date | None]) -> pl.DataFrame:
    return pl.DataFrame([dict(zip(HOLDS_EVER, row, strict=True)) for row in rows], schema=HOLDS_EVER)


# A3's debt for the US limitation (US-TBD-01): a New York customer, past due since 2024-03-01.
AGES_A3 = pl.DataFrame(
    [
        {
            "account_id": "A3",
            "region": "NY",
            "oldest_unpaid_due_date": dt.date(2024, 2, 29),
            "last_paid_on": None,
        }
    ],
    schema=AGES,
)

NEW_YORK = Limits({"NY": 3})


def decided(
    sent: pl.DataFrame,
    held: pl.DataFrame,
    day: dt.date = DAY,
    ages: pl.DataFrame = AGES_A3,
    limits: Limits = NEW_YORK,
) -> dict[str, dict[str, object]]:
    out = decide_tasks(ROWS, TaskInputs(sent, held, DEFAULT_DEADLINES, ages, limits), day)
    return {row["key"]: row for row in out.iter_rows(named=True)}


def test_a_task_waits_for_its_notice_then_for_the_deadline_the_notice_gave() -> None:
    final_demand_sent = dt.date(2025, 4, 24)
    # 15 working days on the CN calendar (05-01..05-05 off, 04-27 a make-up working day).
    deadline = deadline_for(DEFAULT_DEADLINES["final_demand"], final_demand_sent, "CN")
    assert deadline == dt.date(2025, 5, 19)
    sent = notices(
        ("A1", "final_demand", True, final_demand_sent),
        ("A1", "credit_report_notice", False, DAY),  # planned today, not sent yet
    )
    early = decided(sent, holds(), dt.date(2025, 5, 19))
    assert early["cn-place"]["verdict"] == "deferred"
    assert early["cn-place"]["scheduled_at"] == dt.datetime(2025, 5, 20, tzinfo=dt.UTC)
    assert early["cn-place"]["rule_id"] == "CN-COL-06"
    assert early["cn-place"]["reason"] == (
        "waits until 2025-05-20: final_demand sent on 2025-04-24 gives the customer until 2025-05-19 "
        "(CN-COL-06)"
    )
    ready = decided(sent, holds(), dt.date(2025, 5, 20))
    assert ready["cn-place"]["verdict"] == "planned"
    assert json.loads(str(ready["cn-place"]["seen"])) == {
        "deadline": "2025-05-19",
        "needs": "final_demand",
        "sent_on": "2025-04-24",
    }
    # The credit-report notice is still to go: the report waits for it and then its 10 working days.
    report = decided(sent, holds())["cn-report"]
    assert report["verdict"] == "deferred" and report["rule_id"] == "CN-CR-01"
    assert report["scheduled_at"] == dt.datetime.combine(
        deadline_for(DEFAULT_DEADLINES["credit_report_notice"], DAY, "CN") + dt.timedelta(days=1),  # type: ignore[operator]
        dt.time(),
        tzinfo=dt.UTC,
    )
    assert str(report["reason"]).startswith(
        "waits for credit_report_notice (scheduled for 2025-06-02) to be sent"
    )


def test_without_any_notice_a_task_waits_with_no_day() -> None:
    got = decided(notices(), holds())
    assert got["uk-chargeoff"]["verdict"] == "deferred"
    assert got["uk-chargeoff"]["scheduled_at"] is None
    assert got["uk-chargeoff"]["reason"] == (
        "waits for a uk_default_notice to be sent: none has been on this account (UK-DEF-01); "
        "plan one in an earlier stage"
    )
    # No notice is required before these: planned.
    assert got["us-place"]["verdict"] == "planned" and got["us-legal"]["verdict"] == "planned"
    assert got["uk-place"]["verdict"] == "planned"


def test_the_uk_default_notice_gives_14_days_after_service() -> None:
    posted = dt.date(2025, 5, 1)  # a Thursday: served 2 business days later (Mon 05-05 is a bank holiday)
    got = decided(notices(("A2", "uk_default_notice", True, posted)), holds(), dt.date(2025, 5, 20))
    deadline = deadline_for(DEFAULT_DEADLINES["uk_default_notice"], posted, "UK")
    assert deadline == dt.date(2025, 5, 20)
    assert got["uk-chargeoff"]["verdict"] == "deferred"
    assert got["uk-chargeoff"]["scheduled_at"] == dt.datetime(2025, 5, 21, tzinfo=dt.UTC)


def test_an_identity_theft_report_bars_placement_for_good_and_vulnerability_while_it_lasts() -> None:
    held = holds(
        ("account", "C3", "A3", "not_mine", dt.date(2025, 1, 10), dt.date(2025, 2, 1)),  # ended long ago
        ("customer", "C4", None, "vulnerability", dt.date(2025, 5, 1), None),
    )
    got = decided(notices(), held)
    assert got["us-place"]["verdict"] == "suppressed"
    assert got["us-place"]["rule_id"] == "US-IDT-01"
    assert got["us-place"]["reason"] == (
        "agency_placement is barred: a not_mine hold was recorded (since 2025-01-10; US-IDT-01)"
    )
    assert got["us-legal"]["verdict"] == "planned"  # the bar names placement only
    assert got["uk-place"]["verdict"] == "suppressed" and got["uk-place"]["rule_id"] == "UK-CONC-01"
    # Once the vulnerability hold has ended, placement is allowed again.
    lifted = holds(("customer", "C4", None, "vulnerability", dt.date(2025, 5, 1), dt.date(2025, 5, 31)))
    assert decided(notices(), lifted)["uk-place"]["verdict"] == "planned"


def test_a_legal_review_is_not_opened_on_a_time_barred_debt_and_fails_closed() -> None:
    # Past due from 2024-03-01 (the day after the due of 2024-02-29): three years in New York.
    assert decided(notices(), holds(), dt.date(2027, 2, 28))["us-legal"]["verdict"] == "planned"
    barred = decided(notices(), holds(), dt.date(2027, 3, 1))["us-legal"]
    assert (barred["verdict"], barred["rule_id"]) == ("suppressed", "US-TBD-01")
    assert barred["reason"] == (
        "legal_review is barred: the debt is time-barred since 2027-03-01 (3 years in NY from 2024-03-01, "
        "when the oldest unpaid due fell past due; US-TBD-01)"
    )
    # A later payment does not start the period again unless the institution names the state.
    paid = AGES_A3.with_columns(pl.lit(dt.date(2025, 1, 15)).alias("last_paid_on"))
    assert decided(notices(), holds(), dt.date(2027, 3, 1), paid)["us-legal"]["verdict"] == "suppressed"
    restart = Limits({"NY": 3}, restarts_on_payment=frozenset({"NY"}))
    assert decided(notices(), holds(), dt.date(2027, 3, 1), paid, restart)["us-legal"]["verdict"] == "planned"
    assert decided(notices(), holds(), dt.date(2028, 1, 15), paid, restart)["us-legal"]["verdict"] == (
        "suppressed"
    )
    # Fails closed: a state with no period set, an account whose age was not read.
    other = decided(notices(), holds(), ages=AGES_A3.with_columns(pl.lit("TX").alias("region")))["us-legal"]
    assert other["verdict"] == "suppressed"
    assert "no statute of limitations is set for state TX" in str(other["reason"])
    unread = decided(notices(), holds(), ages=pl.DataFrame(schema=AGES))["us-legal"]
    assert unread["verdict"] == "suppressed" and "was not read" in str(unread["reason"])
    # The other tasks are not concerned.
    assert decided(notices(), holds(), ages=pl.DataFrame(schema=AGES))["us-place"]["verdict"] == "planned"


def test_a_period_of_years_ends_on_the_same_day_and_29_february_on_the_28th() -> None:
    assert add_years(dt.date(2024, 3, 1), 3) == dt.date(2027, 3, 1)
    assert add_years(dt.date(2024, 2, 29), 3) == dt.date(2027, 2, 28)
    assert add_years(dt.date(2024, 2, 29), 4) == dt.date(2028, 2, 29)


def _config_text(actions: str) -> str:
    from duecourse.config import default_config_text

    text = default_config_text()
    marker = '[[strategy.stages]]\nname = "M2"'
    return text.replace(marker, actions + marker) + '\n[channels.post]\ndir = "out/print"\n'


def test_a_task_action_is_checked_as_a_task() -> None:
    import pytest

    from duecourse.config import config_from_text
    from duecourse.domain.errors import ProblemsError

    good = config_from_text(
        _config_text('  [[strategy.stages.actions]]\n  channel = "task"\n  kind = "agency_placement"\n\n')
    )
    (action,) = good.actions_of("M1")
    assert (action.channel, action.kind, action.name) == (
        "task",
        "agency_placement",
        "task-agency_placement-0",
    )
    bad = """
  [[strategy.stages.actions]]
  channel = "task"
  kind = "final_demand"

  [[strategy.stages.actions]]
  channel = "letter"
  kind = "charge_off_review"

  [[strategy.stages.actions]]
  channel = "task"
  kind = "legal_review"
  at = "10:00"
  fallback = ["letter"]

"""
    with pytest.raises(ProblemsError) as caught:
        config_from_text(_config_text(bad))
    messages = [p.message for p in caught.value.problems]
    assert messages == [
        "a task is one of agency_placement, charge_off_review, credit_report, legal_review, not final_demand "
        "(a message needs a message channel)",
        'charge_off_review is a task, not a message: write channel = "task"',
        "a task is not sent to the customer: it has no at",
        "a task is not sent to the customer: it has no fallback",
    ]


def test_policy_check_warns_of_a_task_that_would_wait_for_ever() -> None:
    from duecourse.config import config_from_text
    from duecourse.services.policy import check_policy

    config = config_from_text(
        _config_text('  [[strategy.stages.actions]]\n  channel = "task"\n  kind = "agency_placement"\n\n')
    )
    waits = [f.message for f in check_policy(config) if f.code == "policy.task_waits"]
    assert len(waits) == 1 and waits[0].startswith(
        "stage M1, action task-agency_placement-0 (task agency_placement): in CN it waits for a final_demand "
        "(CN-COL-06"
    )
