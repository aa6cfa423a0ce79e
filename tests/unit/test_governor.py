"""The compliance governor: holds, contact hours, call caps and the daily cap, decided over whole frames.

Each test writes its few messages inline, in the customer's local time, and asserts the exact instant,
verdict and rule of each decision.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from duecourse.engine.governor import (
    CALLS,
    CONTACTS,
    DECISIONS,
    HOLDS,
    PLANNED,
    GovernorError,
    Policy,
    govern,
)

AS_OF = dt.date(2026, 3, 2)  # a Monday; New York is on EST, London on GMT
SHANGHAI, NEW_YORK, LOS_ANGELES, LONDON = (
    "Asia/Shanghai",
    "America/New_York",
    "America/Los_Angeles",
    "Europe/London",
)
DEFAULT = Policy()
ROOMY = Policy(daily_contacts_per_customer=10)  # for the call tests: the daily cap out of the way


def at(zone: str, wall: str) -> dt.datetime:
    """The UTC instant of the wall time ``wall`` ("2026-03-02 21:59") in ``zone``."""
    return dt.datetime.fromisoformat(wall).replace(tzinfo=ZoneInfo(zone)).astimezone(dt.UTC)


def utc(wall: str) -> dt.datetime:
    return dt.datetime.fromisoformat(wall).replace(tzinfo=dt.UTC)


def message(
    key: str,
    when: dt.datetime,
    *,
    customer: str = "c1",
    account: str = "a1",
    jurisdiction: str = "CN",
    zones: tuple[str, ...] = (SHANGHAI,),
    channel: str = "sms",
    kind: str = "overdue_reminder",
    priority: int = 1,
    third_party: bool = False,
) -> dict[str, Any]:
    return {
        "key": key,
        "account_id": account,
        "customer_id": customer,
        "jurisdiction": jurisdiction,
        "timezones": list(zones),
        "channel": channel,
        "kind": kind,
        "stage": "M1",
        "action": f"{channel}-{kind}",
        "planned_on": when.date(),
        "scheduled_at": when,
        "priority": priority,
        "third_party": third_party,
    }


def hold(
    kind: str,
    *,
    scope: str = "customer",
    customer: str = "c1",
    account: str | None = None,
    channel: str | None = None,
    starts_on: dt.date = dt.date(2026, 2, 1),
    ends_on: dt.date | None = None,
) -> dict[str, Any]:
    return {
        "scope": scope,
        "customer_id": customer,
        "account_id": account,
        "channel": channel,
        "kind": kind,
        "starts_on": starts_on,
        "ends_on": ends_on,
    }


def contact(
    day: dt.date, *, customer: str = "c1", channel: str = "sms", key: str = "sent-1"
) -> dict[str, Any]:
    return {"customer_id": customer, "account_id": "a1", "channel": channel, "local_day": day, "key": key}


def call(
    when: dt.datetime,
    *,
    customer: str = "c1",
    account: str = "a1",
    number: str = "13800000000",
    connected: bool = True,
    conversation: bool = False,
) -> dict[str, Any]:
    return {
        "customer_id": customer,
        "account_id": account,
        "number": number,
        "at": when,
        "connected": connected,
        "conversation": conversation,
    }


def run(
    *messages: dict[str, Any],
    holds: tuple[dict[str, Any], ...] = (),
    contacts: tuple[dict[str, Any], ...] = (),
    calls: tuple[dict[str, Any], ...] = (),
    as_of: dt.date = AS_OF,
    policy: Policy = DEFAULT,
) -> pl.DataFrame:
    return govern(
        pl.DataFrame(list(messages), schema=PLANNED),
        holds=pl.DataFrame(list(holds), schema=HOLDS),
        contacts=pl.DataFrame(list(contacts), schema=CONTACTS),
        calls=pl.DataFrame(list(calls), schema=CALLS),
        as_of=as_of,
        policy=policy,
    )


def decide(*messages: dict[str, Any], **context: Any) -> dict[str, dict[str, Any]]:
    """The decisions by key."""
    return {row["key"]: row for row in run(*messages, **context).iter_rows(named=True)}


def only(*messages: dict[str, Any], **context: Any) -> dict[str, Any]:
    (decision,) = decide(*messages, **context).values()
    return decision


# ------------------------------------------------------------------------------------------ hours
def test_2159_in_shanghai_goes_and_2200_waits_for_0800_the_next_day() -> None:
    decisions = decide(
        message("late", at(SHANGHAI, "2026-03-02 21:59"), customer="c1"),
        message("too-late", at(SHANGHAI, "2026-03-02 22:00"), customer="c2"),
    )
    assert decisions["late"]["verdict"] == "planned"
    assert decisions["late"]["scheduled_at"] == at(SHANGHAI, "2026-03-02 21:59")
    assert decisions["late"]["rule_id"] == "ALLOWED"
    assert decisions["late"]["citation"] == ""
    deferred = decisions["too-late"]
    assert deferred["verdict"] == "deferred"
    assert deferred["scheduled_at"] == at(SHANGHAI, "2026-03-03 08:00") == utc("2026-03-03 00:00")
    assert deferred["rule_id"] == "CN-COL-08"
    assert (
        deferred["reason"] == "22:00 in Asia/Shanghai is outside 08:00-22:00; moved to 2026-03-03 08:00 CST"
    )
    assert json.loads(deferred["seen"])["hours"]["local"] == {SHANGHAI: "2026-03-02 22:00 CST"}


def test_0759_waits_until_0800_the_same_day() -> None:
    decision = only(message("early", at(SHANGHAI, "2026-03-02 07:59")))
    assert (decision["verdict"], decision["scheduled_at"]) == ("deferred", at(SHANGHAI, "2026-03-02 08:00"))
    assert decision["rule_id"] == "CN-COL-08"


def test_a_customer_in_new_york_and_los_angeles_waits_until_both_are_inside_the_hours() -> None:
    # 08:30 in New York is 05:30 in Los Angeles: US-TIME-01 wants 08:00-21:00 in every zone, so 11:00 NY.
    decision = only(
        message(
            "two-zones", at(NEW_YORK, "2026-03-02 08:30"), jurisdiction="US", zones=(NEW_YORK, LOS_ANGELES)
        )
    )
    assert decision["verdict"] == "deferred"
    assert decision["scheduled_at"] == at(NEW_YORK, "2026-03-02 11:00") == at(LOS_ANGELES, "2026-03-02 08:00")
    assert decision["rule_id"] == "US-TIME-01"
    assert decision["citation"] == "12 CFR 1006.6(b)(1)(i)"
    assert "05:30 in America/Los_Angeles" in decision["reason"]
    assert "2026-03-02 11:00 EST in America/New_York (08:00 PST in America/Los_Angeles)" in decision["reason"]


def test_a_customer_in_two_zones_is_allowed_when_both_are_inside() -> None:
    decision = only(
        message(
            "two-zones", at(NEW_YORK, "2026-03-02 20:59"), jurisdiction="US", zones=(NEW_YORK, LOS_ANGELES)
        )
    )
    assert (decision["verdict"], decision["rule_id"]) == ("planned", "ALLOWED")


@pytest.mark.parametrize(
    ("wall", "moved_to"),
    [
        # the night before the clocks go forward: 08:00 EDT is 12:00 UTC, not 13:00
        pytest.param("2026-03-07 21:30", utc("2026-03-08 12:00"), id="spring-forward-evening-before"),
        pytest.param("2026-03-08 01:30", utc("2026-03-08 12:00"), id="spring-forward-before-the-jump"),
        pytest.param("2026-03-08 03:30", utc("2026-03-08 12:00"), id="spring-forward-after-the-jump"),
        # the night the clocks go back: 08:00 EST is 13:00 UTC
        pytest.param("2026-10-31 21:30", utc("2026-11-01 13:00"), id="fall-back-evening-before"),
        pytest.param("2026-11-01 07:59", utc("2026-11-01 13:00"), id="fall-back-morning"),
    ],
)
def test_daylight_saving_days_in_new_york_move_to_0800_local(wall: str, moved_to: dt.datetime) -> None:
    when = at(NEW_YORK, wall)
    decision = only(message("dst", when, jurisdiction="US", zones=(NEW_YORK,)), as_of=moved_to.date())
    assert (decision["verdict"], decision["scheduled_at"]) == ("deferred", moved_to)
    assert decision["reason"].endswith(
        f"moved to {moved_to.astimezone(ZoneInfo(NEW_YORK)):%Y-%m-%d %H:%M %Z}"
    )


def test_fall_back_1_30_edt_and_1_30_est_are_both_outside() -> None:
    first, second = utc("2026-11-01 05:30"), utc("2026-11-01 06:30")  # 01:30 EDT, then 01:30 EST
    decisions = decide(
        message("edt", first, customer="c1", jurisdiction="US", zones=(NEW_YORK,)),
        message("est", second, customer="c2", jurisdiction="US", zones=(NEW_YORK,)),
        as_of=dt.date(2026, 11, 1),
    )
    assert decisions["edt"]["scheduled_at"] == decisions["est"]["scheduled_at"] == utc("2026-11-01 13:00")
    assert json.loads(decisions["edt"]["seen"])["hours"]["local"] == {NEW_YORK: "2026-11-01 01:30 EDT"}
    assert json.loads(decisions["est"]["seen"])["hours"]["local"] == {NEW_YORK: "2026-11-01 01:30 EST"}


def test_uk_hours_end_at_2100() -> None:
    decisions = decide(
        message("in", at(LONDON, "2026-03-02 20:59"), customer="c1", jurisdiction="UK", zones=(LONDON,)),
        message("out", at(LONDON, "2026-03-02 21:00"), customer="c2", jurisdiction="UK", zones=(LONDON,)),
    )
    assert decisions["in"]["verdict"] == "planned"
    assert decisions["out"]["scheduled_at"] == at(LONDON, "2026-03-03 08:00")
    assert decisions["out"]["rule_id"] == "UK-CONC-03"


def test_letters_are_not_held_to_contact_hours() -> None:
    decision = only(message("letter", at(SHANGHAI, "2026-03-02 23:30"), channel="letter"))
    assert (decision["verdict"], decision["rule_id"]) == ("planned", "ALLOWED")
    assert decision["scheduled_at"] == at(SHANGHAI, "2026-03-02 23:30")


def test_calls_are_held_to_contact_hours() -> None:
    decision = only(message("call", at(SHANGHAI, "2026-03-02 07:00"), channel="call"))
    assert (decision["verdict"], decision["rule_id"]) == ("deferred", "CN-COL-08")
    assert decision["scheduled_at"] == at(SHANGHAI, "2026-03-02 08:00")


def test_zones_whose_hours_never_overlap_are_suppressed_with_a_reason() -> None:
    # 08:00-21:00 in London (08-21 UTC), Shanghai (00-13 UTC) and Los Angeles (16-05 UTC): no common hour.
    decision = only(
        message(
            "apart", at(LONDON, "2026-03-02 12:00"), jurisdiction="US", zones=(LONDON, SHANGHAI, LOS_ANGELES)
        )
    )
    assert decision["verdict"] == "suppressed"
    assert decision["scheduled_at"] is None
    assert decision["rule_id"] == "US-TIME-01"
    assert "never overlap" in decision["reason"]
    assert "Europe/London, Asia/Shanghai, America/Los_Angeles" in decision["reason"]


# ------------------------------------------------------------------------------------------ holds
NOON = at(SHANGHAI, "2026-03-02 12:00")


def test_a_dispute_on_the_customer_stops_reminders_on_every_account_but_not_the_acknowledgement() -> None:
    when = at(NEW_YORK, "2026-03-02 12:00")
    us: dict[str, Any] = {"jurisdiction": "US", "zones": (NEW_YORK,)}
    decisions = decide(
        message("card", when, account="card", **us),
        message("loan", when, account="loan", channel="letter", **us),
        message("ack", when, account="card", kind="dispute_ack", channel="email", **us),
        holds=(hold("dispute"),),
    )
    for key in ("card", "loan"):
        assert decisions[key]["verdict"] == "suppressed"
        assert decisions[key]["scheduled_at"] is None
        assert decisions[key]["rule_id"] == "COMMON-HOLD-DISPUTE"
        assert "§1692g(b)" in decisions[key]["citation"]
    assert decisions["ack"]["verdict"] == "planned"
    seen = json.loads(decisions["card"]["seen"])["hold"]
    assert seen == {
        "kind": "dispute",
        "scope": "customer",
        "account_id": None,
        "channel": None,
        "starts_on": "2026-02-01",
        "ends_on": None,
        "holds_applying": 1,
    }


def test_an_account_hold_stops_only_that_account() -> None:
    decisions = decide(
        message("card", NOON, account="card"),
        message("loan", NOON, account="loan", channel="letter"),
        holds=(hold("promise", scope="account", account="card"),),
    )
    assert (decisions["card"]["verdict"], decisions["card"]["rule_id"]) == (
        "suppressed",
        "COMMON-HOLD-PROMISE",
    )
    assert decisions["loan"]["verdict"] == "planned"


def test_an_arrangement_does_not_stop_the_uk_arrears_notice_but_a_dispute_does() -> None:
    """CCA s86B wants the notice of sums in arrears while arrears last, a payment plan or not."""
    uk = {"jurisdiction": "UK", "zones": ("Europe/London",)}
    notice = {"channel": "letter", "kind": "uk_nosia", **uk}
    for kind in ("promise", "plan"):
        decisions = decide(
            message("nosia", NOON, **notice),
            message("reminder", NOON, channel="letter", **uk),
            holds=(hold(kind),),
        )
        assert decisions["nosia"]["verdict"] == "planned", kind
        assert decisions["reminder"]["verdict"] == "suppressed", kind
    disputed = decide(message("nosia", NOON, **notice), holds=(hold("dispute"),))
    assert disputed["nosia"]["verdict"] == "suppressed"


def test_a_lawsuit_or_a_judgment_does_not_stop_the_uk_arrears_notice_the_law_still_wants() -> None:
    """CCA s86B: the notices go on while arrears last, until the arrears are cleared or judgment is given,
    and the first one even after a judgment (s86B(3)); the statutory planning plans only those the law
    still wants (services/statutory.py), so no hold of these stops them here; the reminders stop."""
    uk = {"jurisdiction": "UK", "zones": ("Europe/London",)}
    notice = {"channel": "letter", "kind": "uk_nosia", **uk}
    for kind in ("litigation", "judgment"):
        decided = decide(
            message("nosia", NOON, **notice),
            message("reminder", NOON, channel="letter", **uk),
            holds=(hold(kind),),
        )
        assert decided["nosia"]["verdict"] == "planned", kind
        rule = f"COMMON-HOLD-{kind.upper()}"
        assert (decided["reminder"]["verdict"], decided["reminder"]["rule_id"]) == ("suppressed", rule), kind
    judged = decide(message("reminder", NOON, channel="letter", **uk), holds=(hold("judgment"),))
    assert (
        "s86B, the duty to give notices of sums in arrears ends when judgment is given"
        in (judged["reminder"]["citation"])
    )


def test_the_dispatchers_recheck_of_holds_agrees_with_the_governor() -> None:
    """What a hold stops at planning (the governor) it stops again at send time (the dispatcher)."""
    from types import SimpleNamespace

    from duecourse.channels.dispatch import STOPPING_HOLDS, _stops
    from duecourse.letters.kinds import KINDS

    uk = {"jurisdiction": "UK", "zones": ("Europe/London",)}
    for hold_kind in sorted(STOPPING_HOLDS):
        for kind in sorted(KINDS):
            for channel in ("letter", "email"):
                decided = only(message("m", NOON, channel=channel, kind=kind, **uk), holds=(hold(hold_kind),))
                stopped = _stops(hold_kind, SimpleNamespace(kind=kind, channel=channel))  # type: ignore[arg-type]
                assert stopped == (decided["verdict"] == "suppressed"), (hold_kind, kind, channel)


def test_a_not_mine_claim_is_cited_to_cn_cr_05() -> None:
    decision = only(message("m", NOON, channel="letter"), holds=(hold("not_mine"),))
    assert (decision["verdict"], decision["rule_id"]) == ("suppressed", "COMMON-HOLD-NOT-MINE")
    assert decision["citation"].startswith("CN-CR-05")


def test_an_opt_out_closes_its_channel_for_every_kind_answers_included() -> None:
    decisions = decide(
        message("sms-ack", NOON, kind="dispute_ack", channel="sms"),
        message("email", NOON, kind="overdue_reminder", channel="email", priority=2),
        holds=(hold("opt_out", scope="channel", channel="sms"),),
    )
    assert decisions["sms-ack"]["verdict"] == "suppressed"
    assert decisions["sms-ack"]["rule_id"] == "COMMON-HOLD-OPT-OUT"
    assert decisions["sms-ack"]["citation"] == "customer's request"
    assert "opted out of sms" in decisions["sms-ack"]["reason"]
    assert decisions["email"]["verdict"] == "planned"


def test_an_opt_out_of_another_customer_does_not_apply() -> None:
    decision = only(
        message("sms", NOON), holds=(hold("opt_out", scope="channel", channel="sms", customer="c9"),)
    )
    assert decision["verdict"] == "planned"


def test_vulnerability_stops_automated_reminders_but_letters_and_notices_still_go() -> None:
    when = at(LONDON, "2026-03-02 12:00")
    uk: dict[str, Any] = {"jurisdiction": "UK", "zones": (LONDON,)}
    decisions = decide(
        message("sms-reminder", when, channel="sms", kind="overdue_reminder", **uk),
        message("call-reminder", when, channel="call", kind="final_demand", **uk),
        message("nosia-letter", when, channel="letter", kind="uk_nosia", **uk),
        message("reminder-letter", when, channel="letter", kind="overdue_reminder", **uk),
        message("plan-email", when, channel="email", kind="plan_confirmation", **uk),
        holds=(hold("vulnerability"),),
    )
    for key in ("sms-reminder", "call-reminder"):
        assert decisions[key]["verdict"] == "suppressed"
        assert decisions[key]["rule_id"] == "COMMON-HOLD-VULNERABILITY"
        assert "CONC 7.3" in decisions[key]["citation"]
    for key in ("nosia-letter", "reminder-letter", "plan-email"):
        assert decisions[key]["verdict"] == "planned", key


@pytest.mark.parametrize(
    ("starts_on", "ends_on", "applies"),
    [
        pytest.param(dt.date(2026, 2, 1), dt.date(2026, 3, 1), False, id="ended-yesterday"),
        pytest.param(dt.date(2026, 3, 3), None, False, id="starts-tomorrow"),
        pytest.param(dt.date(2026, 2, 1), dt.date(2026, 3, 2), True, id="ends-today"),
        pytest.param(dt.date(2026, 3, 2), None, True, id="starts-today"),
        pytest.param(dt.date(2026, 2, 1), None, True, id="open-ended"),
    ],
)
def test_a_hold_applies_only_on_the_days_it_is_in_force(
    starts_on: dt.date, ends_on: dt.date | None, applies: bool
) -> None:
    decision = only(message("m", NOON), holds=(hold("dispute", starts_on=starts_on, ends_on=ends_on),))
    assert decision["verdict"] == ("suppressed" if applies else "planned")


def test_the_gravest_hold_is_named_when_several_apply() -> None:
    decision = only(
        message("m", NOON),
        holds=(hold("promise"), hold("not_mine", scope="account", account="a1"), hold("plan")),
    )
    assert decision["rule_id"] == "COMMON-HOLD-NOT-MINE"
    assert json.loads(decision["seen"])["hold"]["holds_applying"] == 3


def test_a_hold_wins_over_the_hours() -> None:
    decision = only(message("m", at(SHANGHAI, "2026-03-02 23:00")), holds=(hold("deceased"),))
    assert (decision["verdict"], decision["rule_id"]) == ("suppressed", "COMMON-HOLD-DECEASED")


# ------------------------------------------------------------------------------------------ calls
def cn_call(key: str = "call", wall: str = "2026-03-02 15:00", **fields: Any) -> dict[str, Any]:
    return message(key, at(SHANGHAI, wall), channel="call", **fields)


@pytest.mark.parametrize(("connected_today", "verdict"), [(2, "planned"), (3, "deferred")])
def test_cn_a_third_connected_call_a_day_goes_and_a_fourth_waits(connected_today: int, verdict: str) -> None:
    past = tuple(
        call(at(SHANGHAI, f"2026-03-02 09:{n:02d}"), number=f"1380000000{n}") for n in range(connected_today)
    )
    decision = only(cn_call(), calls=past, policy=ROOMY)
    assert decision["verdict"] == verdict
    if verdict == "deferred":
        assert decision["rule_id"] == "CN-COL-08"
        assert decision["scheduled_at"] == at(SHANGHAI, "2026-03-03 08:00")
        assert decision["reason"].startswith("3 connected call(s) to customer c1 on 2026-03-02 (limit 3)")
        caps = json.loads(decision["seen"])["calls"]["caps"]
        assert caps[0] == {
            "rule": "CN-COL-08",
            "per": "customer",
            "counts": "connected",
            "days": 1,
            "limit": 3,
            "counted": 3,
            "planned_earlier": 0,
        }
    else:
        assert decision["scheduled_at"] == at(SHANGHAI, "2026-03-02 15:00")


def test_cn_connected_calls_of_yesterday_do_not_count_today() -> None:
    past = tuple(call(at(SHANGHAI, f"2026-03-01 21:{n:02d}")) for n in range(3))
    assert only(cn_call(), calls=past, policy=ROOMY)["verdict"] == "planned"


@pytest.mark.parametrize(("dials_today", "verdict"), [(5, "planned"), (6, "deferred")])
def test_cn_a_sixth_dial_to_one_number_goes_and_a_seventh_waits(dials_today: int, verdict: str) -> None:
    past = tuple(call(at(SHANGHAI, f"2026-03-02 09:{n:02d}"), connected=False) for n in range(dials_today))
    decision = only(cn_call(), calls=past, policy=ROOMY)
    assert decision["verdict"] == verdict
    if verdict == "deferred":
        assert decision["rule_id"] == "CN-COL-10"
        assert decision["scheduled_at"] == at(SHANGHAI, "2026-03-03 08:00")
        assert "to one of customer c1's numbers" in decision["reason"]


def test_cn_calls_planned_in_the_same_run_count_against_each_other_in_priority_order() -> None:
    past = tuple(call(at(SHANGHAI, f"2026-03-02 09:{n:02d}")) for n in range(2))
    decisions = decide(
        cn_call("second", priority=2, account="loan"),
        cn_call("first", priority=1, account="card"),
        calls=past,
        policy=ROOMY,
    )
    assert decisions["first"]["verdict"] == "planned"
    assert decisions["second"]["verdict"] == "deferred"
    assert decisions["second"]["rule_id"] == "CN-COL-08"
    assert "1 of them planned earlier in this run" in decisions["second"]["reason"]


def us_call(key: str, wall: str, **fields: Any) -> dict[str, Any]:
    fields.setdefault("third_party", True)
    return message(key, at(NEW_YORK, wall), channel="call", jurisdiction="US", zones=(NEW_YORK,), **fields)


SEVEN_DAYS = (
    "2026-02-24",
    "2026-02-25",
    "2026-02-26",
    "2026-02-27",
    "2026-02-28",
    "2026-03-01",
    "2026-03-01",
)


@pytest.mark.parametrize(("made", "verdict"), [(6, "planned"), (7, "deferred")])
def test_us_a_seventh_call_in_seven_days_goes_and_an_eighth_waits(made: int, verdict: str) -> None:
    past = tuple(call(at(NEW_YORK, f"{day} 10:00")) for day in SEVEN_DAYS[:made])
    decision = only(us_call("call", "2026-03-02 10:00"), calls=past, policy=ROOMY)
    assert decision["verdict"] == verdict
    if verdict == "deferred":
        # the window of 7 days ending 03-03 no longer holds 02-24's call
        assert decision["scheduled_at"] == at(NEW_YORK, "2026-03-03 08:00") == utc("2026-03-03 13:00")
        assert decision["rule_id"] == "US-FREQ-01"
        assert "1006.14(b)(2)(i)(A)" in decision["citation"]
        assert decision["reason"].startswith(
            "7 connected call(s) about account a1 in the 7 days to 2026-03-02 (limit 7)"
        )


def test_us_calls_that_did_not_connect_are_not_counted() -> None:
    past = tuple(call(at(NEW_YORK, f"{day} 10:00"), connected=day != "2026-02-26") for day in SEVEN_DAYS)
    assert only(us_call("call", "2026-03-02 10:00"), calls=past, policy=ROOMY)["verdict"] == "planned"


def test_us_calls_about_another_debt_are_not_counted() -> None:
    past = tuple(call(at(NEW_YORK, f"{day} 10:00"), account="other") for day in SEVEN_DAYS)
    assert only(us_call("call", "2026-03-02 10:00"), calls=past, policy=ROOMY)["verdict"] == "planned"


@pytest.mark.parametrize(
    ("planned_day", "verdict", "scheduled"),
    [
        pytest.param("2025-11-10", "deferred", utc("2025-11-11 13:00"), id="day-7-waits-for-tuesday"),
        pytest.param("2025-11-11", "planned", utc("2025-11-11 15:00"), id="day-8-goes"),
    ],
)
def test_e_us_3_the_conversation_day_is_day_1(planned_day: str, verdict: str, scheduled: dt.datetime) -> None:
    talk = call(at(NEW_YORK, "2025-11-04 10:00"), conversation=True)  # Tue 2025-11-04
    decision = only(
        us_call("call", f"{planned_day} 10:00"),
        calls=(talk,),
        as_of=dt.date.fromisoformat(planned_day),
        policy=ROOMY,
    )
    assert (decision["verdict"], decision["scheduled_at"]) == (verdict, scheduled)
    if verdict == "deferred":
        assert decision["rule_id"] == "US-FREQ-01"
        assert decision["citation"] == "12 CFR 1006.14(b)(2)(i)(B)"
        assert decision["reason"] == (
            "a telephone conversation about account a1 on 2025-11-04 (day 1 of 7): "
            "no call before 2025-11-11; moved to 2025-11-11 08:00 EST"
        )
        assert json.loads(decision["seen"])["calls"]["last_conversation"] == "2025-11-04"


@pytest.mark.parametrize(("capped", "verdict"), [(True, "deferred"), (False, "planned")])
def test_us_the_banks_own_accounts_follow_the_policy(capped: bool, verdict: str) -> None:
    past = tuple(call(at(NEW_YORK, f"{day} 10:00")) for day in SEVEN_DAYS)
    policy = Policy(daily_contacts_per_customer=10, us_creditor_calls_capped=capped)
    decision = only(us_call("call", "2026-03-02 10:00", third_party=False), calls=past, policy=policy)
    assert decision["verdict"] == verdict


def test_us_calls_in_the_same_run_are_spread_over_the_window() -> None:
    # six calls made, three planned: the seventh goes, the eighth and ninth wait for a day with room
    past = tuple(call(at(NEW_YORK, f"{day} 10:00")) for day in SEVEN_DAYS[:6])
    decisions = decide(
        us_call("p1", "2026-03-02 10:00", priority=1),
        us_call("p2", "2026-03-02 10:00", priority=2),
        us_call("p3", "2026-03-02 10:00", priority=3),
        calls=past,
        policy=ROOMY,
    )
    assert decisions["p1"]["verdict"] == "planned"
    # 7 in 02-25..03-02 (6 past + p1): p2 waits until 02-25's call leaves the window, 03-03 ...
    assert decisions["p2"]["scheduled_at"] == at(NEW_YORK, "2026-03-03 08:00")
    # ... and p3, counting p2 on 03-03, until 02-26's leaves: 03-04
    assert decisions["p3"]["scheduled_at"] == at(NEW_YORK, "2026-03-04 08:00")


def test_uk_calls_have_no_call_cap_but_the_hours() -> None:
    past = tuple(call(at(LONDON, f"2026-03-02 09:{n:02d}")) for n in range(10))
    decision = only(
        message("call", at(LONDON, "2026-03-02 12:00"), channel="call", jurisdiction="UK", zones=(LONDON,)),
        calls=past,
        policy=ROOMY,
    )
    assert decision["verdict"] == "planned"


# -------------------------------------------------------------------------------------- daily cap
def test_a_card_and_a_loan_of_one_customer_get_one_message_a_day() -> None:
    decisions = decide(
        message("loan", at(SHANGHAI, "2026-03-02 10:00"), account="loan", priority=2),
        message("card", at(SHANGHAI, "2026-03-02 10:00"), account="card", priority=1),
    )
    assert (decisions["card"]["verdict"], decisions["card"]["rule_id"]) == ("planned", "ALLOWED")
    loan = decisions["loan"]
    assert (loan["verdict"], loan["rule_id"]) == ("deferred", "COMMON-CAP-DAILY")
    assert loan["scheduled_at"] == at(SHANGHAI, "2026-03-03 08:00")
    assert "CN-COL-07" in loan["citation"]
    assert loan["reason"] == (
        "customer c1 already has 1 message(s) on 2026-03-02 (0 in the outbox, 1 earlier in this run; "
        "policy: 1 a day); moved to 2026-03-03 08:00 CST"
    )


def test_equal_priorities_are_broken_by_key() -> None:
    decisions = decide(
        message("b", at(SHANGHAI, "2026-03-02 10:00"), account="loan"),
        message("a", at(SHANGHAI, "2026-03-02 10:00"), account="card"),
    )
    assert (decisions["a"]["verdict"], decisions["b"]["verdict"]) == ("planned", "deferred")


def test_the_outbox_of_the_day_counts_first_but_not_the_message_itself() -> None:
    day = dt.date(2026, 3, 2)
    other = only(message("m", NOON), contacts=(contact(day, key="earlier"),))
    assert (other["verdict"], other["rule_id"]) == ("deferred", "COMMON-CAP-DAILY")
    itself = only(message("m", NOON), contacts=(contact(day, key="m"),))
    assert itself["verdict"] == "planned"
    letter = only(message("m", NOON), contacts=(contact(day, key="earlier", channel="letter"),))
    assert letter["verdict"] == "planned"


def test_answers_are_exempt_from_the_cap_but_counted() -> None:
    decisions = decide(
        message("reminder", NOON, priority=1),
        message("ack", NOON, kind="promise_confirmation", channel="email", priority=5),
    )
    assert decisions["ack"]["verdict"] == "planned"
    assert decisions["reminder"]["verdict"] == "deferred"
    assert json.loads(decisions["ack"]["seen"])["daily_cap"]["exempt"] is True
    assert "not held back by the daily cap" in decisions["ack"]["reason"]
    full = only(message("ack", NOON, kind="dispute_ack"), contacts=(contact(AS_OF, key="x"),))
    assert full["verdict"] == "planned"


def test_uk_statutory_notices_are_exempt_from_the_cap() -> None:
    when = at(LONDON, "2026-03-02 12:00")
    decision = only(
        message("nosia", when, channel="email", kind="uk_nosia", jurisdiction="UK", zones=(LONDON,)),
        contacts=(contact(AS_OF, key="x"),),
    )
    assert decision["verdict"] == "planned"
    assert "s86B" in decision["reason"]


def test_a_deferral_passes_over_days_the_outbox_already_fills() -> None:
    full = (contact(AS_OF, key="x"), contact(dt.date(2026, 3, 3), key="y"))
    decision = only(message("m", NOON), contacts=full)
    assert decision["scheduled_at"] == at(SHANGHAI, "2026-03-04 08:00")
    assert "(the next 1 day(s) were full too)" in decision["reason"]


def test_a_message_moved_by_the_hours_meets_the_next_days_cap() -> None:
    decision = only(message("m", at(SHANGHAI, "2026-03-02 22:30")), contacts=(contact(dt.date(2026, 3, 3)),))
    assert decision["scheduled_at"] == at(SHANGHAI, "2026-03-04 08:00")
    assert decision["rule_id"] == "COMMON-CAP-DAILY"
    assert decision["reason"] == (
        "22:30 in Asia/Shanghai is outside 08:00-22:00; moved to 2026-03-03 08:00 CST; then "
        "customer c1 already has 1 message(s) on 2026-03-03 (1 in the outbox, 0 earlier in this run; "
        "policy: 1 a day); moved to 2026-03-04 08:00 CST"
    )


def test_the_cap_follows_the_policy() -> None:
    messages = [message(f"m{n}", NOON, account=f"a{n}", priority=n) for n in range(3)]
    decisions = decide(*messages, policy=Policy(daily_contacts_per_customer=2))
    assert [decisions[f"m{n}"]["verdict"] for n in range(3)] == ["planned", "planned", "deferred"]


def test_letters_are_not_counted_by_the_cap() -> None:
    decisions = decide(message("letter", NOON, channel="letter"), message("sms", NOON, priority=2))
    assert decisions["sms"]["verdict"] == "planned"


# ------------------------------------------------------------------------------------------- shape
def test_every_row_gets_one_decision_in_the_order_of_the_input() -> None:
    keys = ["k7", "k2", "k9", "k1", "k5"]
    messages = [
        message(key, at(SHANGHAI, f"2026-03-02 {6 + 4 * n:02d}:00"), customer=f"c{n % 2}", account=f"a{n}")
        for n, key in enumerate(keys)
    ]
    result = run(*messages, holds=(hold("dispute", customer="c1"),))
    assert result["key"].to_list() == keys
    assert result.schema == pl.Schema(DECISIONS)
    assert set(result["verdict"]) <= {"planned", "deferred", "suppressed"}
    for row in result.iter_rows(named=True):
        assert isinstance(json.loads(row["seen"]), dict)
        assert row["reason"]
        assert (row["scheduled_at"] is None) == (row["verdict"] == "suppressed")
        assert (row["citation"] == "") == (row["rule_id"] == "ALLOWED")


def test_empty_input_gives_an_empty_frame_of_decisions() -> None:
    result = run()
    assert result.is_empty()
    assert result.schema == pl.Schema(DECISIONS)


def test_input_that_cannot_be_governed_is_refused_with_every_problem() -> None:
    bad = [message("same", NOON), message("same", NOON, jurisdiction="FR"), message("x", NOON, channel="fax")]
    with pytest.raises(GovernorError) as raised:
        run(*bad)
    text = str(raised.value)
    assert "duplicate key(s) same" in text
    assert "no rule pack for FR" in text
    assert "unknown channel(s) fax" in text


def test_naive_instants_are_refused() -> None:
    frame = pl.DataFrame([message("m", NOON)], schema=PLANNED).with_columns(
        pl.col("scheduled_at").dt.replace_time_zone(None)
    )
    with pytest.raises(GovernorError, match=r"planned.scheduled_at: expected"):
        govern(
            frame,
            holds=pl.DataFrame(schema=HOLDS),
            contacts=pl.DataFrame(schema=CONTACTS),
            calls=pl.DataFrame(schema=CALLS),
            as_of=AS_OF,
        )


def test_a_customer_without_a_zone_is_refused() -> None:
    with pytest.raises(GovernorError, match="without a time zone"):
        run(message("m", NOON, zones=()))


def test_a_wall_time_skipped_by_spring_forward_moves_on_by_the_gap() -> None:
    # as ContactHours.next_allowed does: 02:30 on 2026-03-08 in New York does not exist; it reads as 03:30 EDT
    from duecourse.engine.governor import _wall_to_instant

    walls = pl.DataFrame({"wall": [dt.datetime(2026, 3, 8, 2, 30), dt.datetime(2026, 11, 1, 1, 30)]})
    early = walls.select(_wall_to_instant(pl.col("wall"), NEW_YORK, "earliest"))["wall"].to_list()
    late = walls.select(_wall_to_instant(pl.col("wall"), NEW_YORK, "latest"))["wall"].to_list()
    assert early == [utc("2026-03-08 07:30"), utc("2026-11-01 05:30")]  # 03:30 EDT; 01:30 EDT
    assert late == [utc("2026-03-08 07:30"), utc("2026-11-01 06:30")]  # 03:30 EDT; 01:30 EST


def test_a_decision_does_not_depend_on_the_order_of_the_input() -> None:
    messages = [
        message("m1", at(SHANGHAI, "2026-03-02 10:00"), account="a1", priority=2),
        message("m2", at(SHANGHAI, "2026-03-02 10:00"), account="a2", priority=1),
        message("m3", at(SHANGHAI, "2026-03-02 23:00"), customer="c2", channel="call"),
        message("m4", at(SHANGHAI, "2026-03-02 11:00"), customer="c2", channel="call", priority=0),
    ]
    past = tuple(call(at(SHANGHAI, f"2026-03-02 09:0{n}"), customer="c2") for n in range(2))
    forward = run(*messages, calls=past, policy=ROOMY)
    backward = run(*reversed(messages), calls=past, policy=ROOMY)
    assert backward["key"].to_list() == ["m4", "m3", "m2", "m1"]
    assert forward.sort("key").equals(backward.sort("key"))
