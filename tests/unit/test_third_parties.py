"""Third parties the customer named (``services/third_parties.py``): when a message to one may go, on
frames; what a strategy may say about them; what their templates may say."""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from duecourse.channels.content import lint_content
from duecourse.engine import governor
from duecourse.services.contacts import decide
from duecourse.services.third_parties import ThirdPartyInputs, screen

BOUNCED = dt.date(2025, 5, 1)  # the customer's phone and e-mail were both found bad that day
UTC = dt.UTC


def rows(*items: tuple[str, str, str, str, str], channel: str = "sms") -> pl.DataFrame:
    """Planned messages to contacts: (key, account, customer, jurisdiction, contact)."""
    return pl.DataFrame(
        [
            {
                "key": key,
                "account_id": account,
                "customer_id": customer,
                "jurisdiction": jurisdiction,
                "timezones": ["Asia/Shanghai" if jurisdiction == "CN" else "America/New_York"],
                "channel": channel,
                "kind": "location_request",
                "stage": "M3",
                "action": "ask",
                "planned_on": BOUNCED,
                "scheduled_at": dt.datetime(2025, 5, 8, 2, tzinfo=UTC),
                "priority": 1,
                "third_party": False,
                "contact_id": contact,
            }
            for key, account, customer, jurisdiction, contact in items
        ],
        schema={**governor.PLANNED, "contact_id": pl.String()},
    )


def inputs(**changes: object) -> ThirdPartyInputs:
    """C1 (CN) and C2 (US), each with a phone and an e-mail both found bad on BOUNCED; their contacts K1
    (C1) and K2, K3 (C2), each with a phone."""
    empty = ThirdPartyInputs.empty()
    base = replace(
        empty,
        contacts=pl.DataFrame(
            {
                "contact_id": ["K1", "K2", "K3"],
                "phone": ["+8613900139000", "+12125550111", "+12125550112"],
                "email": ["", "", ""],
            }
        ),
        people=pl.DataFrame(
            {
                "customer_id": ["C1", "C2"],
                "phone": ["+8613800138000", "+12125550100"],
                "email": ["wang@example.cn", "jane@example.com"],
            }
        ),
        bad=pl.DataFrame(
            {
                "customer_id": ["C1", "C1", "C2", "C2"],
                "channel": ["sms", "email", "sms", "email"],
                "address": ["+8613800138000", "wang@example.cn", "+12125550100", "jane@example.com"],
                "since": [BOUNCED] * 4,
            }
        ),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def verdicts(decided: pl.DataFrame) -> dict[str, tuple[str, str]]:
    return {k: (v, r) for k, v, r in decided.select("key", "verdict", "rule_id").iter_rows()}


@pytest.mark.parametrize(
    ("day", "passes"),
    [
        pytest.param(dt.date(2025, 5, 7), False, id="day-6-after-the-bounces"),
        pytest.param(dt.date(2025, 5, 8), True, id="day-7-after-the-bounces"),
    ],
)
def test_a_contact_is_asked_only_once_the_customer_is_unreachable_for_n_days(
    day: dt.date, passes: bool
) -> None:
    passed, decided = screen(rows(("k", "A1", "C1", "CN", "K1")), inputs(), day)
    assert passed.height == (1 if passes else 0)
    if not passes:
        (row,) = decided.iter_rows(named=True)
        assert (row["rule_id"], row["verdict"]) == ("CN-COL-07", "suppressed")
        assert "is not shown unreachable for 7 days" in row["reason"]
        seen = json.loads(row["seen"])["third_party"]["unreachable"]
        assert seen["dead_since"] == "2025-05-01" and seen["holds"] is False


def test_a_message_that_went_through_in_those_days_keeps_the_customer_reachable() -> None:
    through = pl.DataFrame({"customer_id": ["C1"], "planned_on": [dt.date(2025, 5, 2)]})
    passed, decided = screen(
        rows(("k", "A1", "C1", "CN", "K1")), inputs(through=through), dt.date(2025, 5, 8)
    )
    assert passed.is_empty()
    assert "last message that went or may go through: 2025-05-02" in decided["reason"][0]
    # before the N days: it does not count
    through = pl.DataFrame({"customer_id": ["C1"], "planned_on": [dt.date(2025, 4, 30)]})
    passed, _ = screen(rows(("k", "A1", "C1", "CN", "K1")), inputs(through=through), dt.date(2025, 5, 8))
    assert passed.height == 1


def test_a_customer_with_a_working_phone_is_not_unreachable_and_one_without_any_is() -> None:
    bad = pl.DataFrame(
        {"customer_id": ["C1"], "channel": ["email"], "address": ["wang@example.cn"], "since": [BOUNCED]}
    )
    passed, decided = screen(rows(("k", "A1", "C1", "CN", "K1")), inputs(bad=bad), dt.date(2025, 6, 1))
    assert passed.is_empty() and "+8613800138000 on file, not found bad" in decided["reason"][0]
    nobody = pl.DataFrame({"customer_id": ["C1"], "phone": [""], "email": [""]})
    passed, _ = screen(rows(("k", "A1", "C1", "CN", "K1")), inputs(people=nobody), dt.date(2025, 5, 2))
    assert passed.height == 1


def test_a_us_location_request_goes_once_per_contact() -> None:
    day = dt.date(2025, 5, 20)
    planned = rows(
        ("a", "A3", "C2", "US", "K2"), ("b", "A4", "C2", "US", "K2"), ("c", "A3", "C2", "US", "K3")
    )
    passed, decided = screen(planned, inputs(), day)
    assert passed["key"].to_list() == ["a", "c"]
    (row,) = decided.iter_rows(named=True)
    assert (row["key"], row["rule_id"]) == ("b", "US-3P-01")
    earlier = pl.DataFrame({"contact_id": ["K2"], "key": ["old"], "planned_on": [dt.date(2025, 5, 9)]})
    passed, decided = screen(planned, inputs(earlier=earlier), day)
    assert passed["key"].to_list() == ["c"]
    assert verdicts(decided) == {"a": ("suppressed", "US-3P-01"), "b": ("suppressed", "US-3P-01")}
    assert "contact K2 was contacted on 2025-05-09 already: once only" in decided["reason"].to_list()
    # the message already in the outbox under the same key is itself, not an earlier one (a re-run)
    earlier = pl.DataFrame({"contact_id": ["K2"], "key": ["a"], "planned_on": [day]})
    passed, _ = screen(planned, inputs(earlier=earlier), day)
    assert passed["key"].to_list() == ["a", "c"]


def test_a_us_contact_imported_again_under_a_new_id_is_still_contacted_once_only() -> None:
    day = dt.date(2025, 5, 20)
    again = pl.DataFrame(
        {
            "contact_id": ["K1", "K1b", "K2", "K3"],
            "phone": ["+12125550111", "+12125550111", "+12125550122", ""],
            "email": ["", "ann@example.org", "", "ann@example.org"],
        }
    )
    earlier = pl.DataFrame({"contact_id": ["K1"], "key": ["old"], "planned_on": [dt.date(2025, 5, 9)]})
    planned = rows(("b", "A3", "C2", "US", "K1b"), ("c", "A3", "C2", "US", "K2"))
    passed, decided = screen(planned, inputs(contacts=again, earlier=earlier), day)
    assert passed["key"].to_list() == ["c"]
    assert decided.row(0, named=True)["reason"] == (
        "contact K1b was contacted on 2025-05-09 (as contact K1, the same phone or e-mail) already: once only"
    )
    # one run, the same person under two ids (K3 has K1b's e-mail): only the first goes
    passed, decided = screen(
        rows(("x", "A3", "C2", "US", "K1b"), ("y", "A3", "C2", "US", "K3")), inputs(contacts=again), day
    )
    assert passed["key"].to_list() == ["x"] and verdicts(decided) == {"y": ("suppressed", "US-3P-01")}


def test_a_refusal_stops_every_contact_id_of_the_same_phone_or_email() -> None:
    again = pl.DataFrame(
        {
            "contact_id": ["K1", "K1b", "K4"],
            "phone": ["+8613900139000", "", "+8613900139000"],
            "email": ["li@example.cn", "li@example.cn", ""],
        }
    )
    stopped = pl.DataFrame(
        {"contact_id": ["K1"], "stopped_at": [dt.datetime(2025, 5, 9, 3, tzinfo=UTC)]},
        schema={"contact_id": pl.String(), "stopped_at": pl.Datetime("us", "UTC")},
    )
    planned = rows(("e", "A1", "C1", "CN", "K1b"), channel="email").vstack(
        rows(("s", "A1", "C1", "CN", "K4"))
    )
    passed, decided = screen(planned, inputs(contacts=again, stopped=stopped), dt.date(2025, 6, 1))
    assert passed.is_empty()
    assert verdicts(decided) == {"e": ("suppressed", "CN-COL-09"), "s": ("suppressed", "CN-COL-09")}
    assert "(as contact K1, the same phone or e-mail)" in decided["reason"][0]


def test_a_contact_who_refused_is_never_contacted_again() -> None:
    stopped = pl.DataFrame(
        {"contact_id": ["K1"], "stopped_at": [dt.datetime(2025, 5, 9, 3, tzinfo=UTC)]},
        schema={"contact_id": pl.String(), "stopped_at": pl.Datetime("us", "UTC")},
    )
    passed, decided = screen(
        rows(("k", "A1", "C1", "CN", "K1")), inputs(stopped=stopped), dt.date(2025, 6, 1)
    )
    assert passed.is_empty()
    assert decided.row(0, named=True)["rule_id"] == "CN-COL-09"
    assert decided["reason"][0] == "contact K1 asked to hear no more on 2025-05-09: never contacted again"


def test_a_contact_without_the_channels_address_gets_nothing() -> None:
    passed, decided = screen(
        rows(("k", "A1", "C1", "CN", "K1"), channel="email"), inputs(), dt.date(2025, 6, 1)
    )
    assert passed.is_empty() and decided["reason"][0] == "contact K1 has no email address"


def test_a_contacts_address_found_bad_is_not_used_again() -> None:
    bounced = pl.DataFrame(
        {
            "customer_id": ["C1"],
            "channel": ["sms"],
            "address": ["+8613900139000"],
            "since": [dt.date(2025, 5, 9)],
        }
    )
    known = inputs()
    passed, decided = screen(
        rows(("k", "A1", "C1", "CN", "K1")),
        replace(known, bad=pl.concat([known.bad, bounced])),
        dt.date(2025, 6, 1),
    )
    assert passed.is_empty()
    assert (
        decided["reason"][0] == "contact K1's sms +8613900139000 was found bad on 2025-05-09: not used again"
    )


def test_uk_third_parties_are_not_contacted_unless_the_institution_opens_it() -> None:
    uk = rows(("k", "A5", "C1", "UK", "K1"))
    passed, decided = screen(uk, inputs(), dt.date(2025, 6, 1))
    assert passed.is_empty() and decided["rule_id"].to_list() == ["UK-CONC-04"]
    passed, _ = screen(uk, inputs(opened=("UK",)), dt.date(2025, 6, 1))
    assert passed.height == 1


def _found(planned: pl.DataFrame) -> pl.DataFrame:
    return planned.with_columns(
        pl.lit([], pl.List(pl.String())).alias("fallback"),
        pl.lit("why").alias("why"),
        pl.lit(None, pl.String()).alias("holdout"),
    )


HOLDS = governor.HOLDS


def test_the_customers_stopping_holds_apply_to_a_contact_and_a_channel_opt_out_does_not() -> None:
    day = dt.date(2025, 6, 1)
    found = _found(rows(("k", "A1", "C1", "CN", "K1")))
    empty = pl.DataFrame(schema=governor.CONTACTS)
    calls = pl.DataFrame(schema=governor.CALLS)

    def hold(scope: str, kind: str, channel: str | None = None) -> pl.DataFrame:
        return pl.DataFrame(
            [
                {
                    "scope": scope,
                    "customer_id": "C1",
                    "account_id": None,
                    "channel": channel,
                    "kind": kind,
                    "starts_on": BOUNCED,
                    "ends_on": None,
                }
            ],
            schema=HOLDS,
        )

    opted = decide(
        found,
        holds=hold("channel", "opt_out", "sms"),
        contacts=empty,
        calls=calls,
        as_of=day,
        policy=governor.Policy(),
        third_party_inputs=inputs(),
    )
    assert opted["verdict"].to_list() == ["planned"]
    for stopping, rule in (("deceased", "COMMON-HOLD-DECEASED"), ("bankruptcy", "COMMON-HOLD-BANKRUPTCY")):
        # a location request asks that the customer call: no use once the customer died (a message to
        # the estate is another kind), and a bankruptcy stops all collection contact
        held = decide(
            found,
            holds=hold("customer", stopping),
            contacts=empty,
            calls=calls,
            as_of=day,
            policy=governor.Policy(),
            third_party_inputs=inputs(),
        )
        assert held["rule_id"].to_list() == [rule]
    disputed = decide(
        found,
        holds=hold("customer", "not_mine"),
        contacts=empty,
        calls=calls,
        as_of=day,
        policy=governor.Policy(),
        third_party_inputs=inputs(),
    )
    row = disputed.row(0, named=True)
    assert (row["verdict"], row["rule_id"]) == ("suppressed", "COMMON-HOLD-NOT-MINE")
    assert "customer C1, contact K1" in row["reason"]


def test_a_contacts_message_does_not_count_against_the_customers_daily_cap() -> None:
    day = dt.date(2025, 6, 1)
    found = _found(rows(("k", "A1", "C1", "CN", "K1")))
    # the customer has had a message that day already (policy: one a day)
    outbox = pl.DataFrame(
        [
            {"customer_id": "C1", "account_id": "A1", "channel": "letter", "local_day": day, "key": "x"},
            {"customer_id": "C1", "account_id": "A1", "channel": "sms", "local_day": day, "key": "y"},
        ],
        schema=governor.CONTACTS,
    )
    decided = decide(
        found,
        holds=pl.DataFrame(schema=HOLDS),
        contacts=outbox,
        calls=pl.DataFrame(schema=governor.CALLS),
        as_of=day,
        policy=governor.Policy(),
        third_party_inputs=inputs(),
    )
    assert decided["verdict"].to_list() == ["planned"]


def test_a_same_day_rerun_keeps_the_message_already_planned_for_a_contact() -> None:
    day = dt.date(2025, 6, 1)
    # the first run planned A2's message to K1; A1 entered the stage later that day, its action ranks first
    planned = rows(("A1|ask|to:K1", "A1", "C1", "CN", "K1"), ("A2|ask|to:K1", "A2", "C1", "CN", "K1"))
    planned = planned.with_columns(priority=pl.when(pl.col("account_id") == "A1").then(0).otherwise(1))
    earlier = pl.DataFrame({"contact_id": ["K1"], "key": ["A2|ask|to:K1"], "planned_on": [day]})
    decided = decide(
        _found(planned),
        holds=pl.DataFrame(schema=HOLDS),
        contacts=pl.DataFrame(schema=governor.CONTACTS),
        calls=pl.DataFrame(schema=governor.CALLS),
        as_of=day,
        policy=governor.Policy(daily_contacts_per_customer=3),  # the governor's cap lets both through
        third_party_inputs=inputs(earlier=earlier),
    )
    assert verdicts(decided) == {
        "A2|ask|to:K1": ("planned", "ALLOWED"),
        "A1|ask|to:K1": ("suppressed", "CN-COL-07"),
    }
    reason = decided.filter(pl.col("key") == "A1|ask|to:K1")["reason"][0]
    assert reason == "contact K1 gets one message a day at most: another goes to them in this run"
    # the first run of the day, nothing in the outbox: the action that ranks first goes
    first = decide(
        _found(planned),
        holds=pl.DataFrame(schema=HOLDS),
        contacts=pl.DataFrame(schema=governor.CONTACTS),
        calls=pl.DataFrame(schema=governor.CALLS),
        as_of=day,
        policy=governor.Policy(daily_contacts_per_customer=3),
        third_party_inputs=inputs(),
    )
    assert verdicts(first)["A1|ask|to:K1"] == ("planned", "ALLOWED")


def test_without_what_the_rules_read_no_contact_is_asked() -> None:
    decided = decide(
        _found(rows(("k", "A1", "C1", "CN", "K1"))),
        holds=pl.DataFrame(schema=HOLDS),
        contacts=pl.DataFrame(schema=governor.CONTACTS),
        calls=pl.DataFrame(schema=governor.CALLS),
        as_of=dt.date(2025, 6, 1),
        policy=governor.Policy(),
    )
    assert decided["verdict"].to_list() == ["suppressed"]


# ------------------------------------------------------------------------------------------ templates


def test_a_template_for_contacts_that_mentions_the_debt_is_refused(tmp_path: Path) -> None:
    (tmp_path / "zh-CN").mkdir()
    (tmp_path / "zh-CN" / "location_request.sms.j2").write_text(
        "【{{ issuer.legal_name }}】{{ contact.name }}您好，{{ customer.name }}的信用卡已逾期，请转告其致电"
        "{{ issuer.hotline }}。回复{{ links.opt_out_sms }}退订\n",
        encoding="utf-8",
    )
    (tmp_path / "en-US").mkdir()
    (tmp_path / "en-US" / "location_request.sms.j2").write_text(
        "{{ issuer.legal_name }}: {{ customer.name }} owes {{ amounts.total }}. Call {{ issuer.hotline }}.\n"
        "Reply {{ links.opt_out_sms }} to opt out\n",
        encoding="utf-8",
    )
    found = lint_content(tmp_path, kinds=["location_request"])
    reveals = [f for f in found if f.rule == "contact.reveals"]
    assert {(f.template, f.line) for f in reveals} == {("zh-CN/location_request.sms.j2", 1)}
    assert any("'逾期'" in f.message for f in reveals) and any("'信用卡'" in f.message for f in reveals)
    fields = [f for f in found if f.rule == "template.field"]
    assert [f.template for f in fields] == ["en-US/location_request.sms.j2"]
    assert "amounts" in fields[0].message


def test_the_shipped_contact_templates_pass_the_lint() -> None:
    assert lint_content(kinds=["location_request"]) == []


# ------------------------------------------------------------------------------------------ planning

ASK = """
  [[strategy.stages.actions]]
  name = "ask"
  channel = "sms"
  kind = "location_request"
  to = "contact"
  at = "10:00"

  [[strategy.stages.actions]]
  name = "text"
  channel = "sms"
  kind = "overdue_reminder"
  at = "10:00"

"""


def test_an_action_to_contacts_falls_for_each_contact_in_the_contacts_time_zone() -> None:
    from duecourse.config import config_from_text, default_config_text
    from duecourse.services.contacts import plan_frame

    text = default_config_text()
    marker = '[[strategy.stages]]\nname = "M2"'
    channels = '\n[channels.sms]\ngateway = "files"\ndir = "sms"\ncontact_source_addr = "8800"\n'
    text = text.replace(marker, ASK + marker) + channels
    config = config_from_text(text)
    day = dt.date(2025, 5, 8)
    accounts = pl.DataFrame(
        {
            "account_id": ["A1", "A3"],
            "stage": ["M1", "M1"],
            "customer_id": ["C1", "C2"],
            "product_code": ["card_cn", "card_us"],
            "timezone": ["Asia/Shanghai", "America/New_York"],
            "jurisdiction": ["CN", "US"],
            "entered_on": [day, day],
            "since": [None, None],  # as contacts.with_resumed gives it: no hold kept anything back
        },
        schema_overrides={"since": pl.Date()},
    )
    named = pl.DataFrame(
        {
            "contact_id": ["K1", "K2", "K3"],
            "customer_id": ["C1", "C2", "C2"],
            "timezone": ["", "America/Chicago", ""],
        }
    )
    found = plan_frame(config, accounts, day, None, contacts=named)
    asked = {
        row["key"]: (row["contact_id"], row["timezones"], row["scheduled_at"])
        for row in found.filter(pl.col("action") == "ask").iter_rows(named=True)
    }
    assert asked == {
        "A1|M1|ask|2025-05-08|sms|to:K1": ("K1", ["Asia/Shanghai"], dt.datetime(2025, 5, 8, 2, tzinfo=UTC)),
        "A3|M1|ask|2025-05-08|sms|to:K2": (
            "K2",
            ["America/Chicago"],
            dt.datetime(2025, 5, 8, 15, tzinfo=UTC),
        ),
        "A3|M1|ask|2025-05-08|sms|to:K3": (
            "K3",
            ["America/New_York"],
            dt.datetime(2025, 5, 8, 14, tzinfo=UTC),
        ),
    }
    assert "falls today to contact K2" in found.filter(pl.col("contact_id") == "K2")["why"][0]
    customers = found.filter(pl.col("action") == "text")
    assert customers["contact_id"].to_list() == ["", ""]
    assert customers["key"].to_list() == ["A1|M1|text|2025-05-08|sms", "A3|M1|text|2025-05-08|sms"]
    # without the contacts read, an action to contacts falls for nobody
    assert plan_frame(config, accounts, day, None).filter(pl.col("action") == "ask").is_empty()


@pytest.mark.parametrize("agent", [False, True], ids=["no-agent", "agent"])
def test_a_us_account_collected_as_a_third_party_is_asked_only_through_a_location_agent(agent: bool) -> None:
    planned = rows(
        ("own", "A3", "C2", "US", "K2"), ("agency", "A9", "C2", "US", "K3"), ("cn", "A1", "C1", "CN", "K1")
    )
    planned = planned.with_columns(third_party=pl.col("key") != "own")
    given = replace(inputs(), agents=("US",) if agent else ())
    passed, decided = screen(planned, given, dt.date(2025, 5, 20))
    if agent:  # the agency's account's contact is asked too, in the agent's words (compose)
        assert sorted(passed["key"].to_list()) == ["agency", "cn", "own"]
        assert decided.is_empty()
        return
    assert passed["key"].to_list() == ["own", "cn"]  # a CN account, and the creditor's own US account
    (row,) = decided.iter_rows(named=True)
    assert (row["key"], row["rule_id"]) == ("agency", "US-3P-01")
    assert row["citation"].startswith("12 CFR 1006.10(b)(1), FDCPA §1692b(1)")
    assert row["reason"] == (
        "account A9 is collected as a third party ([governor] third_party_products) and no "
        "[location_agent.US] is set: a collector asks a third party for location information in his own "
        "name, without naming his employer"
    )


@pytest.mark.parametrize("jurisdiction", ["CN", "US", "UK"])
def test_the_third_party_citations_name_only_the_packs_third_party_rules(jurisdiction: str) -> None:
    from duecourse.rulepacks.packs import third_party_rules

    rules = third_party_rules(jurisdiction)
    names = ("", "unreachable_", "refused_", "once_", "frequency_")
    own = {getattr(rules, f"{name}rule") for name in names} - {""}
    for name in names:
        cited = set(re.findall(r"\b[A-Z]{2}-[A-Z0-9]+-\d+\b", getattr(rules, f"{name}citation")))
        assert cited <= own, f"{jurisdiction} {name}citation names {cited - own}, not a third-party rule"


def test_the_docs_one_a_day_row_names_each_packs_rule() -> None:
    from duecourse.rulepacks.packs import third_party_rules

    docs = (Path(__file__).parents[2] / "docs" / "governor.md").read_text(encoding="utf-8")
    (row,) = [line for line in docs.splitlines() if line.startswith("| one message to a contact a day |")]
    cells = [cell.strip() for cell in row.strip("|").split("|")][1:]
    for cell, jurisdiction in zip(cells, ("CN", "US", "UK"), strict=True):
        assert cell.startswith(third_party_rules(jurisdiction).frequency_rule), (jurisdiction, cell)
