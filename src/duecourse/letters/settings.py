"""The issuer's details and the letter settings, as validated values (``config.py`` builds them).

Attributes are documented on each record; every field is plain text as the customer will read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEADLINE_UNITS = ("business", "calendar")


@dataclass(frozen=True, slots=True)
class RepaymentAccount:
    """An account the customer can pay into.

    Attributes:
        bank: the bank holding it (开户行), with the branch where that matters.
        name: the account name (户名) the customer must write.
        number: the account number, shown in full: it is the issuer's, not the customer's.
        details: anything else the payer needs (sort code, routing number, reference to quote).
    """

    bank: str
    name: str
    number: str
    details: str = ""


@dataclass(frozen=True, slots=True)
class Issuer:
    """Who sends the letters for customers of one jurisdiction.

    Attributes:
        legal_name: the creditor's legal name, as on its licence.
        address: postal address lines, the last one the postal code and city.
        hotline / hours: the customer service number and when it answers (in words, with time zone).
        website: the public website; portal_url: the base URL the QR code and links point to.
        repayment_accounts: where a transfer can be sent.
        branch / app: how to pay at a branch and in the app, in one sentence each.
        complaint: how to complain (a channel, an address, or the ombudsman).
        collector: the agency's legal name when an agency collects; empty when the creditor itself does.
        dispute_address: where written disputes go (defaults to ``address``).
        email: the address that accepts disputes and requests electronically.
    """

    jurisdiction: str
    legal_name: str
    address: tuple[str, ...]
    hotline: str
    hours: str
    website: str
    portal_url: str
    repayment_accounts: tuple[RepaymentAccount, ...]
    branch: str
    app: str
    complaint: str
    email: str
    collector: str = ""
    dispute_address: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Deadline:
    """A letter's deadline rule.

    Attributes:
        days: how many days after the letter date (the letter date itself is not counted).
        unit: ``business`` (on the customer's jurisdiction's calendar, CN with 调休) or ``calendar``.
        minimum: the legal minimum in the same unit; the lint refuses a deadline earlier than it.
        service_days: business days added before counting, for the post to arrive (a UK default notice is
            served when it arrives; 12 CFR 1006.34(b)(5) assumes receipt 5 business days after mailing).
    """

    days: int
    unit: str = "business"
    minimum: int = 0
    service_days: int = 0


# The defaults follow the seed article and the rules (see checklists.toml for the citations).
DEFAULT_DEADLINES: dict[str, Deadline] = {
    "pre_due": Deadline(0, "calendar"),  # the due date itself
    "overdue_reminder": Deadline(10, "business"),  # the article's example: 10 working days (E-CN-5)
    "credit_report_notice": Deadline(10, "business"),  # 征信业管理条例 Art 15: notice before reporting
    "final_demand": Deadline(15, "business", minimum=10),
    "plan_confirmation": Deadline(0, "calendar"),  # the first instalment's date, from the plan
    "promise_confirmation": Deadline(0, "calendar"),  # the promised date
    "dispute_ack": Deadline(20, "calendar", minimum=0),  # 征信业管理条例 Art 25: a reply within 20 days
    "dispute_outcome": Deadline(0, "calendar"),
    "us_validation_notice": Deadline(30, "calendar", minimum=30, service_days=5),  # 1006.34(b)(3),(b)(5)
    "uk_nosia": Deadline(0, "calendar"),  # information, no date to pay by (CCA s86B)
    "uk_default_notice": Deadline(14, "calendar", minimum=14, service_days=2),  # CCA s88(2): ≥14 days
}


@dataclass(frozen=True, slots=True)
class LetterSettings:
    """How letters are made and linted.

    Attributes:
        deadlines: the rule per kind (``DEFAULT_DEADLINES`` with the file's ``[letters.deadlines]``).
        max_sentence_words: the longest English sentence the lint lets through.
        max_grade: the highest Flesch-Kincaid grade level for English letters.
        max_sentence_chars: the longest Chinese sentence, in characters.
        token_days: how long the portal link in a letter stays valid.
    """

    deadlines: dict[str, Deadline] = field(default_factory=lambda: dict(DEFAULT_DEADLINES))
    max_sentence_words: int = 35
    max_grade: float = 10.0
    max_sentence_chars: int = 80
    token_days: int = 60
