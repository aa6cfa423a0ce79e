"""The data of one letter, built from the account as of the letter date; nothing in it is typed by hand.

``letter_data`` takes the records and the snapshot the readable specification computed (the same path as
``explain``) and returns a plain, JSON-ready dict of texts with exactly the fields of the kind's schema
(``kinds.schema_for``). Amounts and dates are formatted here, once, for the locale; templates only place
them. Inputs that do not exist in the store yet (a plan's schedule, a promise, a dispute) come in as
``LetterInputs``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import io
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import segno

from duecourse.domain.calendar import calendar_for
from duecourse.domain.delinquency import AccountSnapshot
from duecourse.domain.model import Account, Customer, Due, Payment
from duecourse.domain.money import quantum
from duecourse.domain.terms import Product
from duecourse.domain.words import cny_capital
from duecourse.letters import LetterError
from duecourse.letters.kinds import LOCALE_OF, PAPER, check_used, kind_named
from duecourse.letters.settings import Deadline, Issuer, LetterSettings
from duecourse.letters.token import portal_link, portal_secret

ZERO = Decimal(0)
MONTHS = ("January February March April May June July August September October November December").split()
PRODUCT_WORDS = {
    "zh-CN": {"card": "信用卡", "instalment_loan": "个人消费贷款"},
    "en-US": {"card": "credit card", "instalment_loan": "personal loan"},
    "en-GB": {"card": "credit card", "instalment_loan": "personal loan"},
}


@dataclass(frozen=True, slots=True)
class PlanRow:
    date: dt.date
    amount: Decimal


@dataclass(frozen=True, slots=True)
class LetterInputs:
    """What some kinds need that the store does not hold yet, given explicitly.

    Attributes:
        plan_id / plan_rows: a repayment plan and its schedule (``plan_confirmation``).
        promise_amount / promise_date: a promise to pay (``promise_confirmation``).
        dispute_id / dispute_received / dispute_subject: a dispute (``dispute_ack``, ``dispute_outcome``);
            dispute_outcome is ``upheld`` (the customer was right), ``rejected`` or ``corrected``, with
            dispute_reason in words.
    """

    plan_id: str = ""
    plan_rows: tuple[PlanRow, ...] = ()
    promise_amount: Decimal | None = None
    promise_date: dt.date | None = None
    dispute_id: str = ""
    dispute_received: dt.date | None = None
    dispute_subject: str = ""
    dispute_outcome: str = ""
    dispute_reason: str = ""


DISPUTE_OUTCOMES = ("upheld", "rejected", "corrected")


@dataclass(frozen=True, slots=True)
class Disclosed:
    """The disclosure a communication about a time-barred debt carries where a state or a city requires
    one (US-TBD-01; ``services/time_barred.py`` decides it as of the letter date).

    Attributes:
        text: the words, in the letter's locale, paragraphs separated by a blank line.
        name / rule / citation: the rule pack's entry (``rulepacks/us.toml [[disclosures]]``).
        channels: the channels the rule covers (a text message it covers is not sent).
        since: the first day the debt is time-barred.
        reporting_ended: the debt may no longer be reported to the credit bureaus (FCRA §605(a)).
    """

    text: str
    name: str
    rule: str
    citation: str
    channels: tuple[str, ...]
    since: dt.date
    reporting_ended: bool = False


# ---------------------------------------------------------------- formatting


def format_date(day: dt.date, locale: str) -> str:
    """A date as the customer reads it: 2025年10月16日, October 16, 2025, 16 October 2025."""
    if locale == "zh-CN":
        return f"{day.year}年{day.month}月{day.day}日"
    if locale == "en-US":
        return f"{MONTHS[day.month - 1]} {day.day}, {day.year}"
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"


def format_money(amount: Decimal, currency: str) -> str:
    """An amount with its currency as printed: 3,070.50元, $2,284.56, £12.00, 1,000.00 EUR."""
    value = amount.quantize(quantum(currency))
    sign = "-" if value < 0 else ""
    text = f"{abs(value):,}"
    if currency == "CNY":
        return f"{sign}{text}元"
    if currency == "USD":
        return f"{sign}${text}"
    if currency == "GBP":
        return f"{sign}£{text}"
    return f"{sign}{text} {currency}"


def format_percent(rate: Decimal) -> str:
    """A rate as a percentage without trailing zeros: Decimal("0.00075") -> "0.075%"."""
    text = format((rate * 100).normalize(), "f")
    return f"{text}%"


def masked(account_id: str) -> str:
    """Only the last 4 characters of the account reference are shown."""
    return f"****{account_id[-4:]}"


def letter_reference(account_id: str, kind: str, letter_date: dt.date) -> str:
    """An opaque, reproducible reference for a letter: no account number can be read back from it."""
    secret, _ = portal_secret()
    message = f"{account_id}|{kind}|{letter_date.isoformat()}".encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return "L" + base64.b32encode(digest[:10]).decode("ascii").rstrip("=")


def qr_svg(url: str) -> str:
    """The QR code of ``url`` as an SVG document (medium error correction, no quiet zone: the page has it)."""
    # A fixed mask pattern: the standard lets the encoder choose, and evaluating all eight costs 4 ms a
    # letter; pattern 2 (columns) scans as well on paper.
    code = segno.make(url, error="m", micro=False, mask=2)
    buffer = io.BytesIO()
    code.save(buffer, kind="svg", xmldecl=False, svgns=True, scale=1, border=0, nl=False)
    return buffer.getvalue().decode("ascii")


# ---------------------------------------------------------------- deadlines


def deadline_for(rule: Deadline, letter_date: dt.date, jurisdiction: str) -> dt.date | None:
    """The deadline as a calendar date: ``days`` after the letter date (after ``service_days``), or None.

    Business days are counted on the jurisdiction's calendar (CN with 调休, CN-WD-01; the start day is not
    counted, Civil Code Art 201). A calendar-day deadline in CN that falls on a day off moves to the next
    working day (Civil Code Art 203).
    """
    if rule.days == 0:
        return None
    calendar = calendar_for(jurisdiction)
    start = calendar.add_business_days(letter_date, rule.service_days) if rule.service_days else letter_date
    if rule.unit == "business":
        return calendar.add_business_days(start, rule.days)
    end = start + dt.timedelta(days=rule.days)
    return calendar.next_business_day(end) if jurisdiction == "CN" else end


def minimum_deadline(rule: Deadline, letter_date: dt.date, jurisdiction: str) -> dt.date | None:
    """The earliest deadline the law allows for the rule (``minimum`` in the rule's unit), or None."""
    if rule.minimum == 0:
        return None
    calendar = calendar_for(jurisdiction)
    start = calendar.add_business_days(letter_date, rule.service_days) if rule.service_days else letter_date
    if rule.unit == "business":
        return calendar.add_business_days(start, rule.minimum)
    return start + dt.timedelta(days=rule.minimum)


# ---------------------------------------------------------------- the data


def _next_due(dues: list[Due], snap: AccountSnapshot, letter_date: dt.date) -> tuple[dt.date | None, Decimal]:
    """The next due date on or after the letter date with something required unpaid, and that amount."""
    upcoming: dict[dt.date, Decimal] = {}
    for due in dues:
        if due.due_date < letter_date:
            continue
        paid_required = snap.paid_by_due.get(due.due_id, (ZERO, ZERO))[0]
        unpaid = due.required - paid_required
        if unpaid > 0:
            upcoming[due.due_date] = upcoming.get(due.due_date, ZERO) + unpaid
    if not upcoming:
        return None, ZERO
    first = min(upcoming)
    return first, upcoming[first]


def _issuer_fields(issuer: Issuer) -> dict[str, Any]:
    return {
        "legal_name": issuer.legal_name,
        "address_lines": list(issuer.address),
        "hotline": issuer.hotline,
        "hours": issuer.hours,
        "website": issuer.website,
        "email": issuer.email,
        "complaint": issuer.complaint,
        "collector": issuer.collector,
        "dispute_address_lines": list(issuer.dispute_address or issuer.address),
        "branch": issuer.branch,
        "app": issuer.app,
        "repayment_accounts": [
            {"bank": a.bank, "name": a.name, "number": a.number, "details": a.details}
            for a in issuer.repayment_accounts
        ],
    }


def address_lines(customer: Customer) -> list[str]:
    """The postal address as printed in the envelope window; the postal code placed as each country writes."""
    if customer.jurisdiction == "CN":
        # 中国: 邮编 first, then province/city, street; the name goes after the address.
        # A municipality (北京市) is both the region and the city: written once.
        places = dict.fromkeys(p for p in (customer.region, customer.city) if p)
        lines = [customer.postal_code, " ".join(places)]
        lines += [customer.address_line1, customer.address_line2]
    elif customer.jurisdiction == "US":
        region = f"{customer.city}, {customer.region} {customer.postal_code}".strip(", ")
        lines = [customer.address_line1, customer.address_line2, region]
    else:
        lines = [customer.address_line1, customer.address_line2, customer.city, customer.postal_code]
    return [line for line in lines if line.strip()]


def letter_data(
    *,
    kind_name: str,
    locale: str | None,
    customer: Customer,
    account: Account,
    product: Product,
    snap: AccountSnapshot,
    dues: list[Due],
    payments: list[Payment],
    issuer: Issuer,
    settings: LetterSettings,
    letter_date: dt.date,
    inputs: LetterInputs | None = None,
    itemization: AccountSnapshot | None = None,
    disclosure: Disclosed | None = None,
) -> dict[str, Any]:
    """The fields of one letter (``kinds.schema_for``), all texts, as of ``letter_date``; ``disclosure``:
    what the letter must say because its debt is time-barred (none: nothing)."""
    kind = kind_named(kind_name)
    jurisdiction = customer.jurisdiction
    check_used(kind, jurisdiction)
    locale = locale or customer.locale or LOCALE_OF[jurisdiction]
    if locale not in LOCALE_OF.values():
        raise LetterError(f"unknown locale {locale!r}; known: {', '.join(LOCALE_OF.values())}")
    if snap.as_of != letter_date:
        raise LetterError(f"the snapshot is as of {snap.as_of}, the letter is dated {letter_date}")
    inputs = inputs or LetterInputs()
    currency = product.currency

    def money(value: Decimal) -> str:
        return format_money(value, currency)

    def day(value: dt.date) -> str:
        return format_date(value, locale)

    past = snap.past_due
    total = snap.amount_past_due
    rule = settings.deadlines[kind.name]
    deadline = deadline_for(rule, letter_date, jurisdiction)
    reference = letter_reference(account.account_id, kind.name, letter_date)
    expires = letter_date + dt.timedelta(days=settings.token_days)
    url = portal_link(issuer.portal_url, reference, expires)
    charges = product.charges
    fee = charges.late_fee
    data: dict[str, Any] = {
        "kind": kind.name,
        "locale": locale,
        "jurisdiction": jurisdiction,
        "paper": PAPER[jurisdiction],
        "letter_date": day(letter_date),
        "reference": reference,
        "customer": {
            "name": customer.name,
            "address_lines": address_lines(customer),
            "postal_code": customer.postal_code,
        },
        "issuer": _issuer_fields(issuer),
        "account": {
            "ref": masked(account.account_id),
            "product": product.code,
            "product_kind": PRODUCT_WORDS[locale].get(product.kind, product.kind),
        },
        "amounts": {
            "as_of": day(letter_date),
            "total": money(total),
            "principal": money(past.get("principal", ZERO)),
            "interest": money(past.get("interest", ZERO)),
            "fees": money(past.get("fee", ZERO)),
            "penalty": money(past.get("penalty", ZERO)),
            "total_capital": cny_capital(total) if currency == "CNY" else "",
            "days_past_due": str(snap.days_past_due),
            "oldest_due_date": day(snap.oldest_unpaid_due_date) if snap.oldest_unpaid_due_date else "",
        },
        "charges": {
            "penalty_rate": format_percent(charges.penalty_daily_rate) if charges.penalty_daily_rate else "",
            "card_rate": format_percent(charges.card_daily_rate) if charges.card_daily_rate else "",
            "card_mode": charges.card_interest_mode,
            "fee_mode": fee.mode,
            "fee_percent": format_percent(fee.percent) if fee.mode == "percent" else "",
            "fee_floor": money(fee.floor) if fee.floor is not None else "",
            "fee_cap": money(fee.cap) if fee.cap is not None else "",
            "fee_flat": money(fee.flat) if fee.mode == "flat" else "",
            "fee_limited": "yes" if fee.limit_to_minimum else "",
        },
        "deadline": {
            "date": day(deadline) if deadline else "",
            "days": str(rule.days),
            "unit": rule.unit,
        },
        "portal": {"url": url, "qr_svg": qr_svg(url)},
        "disclosure": disclosure_fields(disclosure, locale),
    }
    _kind_fields(data, kind.name, inputs, snap, dues, payments, letter_date, itemization, money, day)
    return data


def disclosure_fields(disclosure: Disclosed | None, locale: str) -> dict[str, Any]:
    """The ``disclosure`` fields of a letter's data: empty texts and lists when it carries none."""
    if disclosure is None:
        return {
            "text": "",
            "paragraphs": [],
            "name": "",
            "rule": "",
            "citation": "",
            "channels": [],
            "since": "",
            "reporting_ended": "",
        }
    return {
        "text": disclosure.text,
        "paragraphs": [" ".join(p.split()) for p in disclosure.text.split("\n\n") if p.strip()],
        "name": disclosure.name,
        "rule": disclosure.rule,
        "citation": disclosure.citation,
        "channels": list(disclosure.channels),
        "since": format_date(disclosure.since, locale),
        "reporting_ended": "yes" if disclosure.reporting_ended else "",
    }


def _kind_fields(
    data: dict[str, Any],
    kind: str,
    inputs: LetterInputs,
    snap: AccountSnapshot,
    dues: list[Due],
    payments: list[Payment],
    letter_date: dt.date,
    itemization: AccountSnapshot | None,
    money: Any,
    day: Any,
) -> None:
    total = snap.amount_past_due
    if kind == "pre_due":
        due_date, amount = _next_due(dues, snap, letter_date)
        if due_date is None:
            raise LetterError(f"account {snap.account_id} has nothing falling due after {letter_date}")
        data["due"] = {"date": day(due_date), "amount": money(amount)}
        data["deadline"]["date"] = day(due_date)
    elif kind == "credit_report_notice":
        data["report"] = {"date": data["deadline"]["date"]}
    elif kind == "plan_confirmation":
        if not inputs.plan_rows or not inputs.plan_id:
            raise LetterError("a plan confirmation needs the plan: plan_id and its rows (date=amount, ...)")
        rows = sorted(inputs.plan_rows, key=lambda r: r.date)
        data["plan"] = {
            "id": inputs.plan_id,
            "total": money(sum((r.amount for r in rows), ZERO)),
            "count": str(len(rows)),
            "first_date": day(rows[0].date),
            "rows": [
                {"n": str(n), "date": day(r.date), "amount": money(r.amount)} for n, r in enumerate(rows, 1)
            ],
        }
        data["deadline"]["date"] = day(rows[0].date)
    elif kind == "promise_confirmation":
        if inputs.promise_amount is None or inputs.promise_date is None:
            raise LetterError("a promise confirmation needs promise_amount and promise_date")
        data["promise"] = {"amount": money(inputs.promise_amount), "date": day(inputs.promise_date)}
        data["deadline"]["date"] = day(inputs.promise_date)
    elif kind in ("dispute_ack", "dispute_outcome"):
        if not inputs.dispute_id or inputs.dispute_received is None:
            raise LetterError(f"a {kind} letter needs dispute_id and dispute_received")
        dispute = {
            "id": inputs.dispute_id,
            "received": day(inputs.dispute_received),
            "subject": inputs.dispute_subject,
        }
        if kind == "dispute_outcome":
            if inputs.dispute_outcome not in DISPUTE_OUTCOMES:
                raise LetterError(f"dispute_outcome must be one of {', '.join(DISPUTE_OUTCOMES)}")
            dispute |= {"outcome": inputs.dispute_outcome, "reason": inputs.dispute_reason}
        data["dispute"] = dispute
    elif kind == "us_validation_notice":
        base = itemization or snap
        base_date = base.as_of
        interest = (snap.past_due.get("interest", ZERO) + snap.past_due.get("penalty", ZERO)) - (
            base.past_due.get("interest", ZERO) + base.past_due.get("penalty", ZERO)
        )
        fees = snap.past_due.get("fee", ZERO) - base.past_due.get("fee", ZERO)
        paid = sum((p.amount for p in payments if base_date < p.paid_on <= letter_date), ZERO)
        interest, fees = max(interest, ZERO), max(fees, ZERO)
        data["validation"] = {
            "itemization_date": day(base_date),
            "itemization_amount": money(total - interest - fees + paid),
            "interest": money(interest),
            "fees": money(fees),
            "payments": money(paid),
            "current": money(total),
            "end_date": data["deadline"]["date"],
            "creditor": data["issuer"]["legal_name"],
        }
    elif kind == "uk_nosia":
        data["arrears"] = {"missed": str(snap.missed_dues), "shortfall": money(total)}
    elif kind == "uk_default_notice":
        first = snap.oldest_unpaid_due_date
        data["default"] = {
            "remedy_date": data["deadline"]["date"],
            "sum": money(total),
            "breach": day(first) if first else "",
        }
