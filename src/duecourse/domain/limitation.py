"""When a US debt becomes time-barred: the statute of limitations for suing on it has run (US-TBD-01).

The periods are state law, different by state and by kind of contract, so they are the institution's to
set with its counsel (``[governor] limitation_years``, per US state code: the customer's ``region``). The
period runs from the day the oldest unpaid due fell past due (the day after its due date), or from the
last payment when that is later and the customer's state is one where a payment starts it again
(``[governor] limitation_restarts_on_payment``, none unless said); the debt is time-barred from the same
day that many years later. Read by the escalation tasks (no legal review of a time-barred debt,
``services/tasks.py``) and by every communication about the debt (the disclosures some states and New
York City require, ``services/time_barred.py``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Limits:
    """The institution's statutes of limitations (``[governor] limitation_years``) and the states where a
    payment starts the period again (none unless said: counting from a payment where it does not would
    treat a debt already time-barred as if it were not)."""

    years: Mapping[str, int] = field(default_factory=dict)
    restarts_on_payment: frozenset[str] = frozenset()  # the states where a payment starts it again


def add_years(day: dt.date, years: int) -> dt.date:
    """The same day ``years`` later; 29 February becomes 28 February (the earlier day: a period is never
    taken as longer than it is)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


# The USPS codes of the states, the District of Columbia, the territories and the military post offices: a
# region that is none of them ("New York", "N.Y.") cannot say which state's rules apply.
US_STATE_CODES = frozenset(
    "AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY NC ND "
    "OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY DC PR GU VI AS MP AA AE AP".split()
)


def state_of(region: object) -> str:
    """A customer's region as a US state code (``" ny "`` → ``"NY"``; nothing → ``""``)."""
    return "" if region is None else str(region).strip().upper()


@dataclass(frozen=True, slots=True)
class Period:
    """The limitation period of one debt.

    Attributes:
        state: the customer's state, whose period it is.
        years: the period, from ``[governor] limitation_years``.
        start: the day it runs from; ``since`` says why (the oldest unpaid due fell past due, or the last
            payment).
        barred_on: the first day the debt is time-barred (``start`` + ``years``).
    """

    state: str
    years: int
    start: dt.date
    since: str
    barred_on: dt.date

    def barred(self, as_of: dt.date) -> bool:
        return as_of >= self.barred_on

    def describe(self) -> str:
        return f"{self.years} years in {self.state} from {self.start}, when {self.since}"


def period_of(
    state: str, oldest_unpaid_due_date: dt.date, last_paid_on: dt.date | None, limits: Limits
) -> Period | None:
    """The period of a debt whose oldest unpaid due is ``oldest_unpaid_due_date``; ``None`` when the
    institution has set no period for ``state`` (the caller fails closed)."""
    years = limits.years.get(state)
    if years is None:
        return None
    start, since = oldest_unpaid_due_date + dt.timedelta(days=1), "the oldest unpaid due fell past due"
    if state in limits.restarts_on_payment and last_paid_on is not None and last_paid_on > start:
        start, since = last_paid_on, "the last payment"
    return Period(state, years, start, since, add_years(start, years))
