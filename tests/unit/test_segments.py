"""Strategy segments: each its own stages, chosen per account by product, jurisdiction and amounts.

The set-based engine, the readable specification and the stage search must agree with segments as
they do without (``test_two_engines``, ``test_engine_stage_search``); the configuration reports every
mistake a strategist can make with one at its line.
"""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from duecourse.config import config_from_text, default_config_text
from duecourse.domain.delinquency import choose_segment, snapshot
from duecourse.domain.errors import ProblemsError
from duecourse.domain.terms import DEFAULT_SEGMENT, Segment, SegmentWhen, Stage, Terms
from duecourse.engine.snapshot import compute_snapshots
from duecourse.engine.stage_path import stage_path
from tests.unit.test_stage_path import Data, changes, day_by_day
from tests.unit.test_two_engines import BUCKETS, PRODUCTS, START, TERMS, frames, portfolios

SEGMENTED = Terms(
    products=PRODUCTS,
    bucket_sets=BUCKETS,
    stages=TERMS.stages,
    segments=(
        Segment(
            "big-balance",
            SegmentWhen(min_balance=Decimal("2500.00")),
            (Stage("BB-early", min_days_past_due=1), Stage("BB-late", min_delinquency_days=20)),
        ),
        Segment(
            "us-cards",
            SegmentWhen(
                products=("card_portion", "card_full"),
                jurisdictions=("US", "UK"),
                min_amount_past_due=Decimal("50.00"),
            ),
            (
                Stage("US-1", min_days_past_due=1),
                Stage("US-big", min_delinquency_days=5, min_amount_past_due=Decimal("500.00")),
            ),
        ),
        Segment("uk", SegmentWhen(jurisdictions=("UK",)), (Stage("UK-1", min_missed_dues=1),)),
    ),
)
JURISDICTIONS = ("CN", "US", "UK")


def with_jurisdictions(accounts: pl.DataFrame, picks: list[int]) -> tuple[pl.DataFrame, dict[str, str]]:
    where = {a: JURISDICTIONS[picks[i % len(picks)]] for i, a in enumerate(accounts["account_id"])}
    return accounts.with_columns(jurisdiction=pl.Series([where[a] for a in accounts["account_id"]])), where


@settings(
    max_examples=int(os.environ.get("DUECOURSE_PROPERTY_EXAMPLES", "120")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    data=portfolios(),
    as_of_offset=st.integers(0, 130),
    picks=st.lists(st.integers(0, 2), min_size=4, max_size=4),
)
def test_the_engine_chooses_segments_and_their_stages_as_the_specification_does(
    data: Data, as_of_offset: int, picks: list[int]
) -> None:
    as_of = START + dt.timedelta(days=as_of_offset)
    accounts, dues, payments = frames(data)
    accounts, where = with_jurisdictions(accounts, picks)
    got = dict(
        compute_snapshots(accounts, dues, payments, SEGMENTED, as_of)
        .select("account_id", "stage")
        .iter_rows()
    )
    for account_id, code, ds, ps in data:
        product = PRODUCTS[code]
        s = snapshot(
            account_id,
            product,
            BUCKETS[product.bucket_set],
            SEGMENTED.stages,
            ds,
            ps,
            as_of,
            segments=SEGMENTED.segments,
            jurisdiction=where[account_id],
        )
        assert got[account_id] == s.stage, (account_id, s.segment, s.segment_condition, s.stage_condition)


@settings(
    max_examples=int(os.environ.get("DUECOURSE_PROPERTY_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    data=portfolios(),
    as_of_offset=st.integers(20, 110),
    back=st.lists(st.integers(0, 60), min_size=4, max_size=4),
    budget=st.sampled_from([0, 1, 20]),
    picks=st.lists(st.integers(0, 2), min_size=4, max_size=4),
)
def test_the_stage_search_finds_the_days_accounts_moved_between_segments(
    data: Data, as_of_offset: int, back: list[int], budget: int, picks: list[int]
) -> None:
    """An account whose arrears grow past a segment's threshold moves onto that segment's stages; the
    search (bisection between the days money arrives) finds the day, as a day-by-day look does."""
    as_of = START + dt.timedelta(days=as_of_offset)
    accounts, dues, payments = frames(data)
    accounts, _ = with_jurisdictions(accounts, picks)
    lower = {a: as_of - dt.timedelta(days=back[i]) for i, (a, _, _, _) in enumerate(data)}
    daily = day_by_day(accounts, dues, payments, min(lower.values()), as_of, SEGMENTED)
    now = daily.filter(pl.col("day") == as_of).select("account_id", "stage")
    bounds = pl.DataFrame({"account_id": list(lower), "lower": list(lower.values())})
    found = stage_path(accounts, dues, payments, SEGMENTED, as_of, now, bounds, day_by_day=budget)
    assert found.to_dicts() == changes(daily, lower).to_dicts()


def test_an_account_moves_to_the_segment_its_arrears_reach() -> None:
    """A loan of 1,000 a month in CN: the first miss is on the default stages; once the balance past
    due reaches the segment's threshold the account is on the segment's."""
    data: Data = []
    accounts, dues, payments = frames(data)
    accounts = pl.DataFrame(
        {"account_id": ["L1"], "customer_id": ["C1"], "product_code": ["loan_plain"], "opened_on": [START]},
        schema=accounts.schema,
    )
    dues = pl.DataFrame(
        {
            "account_id": ["L1"] * 3,
            "due_id": ["D1", "D2", "D3"],
            "due_date": [START, START + dt.timedelta(days=31), START + dt.timedelta(days=59)],
            "amount_minor": [100_000] * 3,
            "component": ["principal"] * 3,
            "minimum_minor": [None] * 3,
            "posted_on": [None] * 3,
        },
        schema=dues.schema,
    )
    terms = Terms(
        PRODUCTS,
        BUCKETS,
        TERMS.stages,
        (
            Segment(
                "arrears-2k",
                SegmentWhen(min_amount_past_due=Decimal("2000.00")),
                (Stage("A2K", min_days_past_due=1),),
            ),
        ),
    )
    accounts = accounts.with_columns(jurisdiction=pl.lit("UK"))
    stage_on = {
        offset: compute_snapshots(accounts, dues, payments, terms, START + dt.timedelta(days=offset))[
            "stage"
        ][0]
        for offset in (10, 40, 60)
    }
    # loan_plain has 5 grace days: after the first miss (1,000) M1; after the second (2,000) the segment.
    assert stage_on == {10: "M1", 40: "A2K", 60: "A2K"}


def test_the_engine_refuses_a_jurisdiction_segment_without_the_column() -> None:
    accounts, dues, payments = frames([("A0", "loan_plain", [], [])])
    with pytest.raises(ValueError, match="jurisdiction"):
        compute_snapshots(accounts, dues, payments, SEGMENTED, START)


def test_choose_segment_says_why_in_words() -> None:
    segment, why = choose_segment(
        SEGMENTED.segments,
        product_code="card_portion",
        jurisdiction="US",
        amount_past_due=Decimal("75.00"),
        balance=Decimal("900.00"),
    )
    assert segment is not None and segment.name == "us-cards"
    assert (
        why == "product card_portion in card_portion, card_full and jurisdiction US in US, UK "
        "and amount past due 75.00 ≥ 50.00"
    )
    segment, why = choose_segment(
        SEGMENTED.segments,
        product_code="loan_pen",
        jurisdiction="CN",
        amount_past_due=Decimal("75.00"),
        balance=Decimal("900.00"),
    )
    assert segment is None and why == "no segment's conditions hold"
    assert choose_segment(
        (), product_code="x", jurisdiction=None, amount_past_due=Decimal(0), balance=Decimal(0)
    ) == (None, "")


def test_stage_names_severity_and_ladders() -> None:
    assert [s.name for s in SEGMENTED.all_stages()][-3:] == ["US-1", "US-big", "UK-1"]
    assert SEGMENTED.segment_of_stage("US-big") == "us-cards"
    assert SEGMENTED.segment_of_stage("M1") == DEFAULT_SEGMENT
    assert (
        SEGMENTED.severity("US-big") == 2
        and SEGMENTED.severity("M2") == 5
        and SEGMENTED.severity("current") == 0
    )
    assert SEGMENTED.deepest() == 5
    assert SEGMENTED.needs_jurisdiction and not TERMS.needs_jurisdiction


# ---------------------------------------------------------------- configuration

GOVERNOR_MARK = "# " + "-" * 96 + " governor"


def with_segments(text: str) -> str:
    """The shipped configuration with ``text`` added after its strategy (before the governor section)."""
    base = default_config_text()
    i = base.index(GOVERNOR_MARK)
    return base[:i] + text + "\n" + base[i:]


def problems(text: str) -> list[str]:
    full = with_segments(text)
    with pytest.raises(ProblemsError) as caught:
        config_from_text(full, "duecourse.toml")
    first = default_config_text().index(GOVERNOR_MARK)
    offset = default_config_text()[:first].count("\n")
    out = []
    for p in caught.value.problems:
        where, _, line = p.source.rpartition(":")
        out.append(
            f"+{int(line) - offset}: {p.message}" if where == "duecourse.toml" else f"{p.where}: {p.message}"
        )
    return out


SEGMENTS = """
[channels.post]
dir = "out/print"

[[strategy.segments]]
name = "big-us"
when = { jurisdictions = ["US"], min_balance = "5000.00" }

  [[strategy.segments.stages]]
  name = "US-big-1"
  min_days_past_due = 1

    [[strategy.segments.stages.actions]]
    channel = "letter"
    kind = "final_demand"
    offset_days = 2

  [[strategy.segments.stages]]
  name = "US-big-2"
  min_delinquency_days = 30

[[strategy.segments]]
name = "cards"
when = { products = ["card_cn", "card_us"] }

  [[strategy.segments.stages]]
  name = "card-1"
  min_days_past_due = 1
"""


def test_segments_load_with_their_stages_and_actions() -> None:
    config = config_from_text(with_segments(SEGMENTS), "duecourse.toml")
    terms = config.terms
    assert [s.name for s in terms.segments] == ["big-us", "cards"]
    assert terms.segments[0].when == SegmentWhen(jurisdictions=("US",), min_balance=Decimal("5000.00"))
    assert [s.name for s in terms.segments[0].stages] == ["US-big-1", "US-big-2"]
    assert terms.segments[1].when.products == ("card_cn", "card_us")
    assert [(a.stage, a.kind, a.offset_days) for a in config.actions_of("US-big-1")] == [
        ("US-big-1", "final_demand", 2)
    ]
    assert [s.name for s in terms.stages][0] == "early"


def test_segment_mistakes_are_reported_at_their_lines() -> None:
    found = problems(
        """
[[strategy.segments]]
name = "a"
when = { jurisdictions = ["US"], max_balance = "100", productz = ["x"] }
  [[strategy.segments.stages]]
  name = "M1"
  min_days_past_due = 1

[[strategy.segments]]
name = "b"
when = { jurisdictions = ["US", "FR"], products = ["card_us", "nope"], min_balance = "0" }
  [[strategy.segments.stages]]
  name = "b-1"
  min_days_past_due = 1

[[strategy.segments]]
name = "c"
when = {}
stages = []

[[strategy.segments]]
name = "d"
when = { products = ["card_us"] }
  [[strategy.segments.stages]]
  name = "d-1"
  min_days_past_due = 1

[[strategy.segments]]
name = "e"
when = { products = ["card_us"], min_amount_past_due = "10.00" }
  [[strategy.segments.stages]]
  name = "e-1"
  min_days_past_due = 1
  [[strategy.segments.stages]]
  name = "e-2"
  min_days_past_due = 5
  [[strategy.segments.stages]]
  name = "e-3"
  min_days_past_due = 2
"""
    )
    assert found == [
        "+4: 'max_balance': a segment takes accounts by lower bounds only (an account whose arrears grow "
        "would leave a segment with an upper bound, and the day it entered its stage could not be found "
        "again); write the tiers from the highest min_ down, the first that matches wins",
        "+4: unknown key 'productz'; did you mean 'products'?",
        "+6: stage name 'M1' is used twice (stage names are unique across the default stages and every "
        "segment's: the history and the exports name a stage alone)",
        "+11: product 'nope' is not a [products.*]",
        "+11: jurisdiction 'FR' is not one of CN, US, UK",
        "+11: min_balance must be more than 0 (0 always holds)",
        "+18: when has no condition, so every account would match; put these stages in [[strategy.stages]]",
        "+19: segment 'c' has no stages",
        "+34: stage 'e-2' can never be chosen: stage 'e-3' (later, more severe) matches whenever 'e-2' does",
        "+28: segment 'e' can never be chosen: segment 'd' (earlier, so it wins) matches whenever 'e' does",
    ]


def test_an_experiment_may_cover_a_segment_stage() -> None:
    text = (
        SEGMENTS
        + """
[[strategy.experiments]]
name = "big-us-letter"
stages = ["US-big-1"]
variants = [{ name = "champion", percent = 90 }, { name = "holdout", percent = 10, holdout = true }]
"""
    )
    config = config_from_text(with_segments(text), "duecourse.toml")
    assert config.experiments[0].stages == ("US-big-1",)
    wrong = text.replace('stages = ["US-big-1"]', 'stages = ["US-big-9"]')
    assert any("US-big-9" in p for p in problems(wrong))
