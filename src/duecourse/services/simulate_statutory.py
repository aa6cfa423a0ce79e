"""The notices the law requires, in ``policy simulate``: the same rules as the run's
(``services/statutory.py``: ``loan_arrears``, ``loan_notices``, ``card_notices``, ``validation_notices``),
fed from the simulation's frames instead of the database.

- **What was given before the range** is read once: the outbox's UK arrears notices (not cancelled or
  failed) and, for the US accounts of ``[governor] third_party_products``, the first communication and
  whether a validation notice was given.
- **Each day**, the UK loans' arrears come from their dues and payments (pure, as the run computes
  them); the UK cards' oldest unpaid minimum from the engine, for the UK cards only; the US accounts'
  first communication from what was read and what the simulation let through on earlier days.
- **After each day**, the notices and communications the simulation let through are added, so the next
  day sees them as the next run would see the outbox.

As in the run, a notice of the same kind the strategy itself plans that day takes the place of the
law's (one letter), and a notice's key names the account's stage of the day (``current`` for an account
the simulation does not follow on a stage with actions).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import polars as pl
from sqlalchemy import Engine, and_, func, select

from duecourse.config import PRE_DUE_STAGE, Config
from duecourse.domain.money import CURRENCIES
from duecourse.services import statutory as law
from duecourse.services.contacts import local_days
from duecourse.store import repo
from duecourse.store.frames import read_frame
from duecourse.store.tables import customers, outbox

# A US account's first communication: its local day, and the day it was planned (a validation notice is
# planned on a later day than that, as the run reads the outbox).
_FIRST: dict[str, pl.DataType] = {"account_id": pl.String(), "first_on": pl.Date(), "planned_on": pl.Date()}


@dataclass
class StatutoryState:
    """What the law's notices read, kept up to date day by day: the UK arrears notices given
    (``statutory.NOTICES``), the US accounts' first communication day (``_FIRST``) and those given a
    validation notice."""

    uk_notices: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=law.NOTICES))
    us_first: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=_FIRST))
    us_given: set[str] = field(default_factory=set)


def applies(config: Config) -> bool:
    """Whether any of the law's notices can be due under this configuration."""
    kinds = {product.kind for product in config.terms.products.values()}
    return bool(kinds & {law.LOAN, law.CARD}) or bool(config.governor.third_party_products)


def read_state(engine: Engine, first: dt.date, config: Config) -> StatutoryState:
    """The notices and communications of the outbox planned before ``first`` that the rules read."""
    given = read_frame(
        engine,
        select(
            outbox.c.account_id,
            outbox.c.planned_on,
            func.coalesce(outbox.c.sent_at, outbox.c.scheduled_at).label("at"),
            customers.c.timezone,
        )
        .join(customers, customers.c.customer_id == outbox.c.customer_id)
        .where(
            and_(
                outbox.c.kind == law.NOSIA_KIND,
                outbox.c.state.not_in(law.NOT_GIVEN),
                outbox.c.planned_on < first,
            )
        ),
        schema={
            "account_id": pl.String(),
            "planned_on": pl.Date(),
            "at": pl.Datetime("us", "UTC"),
            "timezone": pl.String(),
        },
    )
    uk = given.with_columns(local_days(given, "at").alias("given_on")).select(list(law.NOTICES))
    state = StatutoryState(uk_notices=uk.cast(pl.Schema(law.NOTICES)))
    if not config.governor.third_party_products:
        return state
    comms = read_frame(
        engine,
        select(
            outbox.c.account_id,
            outbox.c.kind,
            outbox.c.state,
            outbox.c.planned_on,
            func.coalesce(outbox.c.sent_at, outbox.c.scheduled_at).label("at"),
            customers.c.timezone,
        )
        .join(customers, customers.c.customer_id == outbox.c.customer_id)
        .where(
            and_(
                customers.c.jurisdiction == "US",
                outbox.c.planned_on < first,
                outbox.c.contact_id == "",  # a location request to a third party is no communication
            )
        ),
        schema={
            "account_id": pl.String(),
            "kind": pl.String(),
            "state": pl.String(),
            "planned_on": pl.Date(),
            "at": pl.Datetime("us", "UTC"),
            "timezone": pl.String(),
        },
    )
    comms = comms.with_columns(local_days(comms, "at").alias("day"))
    others = comms.filter(
        (pl.col("kind") != law.VALIDATION_KIND) & ~pl.col("state").is_in(list(law.NOT_COMMUNICATED))
    )
    state.us_first = (
        others.group_by("account_id")
        .agg(pl.col("day").min().alias("first_on"), pl.col("planned_on").min())
        .cast(pl.Schema(_FIRST))
    )
    notices = comms.filter(
        (pl.col("kind") == law.VALIDATION_KIND) & ~pl.col("state").is_in(list(law.NOT_GIVEN))
    )
    state.us_given = set(notices.get_column("account_id").to_list())
    return state


@dataclass(frozen=True)
class Inputs:
    """The portfolio's parts the rules read, shaped once for every day."""

    info: pl.DataFrame  # account_id, customer_id, product_code, timezone, jurisdiction, locale, digits
    uk_loans: pl.DataFrame  # account_id
    uk_cards: pl.DataFrame  # account_id
    us_third_party: pl.DataFrame  # account_id
    due_days: pl.DataFrame  # statutory.DUE_DAYS of the UK accounts
    paid_days: pl.DataFrame  # statutory.PAID_DAYS of the UK loans


def inputs(config: Config, portfolio: repo.Portfolio, info: pl.DataFrame) -> Inputs:
    products = config.terms.products
    kinds = {code: product.kind for code, product in products.items()}
    digits = {code: CURRENCIES[product.currency].minor_digits for code, product in products.items()}
    info = info.with_columns(
        pl.col("product_code").replace_strict(digits, default=2, return_dtype=pl.Int32()).alias("digits")
    )
    uk = info.filter(pl.col("jurisdiction") == "UK")
    of_kind = pl.col("product_code").replace_strict(kinds, default="", return_dtype=pl.String())
    uk_loans = uk.filter(of_kind == law.LOAN).select("account_id")
    uk_cards = uk.filter(of_kind == law.CARD).select("account_id")
    third = sorted(config.governor.third_party_products)
    us_third = info.filter((pl.col("jurisdiction") == "US") & pl.col("product_code").is_in(third)).select(
        "account_id"
    )
    uk_ids = pl.concat([uk_loans, uk_cards])
    due_days = (
        portfolio.dues.join(uk_ids, on="account_id", how="semi")
        .group_by("account_id", "due_date")
        .agg(
            pl.coalesce("minimum_minor", "amount_minor").sum().alias("required_minor"),
            pl.col("posted_on").min().alias("posted_on"),
        )
        .select(list(law.DUE_DAYS))
        .cast(pl.Schema(law.DUE_DAYS))
    )
    paid_days = (
        portfolio.payments.join(uk_loans, on="account_id", how="semi")
        .group_by("account_id", "paid_on")
        .agg(pl.col("amount_minor").sum())
        .select(list(law.PAID_DAYS))
        .cast(pl.Schema(law.PAID_DAYS))
    )
    return Inputs(info, uk_loans, uk_cards, us_third, due_days, paid_days)


def parts(
    config: Config,
    portfolio: repo.Portfolio,
    found: Inputs,
    state: StatutoryState,
    stages: pl.DataFrame,
    day: dt.date,
    holds: pl.DataFrame | None = None,
) -> list[pl.DataFrame]:
    """The law's notices due to plan on ``day``, shaped for ``plan_frame``'s ``more`` (with ``locale``);
    ``stages``: ``account_id, stage`` of the accounts the simulation follows that day; ``holds``: the
    stored holds (``governor.HOLDS``), of which the judgments change the UK notices (``law.judged_on``)."""
    from duecourse.services.simulate import snapshots_of  # the module that calls this one

    why: list[tuple[str, str, int, pl.DataFrame]] = []
    judged = law.NO_JUDGMENTS
    if holds is not None and (found.uk_loans.height or found.uk_cards.height):
        judged = law.judged_on(holds, found.info.select("account_id", "customer_id"), day)
    if found.uk_loans.height:
        arrears = law.loan_arrears(
            found.due_days.join(found.uk_loans, on="account_id", how="semi"),
            found.paid_days.filter(pl.col("paid_on") <= day),
            day,
        ).join(found.info.select("account_id", "digits"), on="account_id")
        loans = law.loan_notices(arrears, state.uk_notices, day, judged).select("account_id", "why")
        if loans.height:
            why.append((law.NOSIA_ACTION, law.NOSIA_KIND, law.NOSIA_PRIORITY, loans))
    if found.uk_cards.height:
        ids = found.uk_cards
        oldest = (
            snapshots_of(config, portfolio, ids, day)
            .filter(pl.col("oldest_unpaid_due_date").is_not_null() & (pl.col("amount_past_due_minor") > 0))
            .select("account_id", oldest="oldest_unpaid_due_date")
        )
        cards = law.card_notices(
            oldest, found.due_days.join(ids, on="account_id", how="semi"), state.uk_notices, day, judged
        ).select("account_id", "why")
        if cards.height:
            why.append((law.NOSIA_ACTION, law.NOSIA_KIND, law.NOSIA_PRIORITY, cards))
    if found.us_third_party.height and state.us_first.height:
        first = state.us_first.join(found.us_third_party, on="account_id", how="semi").filter(
            (pl.col("planned_on") < day) & ~pl.col("account_id").is_in(sorted(state.us_given))
        )
        us = law.validation_notices(first.select("account_id", "first_on"), day).select("account_id", "why")
        if us.height:
            why.append((law.VALIDATION_ACTION, law.VALIDATION_KIND, law.VALIDATION_PRIORITY, us))
    out: list[pl.DataFrame] = []
    for action, kind, priority, rows in why:
        base = (
            found.info.join(rows, on="account_id")
            .join(stages, on="account_id", how="left")
            .with_columns(pl.col("stage").fill_null(PRE_DUE_STAGE))
        )
        shaped = law.shaped(base, day, action, kind, priority)  # the run's own shaping
        out.append(shaped.join(found.info.select("account_id", "locale"), on="account_id", how="left"))
    return out


def record(state: StatutoryState, allowed: pl.DataFrame, found: Inputs, day: dt.date) -> None:
    """Add the day's allowed messages (``account_id, kind, local_day``) to what the next days read."""
    nosia = allowed.filter(pl.col("kind") == law.NOSIA_KIND)
    if nosia.height:
        given = nosia.select(
            "account_id", pl.lit(day, pl.Date()).alias("planned_on"), pl.col("local_day").alias("given_on")
        )
        state.uk_notices = pl.concat([state.uk_notices, given.cast(pl.Schema(law.NOTICES))])
    if not found.us_third_party.height:
        return
    us = allowed.join(found.us_third_party, on="account_id", how="semi")
    if "contact_id" in us.columns:  # a location request to a third party is no communication
        us = us.filter(pl.col("contact_id").fill_null("") == "")
    state.us_given |= set(us.filter(pl.col("kind") == law.VALIDATION_KIND).get_column("account_id").to_list())
    comms = us.filter(pl.col("kind") != law.VALIDATION_KIND).select(
        "account_id", pl.col("local_day").alias("first_on"), pl.lit(day, pl.Date()).alias("planned_on")
    )
    if comms.height:
        state.us_first = (
            pl.concat([state.us_first, comms.cast(pl.Schema(_FIRST))])
            .group_by("account_id")
            .agg(pl.col("first_on").min(), pl.col("planned_on").min())
        )
