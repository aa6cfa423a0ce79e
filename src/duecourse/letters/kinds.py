"""The letter kinds: where each is used, and the fields its data carries (what a template may refer to).

A field schema is a nested dict: a name maps to ``LEAF`` (a text), to a dict (an object with those fields)
or to a one-element list holding the schema of each item (``[{"date": LEAF}]``). ``render`` checks every
template against the schema of its kind when it loads it, and ``data`` builds exactly these fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from duecourse.letters import KindNotUsed

LEAF: None = None
Schema = dict[str, Any]

LOCALE_OF = {"CN": "zh-CN", "US": "en-US", "UK": "en-GB"}
JURISDICTION_OF = {locale: j for j, locale in LOCALE_OF.items()}
PAPER = {"CN": "a4", "UK": "a4", "US": "us-letter"}


@dataclass(frozen=True, slots=True)
class Kind:
    """A letter kind.

    Attributes:
        name: the identifier used on the command line.
        jurisdictions: where the kind is used; any other refuses with ``KindNotUsed``.
        fields: the kind's own fields, besides ``COMMON_FIELDS``.
        why: the rule or practice the kind answers to.
    """

    name: str
    jurisdictions: tuple[str, ...]
    fields: Schema
    why: str


COMMON_FIELDS: Schema = {
    "kind": LEAF,
    "locale": LEAF,
    "jurisdiction": LEAF,
    "paper": LEAF,
    "letter_date": LEAF,
    "reference": LEAF,
    "customer": {"name": LEAF, "address_lines": [LEAF], "postal_code": LEAF},
    "issuer": {
        "legal_name": LEAF,
        "address_lines": [LEAF],
        "hotline": LEAF,
        "hours": LEAF,
        "website": LEAF,
        "email": LEAF,
        "complaint": LEAF,
        "collector": LEAF,
        "dispute_address_lines": [LEAF],
        "branch": LEAF,
        "app": LEAF,
        "repayment_accounts": [{"bank": LEAF, "name": LEAF, "number": LEAF, "details": LEAF}],
    },
    "account": {"ref": LEAF, "product": LEAF, "product_kind": LEAF},
    "amounts": {
        "as_of": LEAF,
        "total": LEAF,
        "principal": LEAF,
        "interest": LEAF,
        "fees": LEAF,
        "penalty": LEAF,
        "total_capital": LEAF,
        "days_past_due": LEAF,
        "oldest_due_date": LEAF,
    },
    "charges": {
        "penalty_rate": LEAF,
        "card_rate": LEAF,
        "card_mode": LEAF,
        "fee_mode": LEAF,
        "fee_percent": LEAF,
        "fee_floor": LEAF,
        "fee_cap": LEAF,
        "fee_flat": LEAF,
        "fee_limited": LEAF,
    },
    "deadline": {"date": LEAF, "days": LEAF, "unit": LEAF},
    "portal": {"url": LEAF, "qr_svg": LEAF},
    # A time-barred debt's disclosure where a state or a city requires one (US-TBD-01); empty texts and
    # lists otherwise (``data.Disclosed``).
    "disclosure": {
        "text": LEAF,
        "paragraphs": [LEAF],
        "name": LEAF,
        "rule": LEAF,
        "citation": LEAF,
        "channels": [LEAF],
        "since": LEAF,
        "reporting_ended": LEAF,
    },
}

KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "pre_due",
            ("CN", "US", "UK"),
            {"due": {"date": LEAF, "amount": LEAF}},
            "CN-COL-01 (2011 办法 Art 67): remind before the due date of the amount and the date",
        ),
        Kind(
            "overdue_reminder",
            ("CN", "US", "UK"),
            {},
            "CN-COL-04 (2011 办法 Art 69), checklist F(i); the seed article's letter, done right",
        ),
        Kind(
            "credit_report_notice",
            ("CN",),
            {"report": {"date": LEAF}},
            "CN-CR-01: 征信业管理条例 Art 15, tell the customer before adverse information is reported",
        ),
        Kind(
            "final_demand",
            ("CN", "US"),
            {},
            "the last letter before the account is passed on; in the UK the default notice takes its place",
        ),
        Kind(
            "plan_confirmation",
            ("CN", "US", "UK"),
            {
                "plan": {
                    "id": LEAF,
                    "total": LEAF,
                    "count": LEAF,
                    "first_date": LEAF,
                    "rows": [{"n": LEAF, "date": LEAF, "amount": LEAF}],
                }
            },
            "CN-COL-05 (Art 70) personalised plan; UK CONC 7.3 forbearance",
        ),
        Kind(
            "promise_confirmation",
            ("CN", "US", "UK"),
            {"promise": {"amount": LEAF, "date": LEAF}},
            "confirm in writing what the customer promised on the phone",
        ),
        Kind(
            "dispute_ack",
            ("CN", "US", "UK"),
            {"dispute": {"id": LEAF, "received": LEAF, "subject": LEAF}},
            "CN-CR-03 (征信业管理条例 Art 25); US-DISP-01 (1006.38); CN-COL-04: flag and verify",
        ),
        Kind(
            "dispute_outcome",
            ("CN", "US", "UK"),
            {"dispute": {"id": LEAF, "received": LEAF, "subject": LEAF, "outcome": LEAF, "reason": LEAF}},
            "the written reply to a dispute (CN-CR-03; US 1006.38(d))",
        ),
        Kind(
            "us_validation_notice",
            ("US",),
            {
                "validation": {
                    "itemization_date": LEAF,
                    "itemization_amount": LEAF,
                    "interest": LEAF,
                    "fees": LEAF,
                    "payments": LEAF,
                    "current": LEAF,
                    "end_date": LEAF,
                    "creditor": LEAF,
                }
            },
            "12 CFR 1006.34(c), laid out like CFPB Model Form B-1 (checklist F(ii))",
        ),
        Kind(
            "uk_nosia",
            ("UK",),
            {"arrears": {"missed": LEAF, "shortfall": LEAF}},
            "CCA 1974 s86B notice of sums in arrears (UK-NOSIA-01), with the FCA arrears information sheet",
        ),
        Kind(
            "uk_default_notice",
            ("UK",),
            {"default": {"remedy_date": LEAF, "sum": LEAF, "breach": LEAF}},
            "CCA 1974 s87/s88 default notice: remedy date at least 14 days after service (UK-DEF-01)",
        ),
    )
}


def kind_named(name: str) -> Kind:
    """The kind called ``name``; a clear error listing the kinds otherwise."""
    try:
        return KINDS[name]
    except KeyError:
        raise KindNotUsed(f"unknown letter kind {name!r}; known: {', '.join(KINDS)}") from None


def check_used(kind: Kind, jurisdiction: str) -> None:
    """Refuse a kind the jurisdiction does not use (e.g. a US validation notice to a customer in China)."""
    if jurisdiction not in kind.jurisdictions:
        raise KindNotUsed(
            f"{kind.name} letters are not used for customers in {jurisdiction}; "
            f"it is for {', '.join(kind.jurisdictions)} only ({kind.why})"
        )


def schema_for(kind: Kind) -> Schema:
    """Every field the data of ``kind`` carries."""
    return {**COMMON_FIELDS, **kind.fields}


def kinds_for(jurisdiction: str) -> tuple[str, ...]:
    """The kinds a jurisdiction uses, in the order above."""
    return tuple(name for name, kind in KINDS.items() if jurisdiction in kind.jurisdictions)
