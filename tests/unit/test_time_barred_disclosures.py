"""The disclosures some states and New York City require in communications about a time-barred debt
(US-TBD-01; ``rulepacks/us.toml [[disclosures]]``, ``services/time_barred.py``): the pack and its checks,
who gets which words from which day, and the letters and e-mails that carry them.

The card account A1 has one statement of $800.00 due 2021-01-10, unpaid: past due from 2021-01-11, so
with three years (New York) it is time-barred from 2024-01-11, with four (California) from 2025-01-11.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

import tests.unit.letters_support as ls
from duecourse.bootstrap import App
from duecourse.channels import content
from duecourse.domain.limitation import Limits
from duecourse.domain.model import Account, Customer, Due, Payment
from duecourse.letters.data import Disclosed, disclosure_fields
from duecourse.letters.kinds import KINDS, kinds_for
from duecourse.letters.render import load_templates
from duecourse.rulepacks.packs import RulePackError, disclosures, parse_disclosures
from duecourse.services import letters as letter_service
from duecourse.services import time_barred
from duecourse.services.time_barred import DisclosureUnknown, notice_for
from duecourse.store.db import make_engine

DUE = dt.date(2021, 1, 10)
NY_BARRED = dt.date(2024, 1, 11)
CA_BARRED = dt.date(2025, 1, 11)
NYC_WORDS = "We are required by regulation of the New York State Department of Financial Services"
CA_WORDS = "The law limits how long you can be sued on a debt. Because of the age of your debt, we will not"
BOX = "Important notice about the age of this debt"


def customer(region: str, postal_code: str, city: str = "", locale: str = "en-US") -> Customer:
    return Customer(
        "C1",
        "Ann Lee",
        locale,
        "America/New_York",
        "US",
        email="ann@example.com",
        address_line1="1 Main St",
        city=city,
        region=region,
        postal_code=postal_code,
        country="US",
    )


NYC = customer("NY", "11201", "Brooklyn")
ALBANY = customer("NY", "12207", "Albany")
LOS_ANGELES = customer("CA", "90012", "Los Angeles")
AUSTIN = customer("TX", "73301", "Austin")
ACCOUNT = Account("A1", "C1", "card_us", dt.date(2020, 1, 1))
DUES = [Due("A1", "S1", DUE, Decimal("800.00"), "principal", Decimal("800.00"), dt.date(2020, 12, 15))]


def app(years: dict[str, int], restarts: tuple[str, ...] = (), third_party: tuple[str, ...] = ()) -> App:
    config = ls.config()
    governor = replace(
        config.governor,
        limitation_years=years,
        limitation_restarts_on_payment=restarts,
        third_party_products=third_party,
    )
    url = "sqlite:///never-opened.db"  # the letter data is built from the records given: no database
    return App(url, make_engine(url), replace(config, governor=governor))


def build(
    who: Customer,
    day: dt.date,
    a: App | None = None,
    kind: str = "overdue_reminder",
    payments: list[Payment] | None = None,
) -> dict[str, Any]:
    """The letter data as the letters, the e-mails and the outbox build it (``services/letters``)."""
    a = a or app({"NY": 3, "CA": 4})
    return letter_service.build_data(a, ACCOUNT, who, DUES, payments or [], kind, day)


# ---------------------------------------------------------------- the pack


def test_the_us_pack_names_new_york_city_new_york_state_california_and_new_mexico_with_sources() -> None:
    entries = {d.name: d for d in disclosures("US")}
    assert list(entries) == ["NYC", "NY", "CA", "NM"]  # the city before its state
    assert all(d.rule == "US-TBD-01" and d.citation and d.texts["en-US"] for d in entries.values())
    assert "6 RCNY 5-77" in entries["NYC"].citation and "23 NYCRR 1.3" in entries["NY"].citation
    assert (entries["NYC"].binds, entries["NY"].binds) == ("all", "third_party")
    assert "sms" in entries["NYC"].channels and "sms" not in entries["NY"].channels
    assert entries["CA"].wording == "prescribed" and entries["NM"].wording == "to_confirm"
    assert (entries["CA"].reporting_years, entries["CA"].reporting_delay_days) == (7, 180)
    assert disclosures("CN") == () and disclosures("UK") == ()


PACK = """\
[contact_hours]
start = "08:00"

[[disclosures]]
name = "NY"
place = "New York State"
state = "NY"
binds = "everyone"
channels = ["letter", "fax"]
rule = "US-TBD-01"
citation = "23 NYCRR 1.3"
wording = "prescribed"
text."en-US" = "Hello {debtor}."

[[disclosures]]
name = "NYC"
place = "New York City"
state = "NY"
zip_prefixes = ["100", "1x"]
binds = "all"
channels = ["letter"]
rule = "US-TBD-01"
citation = "6 RCNY 5-77"
wording = "to_confirm"
reporting_years = 7
"""


def test_a_malformed_disclosure_is_refused_with_its_file_and_line() -> None:
    with pytest.raises(RulePackError) as caught:
        parse_disclosures(PACK, "rulepacks/us.toml", "US")
    assert str(caught.value).splitlines() == [
        "rulepacks/us.toml:4: [[disclosures]] #1: channels names 'fax'; known: letter, email, sms, push, "
        "call",
        "rulepacks/us.toml:4: [[disclosures]] #1: text.en-US: {debtor} is not a field the words may hold "
        "({creditor})",
        "rulepacks/us.toml:4: [[disclosures]] #1: binds must be one of all, third_party (got 'everyone')",
        "rulepacks/us.toml:15: [[disclosures]] #2: zip_prefixes: '1x' is not the start of a 5-digit ZIP code",
        "rulepacks/us.toml:15: [[disclosures]] #2: text must be a table of words per locale, like "
        'text."en-US" = "..."',
        "rulepacks/us.toml:15: [[disclosures]] #2: reporting_years and text_after_reporting go together: set "
        "both or neither",
        "rulepacks/us.toml:15: [[disclosures]] #2: reporting_citation must be a non-empty text",
        "rulepacks/us.toml:15: [[disclosures]] 'NYC' is never reached: 'NY' (line 4) takes its customers "
        "first; put a city's entry before its state's",
    ]


# ---------------------------------------------------------------- who gets which words


def _notice(who: Customer, third_party: bool = False, as_of: dt.date = NY_BARRED) -> time_barred.Notice:
    return notice_for(
        account_id="A1",
        customer=who,
        third_party=third_party,
        oldest_unpaid_due_date=DUE,
        last_paid_on=None,
        as_of=as_of,
        limits=Limits({"NY": 3, "CA": 4}),
        locale="en-US",
        creditor="Example Bank, N.A.",
    )


@pytest.mark.parametrize(
    ("postal_code", "third_party", "name"),
    [
        pytest.param("10001", False, "NYC", id="manhattan"),
        pytest.param("10001-1234", False, "NYC", id="zip-plus-4"),
        pytest.param("10314", False, "NYC", id="staten-island"),
        pytest.param("10463", False, "NYC", id="bronx"),
        pytest.param("11201", False, "NYC", id="brooklyn"),
        pytest.param("11375", False, "NYC", id="queens"),
        pytest.param("11004", False, "NYC", id="glen-oaks-queens-in-the-110-area"),
        pytest.param("11096", False, "NYC", id="inwood-partly-queens"),
        pytest.param("11501", False, None, id="mineola-nassau-creditor"),
        pytest.param("11501", True, "NY", id="mineola-nassau-third-party"),
        pytest.param("12207", False, None, id="albany-creditor"),
        pytest.param("12207", True, "NY", id="albany-third-party"),
        pytest.param("10601", True, "NY", id="white-plains-third-party"),
    ],
)
def test_new_york_city_is_new_york_state_with_a_zip_code_of_the_five_boroughs(
    postal_code: str, third_party: bool, name: str | None
) -> None:
    notice = _notice(customer("NY", postal_code), third_party)
    assert (notice.disclosure.name if notice.disclosure else None) == name
    assert bool(notice.text) == (name is not None)


def test_a_new_york_customer_without_a_zip_code_is_refused_as_the_city_rule_may_apply() -> None:
    with pytest.raises(DisclosureUnknown, match=r"account A1 \(customer C1\): the customer's ZIP code 'N/A'"):
        _notice(customer("NY", "N/A"))


@pytest.mark.parametrize("region", ["New York", "N.Y.", "XX"])
def test_a_region_that_is_not_a_state_code_is_refused_as_a_states_rule_may_apply(region: str) -> None:
    with pytest.raises(DisclosureUnknown, match=rf"the customer's region '{re.escape(region)}' is not a US"):
        _notice(customer(region, "11201", "Brooklyn"))


def test_the_day_before_the_debt_is_time_barred_it_carries_nothing_and_from_that_day_the_disclosure() -> None:
    before = build(NYC, NY_BARRED - dt.timedelta(days=1))["disclosure"]
    assert before["text"] == "" and before["paragraphs"] == []
    on = build(NYC, NY_BARRED)["disclosure"]
    assert on["text"].startswith(NYC_WORDS)
    assert (on["name"], on["rule"], on["since"]) == ("NYC", "US-TBD-01", "January 11, 2024")
    assert len(on["paragraphs"]) == 4 and on["channels"] == ["letter", "email", "sms", "push", "call"]


def test_new_york_city_new_york_state_outside_it_and_a_state_without_a_rule() -> None:
    assert build(NYC, NY_BARRED)["disclosure"]["name"] == "NYC"
    # 23 NYCRR 1.3 binds third-party collectors: the bank's own Albany account carries nothing ...
    assert build(ALBANY, NY_BARRED)["disclosure"]["text"] == ""
    # ... an account it collects as a third party carries the state's, in the letter and e-mail only.
    placed = build(ALBANY, NY_BARRED, app({"NY": 3}, third_party=("card_us",)))["disclosure"]
    assert placed["name"] == "NY" and placed["channels"] == ["letter", "email", "call"]
    # Texas requires none of a creditor: nothing, and no period is needed to know it.
    assert build(AUSTIN, dt.date(2030, 1, 1), app({}))["disclosure"]["text"] == ""


def test_a_payment_starts_the_period_again_only_where_the_institution_says_so() -> None:
    paid = [Payment("P1", "A1", dt.date(2022, 6, 1), Decimal("10.00"))]
    day = dt.date(2025, 6, 1)
    assert build(LOS_ANGELES, day, payments=paid)["disclosure"]["since"] == "January 11, 2025"
    restarted = app({"CA": 4}, restarts=("CA",))
    assert build(LOS_ANGELES, day, restarted, payments=paid)["disclosure"]["text"] == ""
    later = build(LOS_ANGELES, dt.date(2026, 6, 1), restarted, payments=paid)["disclosure"]
    assert later["since"] == "June 1, 2026"


def test_without_a_period_for_the_state_the_letter_is_refused_naming_the_account_state_and_key() -> None:
    with pytest.raises(DisclosureUnknown) as caught:
        build(LOS_ANGELES, dt.date(2021, 3, 1), app({"NY": 3}))
    message = str(caught.value)
    assert message.startswith("account A1 (customer C1): the customer lives in California (CA)")
    assert "Cal. Civ. Code §1788.14(d)" in message
    assert message.endswith("set [governor] limitation_years.CA (with counsel)")
    # Nothing past due: the debt cannot be time-barred, and the pre-due reminder goes.
    assert build(LOS_ANGELES, dt.date(2021, 1, 5), app({}), "pre_due")["disclosure"]["text"] == ""
    # A US customer with something past due and no state is refused too.
    with pytest.raises(DisclosureUnknown, match="the customer has no state"):
        build(customer("", "90012"), dt.date(2021, 3, 1))


def test_california_says_it_will_not_report_once_the_debt_may_no_longer_be_reported() -> None:
    reported = build(LOS_ANGELES, CA_BARRED)["disclosure"]
    assert "Example Bank, N.A. may continue to report it to the credit reporting agencies" in reported["text"]
    # 7 years from 180 days after the delinquency began on 2021-01-11: 2028-07-10.
    assert build(LOS_ANGELES, dt.date(2028, 7, 9))["disclosure"]["reporting_ended"] == ""
    ended = build(LOS_ANGELES, dt.date(2028, 7, 10))
    assert ended["disclosure"]["text"].endswith("and we will not report it to any credit reporting agency.")
    markup = load_templates().markup(ended)
    assert "report late payments to the credit bureaus" not in markup
    assert "report late payments to the credit bureaus" in load_templates().markup(
        build(LOS_ANGELES, CA_BARRED)
    )


def test_a_locale_without_the_words_is_refused() -> None:
    with pytest.raises(DisclosureUnknown, match="has no en-GB words"):
        build(replace(NYC, locale="en-GB"), NY_BARRED)


# ---------------------------------------------------------------- where it is carried


def test_the_pdf_carries_the_disclosure_in_its_box_from_the_day_the_debt_is_time_barred() -> None:
    before = ls.text_of(ls.render(build(NYC, NY_BARRED - dt.timedelta(days=1))))
    assert BOX not in before and "statute of limitations" not in before
    text = " ".join(ls.text_of(ls.render(build(NYC, NY_BARRED))).split())
    assert BOX in text
    assert "your creditor or debt collector will NOT sue you to collect this debt" in text
    # Beside the amounts: after the total overdue, before what to pay by when.
    assert text.index("Total overdue") < text.index(BOX) < text.index("Please pay the total overdue by")


def _with_words(data: dict[str, Any]) -> dict[str, Any]:
    words = Disclosed(
        "First paragraph of the WORDS-TO-FIND.\n\nSecond paragraph.",
        "TEST",
        "US-TBD-01",
        "test",
        ("letter", "email"),
        dt.date(2025, 1, 1),
    )
    return {**data, "disclosure": disclosure_fields(words, data["locale"])}


@pytest.mark.parametrize("kind", kinds_for("US"))
def test_every_us_letter_places_the_disclosure(kind: str) -> None:
    templates = load_templates()
    data = ls.data_for(kind, "en-US")
    assert "WORDS-TO-FIND" not in templates.markup(data)
    assert "WORDS-TO-FIND" in templates.markup(_with_words(data))


US_EMAILS = [k for k in KINDS if content.shipped_templates().has(k, "en-US", "email")]


@pytest.mark.parametrize("kind", US_EMAILS)
def test_every_us_email_places_the_disclosure_in_its_text_and_html(kind: str) -> None:
    issuer = ls.config().issuers["US"]
    links = content.sample_links(issuer, "en-US")
    data = _with_words(content.sample_data(ls.config(), kind, "en-US"))
    mail = content.email_content(kind, "en-US", data, links)
    assert "WORDS-TO-FIND" in mail.text and "WORDS-TO-FIND" in content.read_html(mail.html).text()
    plain = content.email_content(kind, "en-US", content.sample_data(ls.config(), kind, "en-US"), links)
    assert "age of this debt" not in plain.text.lower() and "age of this debt" not in plain.html.lower()


def test_an_email_about_a_time_barred_debt_carries_the_words_in_its_text_and_html() -> None:
    data = build(LOS_ANGELES, CA_BARRED)
    links = content.sample_links(ls.config().issuers["US"], "en-US")
    mail = content.email_content("overdue_reminder", "en-US", data, links)
    text = " ".join(mail.text.split())
    assert "IMPORTANT NOTICE ABOUT THE AGE OF THIS DEBT" in text and CA_WORDS in text
    shown = " ".join(content.read_html(mail.html).text().split())
    assert BOX in shown and CA_WORDS in shown
    assert 'style="border:2px solid #0047ab' in mail.html


def test_a_text_message_the_rule_covers_is_not_sent_and_one_it_does_not_cover_is() -> None:
    nyc = build(NYC, NY_BARRED)
    assert "not sent by sms" in time_barred.covered_but_not_carried(nyc, "sms")
    assert "6 RCNY 5-77" in time_barred.covered_but_not_carried(nyc, "push")
    assert time_barred.covered_but_not_carried(nyc, "email") == ""
    placed = build(ALBANY, NY_BARRED, app({"NY": 3}, third_party=("card_us",)))
    assert time_barred.covered_but_not_carried(placed, "sms") == ""  # 23 NYCRR 1.3: where payment is taken
    assert time_barred.covered_but_not_carried(build(NYC, NY_BARRED - dt.timedelta(days=1)), "sms") == ""
