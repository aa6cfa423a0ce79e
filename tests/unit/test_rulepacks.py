"""The rule packs: every number the governor reads is there, typed, with a rule id and a citation."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from duecourse.channels.dispatch import STOPPING_HOLDS
from duecourse.rulepacks import packs
from duecourse.rulepacks.packs import (
    JURISDICTIONS,
    CallCap,
    RulePackError,
    contact_hours,
    governor_pack,
    task_rules,
)

# The rule ids of the reference (shared/reference/rules.md, sections A-E); a pack may also use COMMON-* ids.
REFERENCE_IDS = frozenset(
    """
    CN-COL-01 CN-COL-02 CN-COL-03 CN-COL-04 CN-COL-05 CN-COL-06 CN-COL-07 CN-COL-08 CN-COL-09 CN-COL-10
    CN-COL-11 CN-CR-01 CN-CR-02 CN-CR-03 CN-CR-04 CN-CR-05 CN-CR-06 CN-FEE-01 CN-FEE-02 CN-FEE-03 CN-FEE-04
    CN-FEE-05 CN-FEE-06 CN-FEE-07 CN-FEE-08 CN-LOAN-01 CN-LOAN-02 CN-WD-01 EU-CCD2-01 EU-GDPR-01 EU-GDPR-02
    EU-GDPR-03 UK-CONC-01 UK-CONC-02 UK-CONC-03 UK-CONC-04 UK-DEF-01 UK-NOSIA-01 UK-NOSIA-02 UK-NOSIA-03
    US-3P-01 US-DISP-01 US-ELEC-01 US-ELEC-02 US-FEE-01 US-FREQ-01 US-IDT-01 US-LCM-01 US-NYC-01 US-REC-01
    US-TBD-01 US-TIME-01 US-VAL-01 US-VAL-02
    """.split()
)
RULE_ID = re.compile(r"\b(?:CN|US|UK|EU)-[A-Z0-9]+-\d+\b")


def rules_and_citations(jurisdiction: str) -> list[tuple[str, str, str]]:
    """(where, rule id, citation) of everything the governor reads from the pack."""
    pack = governor_pack(jurisdiction)
    found = [("contact_hours", pack.hours.rule, pack.hours.citation)]
    found += [(f"holds {rule.kind}", rule.rule, rule.citation) for rule in pack.holds]
    found += [(f"call_caps {cap.name}", cap.rule, cap.citation) for cap in pack.call_caps]
    if pack.call_quiet is not None:
        found.append(("call_quiet", pack.call_quiet.rule, pack.call_quiet.citation))
    found.append(("daily_cap", pack.daily_cap.rule, pack.daily_cap.citation))
    found.append(("daily_cap exemptions", pack.daily_cap.rule, pack.daily_cap.exempt_citation))
    tasks = task_rules(jurisdiction)
    found += [(f"prerequisite {p.task}", p.rule, p.citation) for p in tasks.prerequisites]
    found += [(f"bar {b.task}", b.rule, b.citation) for b in tasks.bars]
    return found


@pytest.mark.parametrize("jurisdiction", JURISDICTIONS)
def test_every_governor_rule_has_a_citation(jurisdiction: str) -> None:
    for where, rule, citation in rules_and_citations(jurisdiction):
        assert rule.strip(), where
        assert citation.strip(), where


@pytest.mark.parametrize("jurisdiction", JURISDICTIONS)
def test_every_rule_id_is_in_the_reference_or_a_common_one(jurisdiction: str) -> None:
    for where, rule, citation in rules_and_citations(jurisdiction):
        assert rule in REFERENCE_IDS or re.fullmatch(r"COMMON-[A-Z]+(-[A-Z]+)*", rule), (where, rule)
        for cited in RULE_ID.findall(citation):
            assert cited in REFERENCE_IDS, (where, cited)


@pytest.mark.parametrize("jurisdiction", JURISDICTIONS)
def test_every_pack_names_every_hold_that_stops_contact(jurisdiction: str) -> None:
    named = {rule.kind for rule in governor_pack(jurisdiction).holds}
    assert named >= STOPPING_HOLDS | {"opt_out"}


def test_the_contact_hours_read_as_before_and_now_cover_calls() -> None:
    cn, us, uk = (contact_hours(j) for j in ("CN", "US", "UK"))
    assert (cn.start, cn.end, cn.rule) == (dt.time(8), dt.time(22), "CN-COL-08")
    assert (us.start, us.end, us.rule) == (dt.time(8), dt.time(21), "US-TIME-01")
    assert (uk.start, uk.end, uk.rule) == (dt.time(8), dt.time(21), "UK-CONC-03")
    for hours in (cn, us, uk):
        assert hours.channels == ("email", "sms", "push", "call")
        assert "letter" not in hours.channels


def test_the_call_caps_carry_the_numbers_of_the_rules() -> None:
    cn = {cap.rule: cap for cap in governor_pack("CN").call_caps}
    assert cn["CN-COL-08"] == CallCap(
        "CN",
        "connected_per_debtor_day",
        "customer",
        1,
        3,
        "connected",
        "all",
        "CN-COL-08",
        cn["CN-COL-08"].citation,
    )
    assert (cn["CN-COL-10"].per, cn["CN-COL-10"].days, cn["CN-COL-10"].limit) == ("number", 1, 6)
    assert cn["CN-COL-10"].counts == "attempt"
    (us,) = governor_pack("US").call_caps
    assert (us.rule, us.per, us.days, us.limit, us.counts, us.applies) == (
        "US-FREQ-01",
        "account",
        7,
        7,
        "connected",
        "third_party",
    )
    quiet = governor_pack("US").call_quiet
    assert quiet is not None and (quiet.days, quiet.rule) == (7, "US-FREQ-01")
    assert governor_pack("UK").call_caps == () and governor_pack("UK").call_quiet is None


def test_statutory_notices_are_exempt_from_the_daily_cap() -> None:
    assert set(governor_pack("UK").daily_cap.exempt_kinds) >= {
        "uk_nosia",
        "uk_default_notice",
        "credit_report_notice",
    }
    assert "credit_report_notice" in governor_pack("CN").daily_cap.exempt_kinds


def test_a_malformed_pack_is_reported_with_every_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = {
        "call_caps": [
            {
                "name": "x",
                "per": "household",
                "days": 0,
                "limit": "three",
                "counts": "connected",
                "applies": "all",
            },
        ],
        "holds": [
            {"kind": "dispute", "rule": "R", "citation": "C"},
            {"kind": "dispute", "rule": "R", "citation": ""},
        ],
    }
    monkeypatch.setattr(packs, "_pack", lambda jurisdiction: broken)
    with pytest.raises(RulePackError) as raised:
        packs.call_caps.__wrapped__("CN")
    text = str(raised.value)
    for expected in (
        "per must be one of",
        "days must be a whole number",
        "limit must be a whole number",
        "rule must be",
    ):
        assert expected in text
    assert text.startswith("rulepacks/cn.toml [[call_caps]] #1:")
    with pytest.raises(RulePackError) as raised:
        packs.hold_rules.__wrapped__("CN")
    assert "citation must be a non-empty text" in str(raised.value)
    assert "kind 'dispute' is listed more than once" in str(raised.value)


def test_an_unknown_jurisdiction_has_no_pack() -> None:
    with pytest.raises(RulePackError, match="no rule pack for jurisdiction 'FR'"):
        governor_pack("FR")


def test_escalation_tasks_wait_for_the_notices_the_law_wants_first() -> None:
    cn, uk, us = (task_rules(j) for j in ("CN", "UK", "US"))
    assert {(p.task, p.needs, p.rule) for p in cn.prerequisites} == {
        ("agency_placement", "final_demand", "CN-COL-06"),
        ("credit_report", "credit_report_notice", "CN-CR-01"),
    }
    assert {(p.task, p.needs, p.rule) for p in uk.prerequisites} == {
        ("charge_off_review", "uk_default_notice", "UK-DEF-01")
    }
    assert [(b.task, b.hold, b.since, b.rule) for b in us.bars] == [
        ("agency_placement", "not_mine", "ever", "US-IDT-01")
    ]
    assert [(b.task, b.hold, b.since) for b in uk.bars] == [("agency_placement", "vulnerability", "in_force")]
