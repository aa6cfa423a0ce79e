"""The column schemas of the portfolio frames shared by io/, store/, engine/ and the demo generator.

Money in bulk columns is integer minor units (``*_minor``, Int64) in the account's product currency.
Text columns never hold null: an empty cell is "".
"""

from __future__ import annotations

import polars as pl

CUSTOMERS: dict[str, pl.DataType] = {
    "customer_id": pl.String(),
    "name": pl.String(),
    "locale": pl.String(),
    "timezone": pl.String(),
    "jurisdiction": pl.String(),
    "phone": pl.String(),
    "email": pl.String(),
    "address_line1": pl.String(),
    "address_line2": pl.String(),
    "city": pl.String(),
    "region": pl.String(),
    "postal_code": pl.String(),
    "country": pl.String(),
}

# An optional column of the accounts frame given to the engine: the customer's jurisdiction, read with the
# accounts when a strategy segment chooses by it (``Terms.needs_jurisdiction``).
JURISDICTION = "jurisdiction"
# An account attribute a segment chooses by (``Terms.needed_attributes``), one column each: a number as an
# Int64 of 10**-ATTRIBUTE_SCALE units (exact), a text as a String; null when the account has no value.
ATTRIBUTE_PREFIX = "attribute:"


def attribute_column(name: str) -> str:
    return ATTRIBUTE_PREFIX + name


ACCOUNTS: dict[str, pl.DataType] = {
    "account_id": pl.String(),
    "customer_id": pl.String(),
    "product_code": pl.String(),
    "opened_on": pl.Date(),
}

DUES: dict[str, pl.DataType] = {
    "account_id": pl.String(),
    "due_id": pl.String(),
    "due_date": pl.Date(),
    "amount_minor": pl.Int64(),
    "component": pl.String(),
    "minimum_minor": pl.Int64(),  # null: the whole amount is required
    "posted_on": pl.Date(),  # null unless a card balance accrues interest from a posting date
}

PAYMENTS: dict[str, pl.DataType] = {
    "payment_id": pl.String(),
    "account_id": pl.String(),
    "paid_on": pl.Date(),
    "amount_minor": pl.Int64(),
}

# One row per account per as_of: the engine's output, stored by the run and exported.
SNAPSHOTS: dict[str, pl.DataType] = {
    "account_id": pl.String(),
    "as_of": pl.Date(),
    "currency": pl.String(),
    "days_past_due": pl.Int32(),
    "delinquency_days": pl.Int32(),
    "bucket": pl.String(),
    "amount_past_due_minor": pl.Int64(),
    "principal_past_due_minor": pl.Int64(),
    "interest_past_due_minor": pl.Int64(),
    "fee_past_due_minor": pl.Int64(),
    "penalty_past_due_minor": pl.Int64(),
    "oldest_unpaid_due_date": pl.Date(),  # null when nothing is past due
    "missed_dues": pl.Int32(),
    "stage": pl.String(),
    "on_hold": pl.Boolean(),
    "outstanding_minor": pl.Int64(),
    "credit_minor": pl.Int64(),
    "penalty_interest_minor": pl.Int64(),  # accrued as of D, paid or not
    "card_interest_minor": pl.Int64(),
    "late_fees_minor": pl.Int64(),
}

FRAMES: dict[str, dict[str, pl.DataType]] = {
    "customers": CUSTOMERS,
    "accounts": ACCOUNTS,
    "dues": DUES,
    "payments": PAYMENTS,
}


def empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)
