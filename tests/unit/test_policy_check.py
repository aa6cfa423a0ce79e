"""``duecourse policy check``: the strategy against each jurisdiction's rule pack and words."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from duecourse.cli import main
from duecourse.config import config_from_text, default_config_text
from duecourse.services.policy import check_policy

ACTIONS = """
  [[strategy.stages.actions]]
  name = "late-text"
  channel = "sms"
  kind = "overdue_reminder"
  at = "22:30"

  [[strategy.stages.actions]]
  name = "validation"
  channel = "letter"
  kind = "us_validation_notice"

"""
CHANNELS = """
[channels.sms]
gateway = "files"
dir = "out/sms"
contact_source_addr = "8800"

[channels.post]
dir = "out/print"
"""


def _config_text() -> str:
    text = default_config_text()
    marker = '[[strategy.stages]]\nname = "M2"'
    assert marker in text
    return text.replace(marker, ACTIONS + marker) + CHANNELS


def test_findings_name_the_stage_action_jurisdiction_and_rule() -> None:
    findings = check_policy(config_from_text(_config_text()))
    lines = [f.line() for f in findings]
    # 22:30 is after the end of the hours everywhere: 22:00 in CN, 21:00 in the US and the UK.
    late = [line for line in lines if "policy.outside_hours" in line]
    assert len(late) == 3
    assert any("outside the contact hours of CN (08:00-22:00, CN-COL-08" in line for line in late)
    assert any("outside the contact hours of US (08:00-21:00, US-TIME-01" in line for line in late)
    not_used = [line for line in lines if "policy.kind_not_used" in line]
    assert not_used == [
        "warning: stage M1, action validation (letter us_validation_notice): us_validation_notice is not "
        "used in CN, UK; customers there in stage M1 get nothing from this action [policy.kind_not_used]"
    ]
    silent = {line.split("stage ")[1].split(" ")[0] for line in lines if "policy.silent_stage" in line}
    assert "M1" not in silent and "M2" in silent
    assert all(f.severity == "warning" for f in findings)


def test_an_action_at_an_allowed_hour_is_not_reported() -> None:
    text = _config_text().replace('at = "22:30"', 'at = "10:00"')
    lines = [f.line() for f in check_policy(config_from_text(text))]
    assert not [line for line in lines if "outside_hours" in line]


def test_the_command_prints_findings_and_exits_0_without_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "duecourse.toml"
    config.write_text(_config_text(), encoding="utf-8")
    assert main(["--config", str(config), "policy", "check", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True
    assert {f["code"] for f in out["findings"]} == {
        "policy.outside_hours",
        "policy.kind_not_used",
        "policy.silent_stage",
        "policy.no_limitation_disclosure",
    }
    assert main(["--config", str(config), "policy", "check"]) == 0
    assert "0 error(s)" in capsys.readouterr().out


def test_a_state_requiring_a_time_barred_disclosure_without_a_period_is_reported() -> None:
    """US-TBD-01 fails closed: with no period for New York or California, every letter about a debt past
    due to a customer in New York City or California would be refused."""
    lines = [f.line() for f in check_policy(config_from_text(_config_text()))]
    found = sorted(line for line in lines if "policy.no_limitation_disclosure" in line)
    assert [line.split(" require")[0] for line in found] == [
        "warning: California",
        "warning: New Mexico",
        "warning: New York City",
    ]
    assert "Cal. Civ. Code §1788.14(d)" in found[0]
    assert "[governor] limitation_years.NY" in found[2] and "(stages M1)" in found[2]
    # New York State's rule binds third-party collectors only: named once some products are collected so.
    third = _config_text() + '\n[governor]\nthird_party_products = ["card_us"]\n'
    lines = [f.line() for f in check_policy(config_from_text(third))]
    assert any("New York City and New York State (outside New York City) require" in line for line in lines)
    periods = _config_text() + "\n[governor]\nlimitation_years = { NY = 3, CA = 4, NM = 6 }\n"
    lines = [f.line() for f in check_policy(config_from_text(periods))]
    assert not [line for line in lines if "policy.no_limitation_disclosure" in line]


US_SEGMENT = """
[[strategy.segments]]
name = "us"
when = { jurisdictions = ["US"] }

  [[strategy.segments.stages]]
  name = "US-1"
  min_days_past_due = 1

    [[strategy.segments.stages.actions]]
    name = "validation"
    channel = "letter"
    kind = "us_validation_notice"

[[strategy.segments]]
name = "uk-cards"
when = { jurisdictions = ["UK"], products = ["loan_uk"] }

  [[strategy.segments.stages]]
  name = "UK-1"
  min_days_past_due = 1

    [[strategy.segments.stages.actions]]
    name = "nosia"
    channel = "letter"
    kind = "uk_nosia"

  [[strategy.segments.stages]]
  name = "UK-2"
  min_delinquency_days = 20

    [[strategy.segments.stages.actions]]
    name = "text"
    channel = "sms"
    kind = "overdue_reminder"
    at = "21:30"
"""


def test_a_segments_stages_are_checked_against_the_jurisdictions_it_takes() -> None:
    """The US segment takes every US customer, so its validation notice is not reported and the default
    stages no longer reach the US; the UK segment takes only some UK customers."""
    text = default_config_text() + CHANNELS + US_SEGMENT
    lines = [f.line() for f in check_policy(config_from_text(text))]
    assert not [line for line in lines if "stage US-1" in line]
    # A UK notice on UK customers only; but the law plans it anyway, so the action adds letters.
    uk = [line for line in lines if "stage UK-1" in line]
    assert len(uk) == 1 and "[policy.statutory_kind]" in uk[0] and "UK-NOSIA-01/02" in uk[0]
    late = [line for line in lines if "stage UK-2" in line]
    assert len(late) == 1 and "outside the contact hours of UK (08:00-21:00" in late[0]
    assert "warning: stage UK-1 has no actions" not in "\n".join(lines)
    assert any("stage M1 has no actions" in line for line in lines)


ASK = """
  [[strategy.stages.actions]]
  name = "ask"
  channel = "sms"
  kind = "location_request"
  to = "contact"

"""


@pytest.mark.parametrize("opened", [False, True], ids=["uk-closed", "uk-opened"])
def test_an_action_to_contacts_is_flagged_where_the_pack_forbids_it(opened: bool) -> None:
    text = default_config_text()
    marker = '[[strategy.stages]]\nname = "M2"'
    text = text.replace(marker, ASK + marker) + CHANNELS
    if opened:
        text += '\n[governor]\nthird_party_contact_in = ["UK"]\n'
    found = [f for f in check_policy(config_from_text(text)) if f.code.startswith("policy.third_party")]
    where = "stage M1, action ask (sms location_request to contacts)"
    forbidden = [f for f in found if f.code == "policy.third_party_forbidden"]
    notes = {f.message.split(": in ")[1][:2]: f for f in found if f.code == "policy.third_party_conditions"}
    if opened:
        assert forbidden == [] and set(notes) == {"CN", "US", "UK"}
        assert "in UK (opened by [governor] third_party_contact_in)" in notes["UK"].message
    else:
        ((warning),) = forbidden
        assert warning.severity == "warning"
        assert warning.message.startswith(
            f"{where}: UK forbids contacting third parties (UK-CONC-04, CONC 7.9.6R"
        )
        assert set(notes) == {"CN", "US"}
    assert "unreachable for 7 days, once per contact ever (US-3P-01)" in notes["US"].message
    assert "once per contact" not in notes["CN"].message
    assert all(f.severity == "note" for f in notes.values())


AGENT = """
[location_agent.US]
name = "Jordan Lee"
phone = "+12125550147"
email_from = "Jordan Lee <jordan.lee@locate.example>"
sms_from = "+12125550147"
link_base = "https://locate.example"
"""


@pytest.mark.parametrize(
    ("agency", "agent"),
    [(False, False), (True, False), (True, True)],
    ids=["creditor-only", "third-party-products", "with-a-location-agent"],
)
def test_an_action_to_contacts_warns_of_us_accounts_collected_as_a_third_party(
    agency: bool, agent: bool
) -> None:
    text = default_config_text()
    marker = '[[strategy.stages]]\nname = "M2"'
    text = text.replace(marker, ASK + marker) + CHANNELS
    if agency:
        text += '\n[governor]\nthird_party_products = ["card_us"]\n'
    if agent:
        text += AGENT
    found = [f for f in check_policy(config_from_text(text)) if f.code == "policy.third_party_collector"]
    if not agency:
        assert found == []
        return
    (finding,) = found
    if agent:
        assert finding.severity == "note"
        assert finding.message.startswith(
            "stage M1, action ask (sms location_request to contacts): in US the contacts of accounts of "
            "[governor] third_party_products (card_us) are asked by Jordan Lee in a collector's words, "
            "naming no employer (US-3P-01, 12 CFR 1006.10(b)(1)"
        )
        return
    assert finding.severity == "warning"
    assert finding.message.startswith(
        "stage M1, action ask (sms location_request to contacts): in US accounts of [governor] "
        "third_party_products (card_us) are collected as a third party and no [location_agent.US] is set: "
        "their contacts get nothing from it (US-3P-01, 12 CFR 1006.10(b)(1)"
    )
