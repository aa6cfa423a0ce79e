"""The records a bank loads: customers, accounts, dues and payments.

Amounts are ``Decimal`` in the account's currency. Dues are additive: each due is an amount owed on a
date (a loan instalment's principal or interest, a card statement's new balance, a fee); a card statement
also carries its minimum payment, the part that keeps the account current.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum


class Component(StrEnum):
    PRINCIPAL = "principal"
    INTEREST = "interest"
    FEE = "fee"
    PENALTY = "penalty"


COMPONENTS: tuple[str, ...] = tuple(c.value for c in Component)
LOCALES: tuple[str, ...] = ("zh-CN", "en-US", "en-GB")
JURISDICTIONS: tuple[str, ...] = ("CN", "US", "UK")


@dataclass(frozen=True, slots=True)
class Customer:
    customer_id: str
    name: str
    locale: str
    timezone: str
    jurisdiction: str
    phone: str = ""
    email: str = ""
    address_line1: str = ""
    address_line2: str = ""
    city: str = ""
    region: str = ""
    postal_code: str = ""
    country: str = ""


@dataclass(frozen=True, slots=True)
class Account:
    account_id: str
    customer_id: str
    product_code: str
    opened_on: dt.date


@dataclass(frozen=True, slots=True)
class Due:
    """An amount owed on a date.

    Attributes:
        amount: what is owed (a card statement's balance billed on that statement).
        component: principal, interest, fee or penalty; payments reach components in the product's order.
        minimum_amount: for a card statement, the minimum payment that keeps the account current;
            ``None`` means the whole amount is required.
        posted_on: when a card balance started to accrue interest (全额计息 counts from here).
    """

    account_id: str
    due_id: str
    due_date: dt.date
    amount: Decimal
    component: str
    minimum_amount: Decimal | None = None
    posted_on: dt.date | None = None

    @property
    def required(self) -> Decimal:
        """The part that must be paid by the due date to stay current."""
        return self.amount if self.minimum_amount is None else min(self.minimum_amount, self.amount)


@dataclass(frozen=True, slots=True)
class Payment:
    payment_id: str
    account_id: str
    paid_on: dt.date
    amount: Decimal
