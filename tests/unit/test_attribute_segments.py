"""Segments chosen by account attributes (a risk score, a branch): the engine and the readable
specification agree, the stage search still finds the days, and the configuration reports mistakes at
their lines; an attributes file is read exactly, every problem named at its row and column."""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from duecourse.config import config_from_text, default_config_text
from duecourse.domain.delinquency import choose_segment, snapshot
from duecourse.domain.errors import ProblemsError
from duecourse.domain.terms import AttributeCondition, Segment, SegmentWhen, Stage, Terms
from duecourse.engine.schema import attribute_column
from duecourse.engine.snapshot import compute_snapshots, scaled_attribute
from duecourse.engine.stage_path import stage_path
from duecourse.services.attributes import read_file
from tests.unit.test_stage_path import Data, changes, day_by_day
from tests.unit.test_two_engines import BUCKETS, PRODUCTS, START, TERMS, frames, portfolios

RISK = AttributeCondition("risk_score", "number", min=Decimal("700"))
MIDDLE = AttributeCondition("risk_score", "number", min=Decimal("400.5"), max=Decimal("699.999999"))
NORTH = AttributeCondition("branch", "text", values=("north", "east"))
SCORED = Terms(
    products=PRODUCTS,
    bucket_sets=BUCKETS,
    stages=TERMS.stages,
    segments=(
        Segment("high-risk", SegmentWhen(attributes=(RISK,)), (Stage("HR-1", min_days_past_due=1),)),
        Segment(
            "middle-north",
            SegmentWhen(min_amount_past_due=Decimal("50.00"), attributes=(MIDDLE, NORTH)),
            (Stage("MN-1", min_days_past_due=1), Stage("MN-2", min_delinquency_days=10)),
        ),
    ),
)
SCORES = (None, Decimal("100"), Decimal("400.5"), Decimal("699.999999"), Decimal("700"), Decimal("812.25"))
BRANCHES = (None, "north", "east", "south")


def with_attributes(
    accounts: pl.DataFrame, picks: list[int]
) -> tuple[pl.DataFrame, dict[str, dict[str, Decimal | str]]]:
    values: dict[str, dict[str, Decimal | str]] = {}
    scores: list[int | None] = []
    branches: list[str | None] = []
    for i, account in enumerate(accounts["account_id"]):
        score = SCORES[picks[i % len(picks)] % len(SCORES)]
        branch = BRANCHES[picks[(i + 1) % len(picks)] % len(BRANCHES)]
        values[account] = {k: v for k, v in (("risk_score", score), ("branch", branch)) if v is not None}
        scores.append(None if score is None else scaled_attribute(score))
        branches.append(branch)
    return (
        accounts.with_columns(
            pl.Series(attribute_column("risk_score"), scores, dtype=pl.Int64),
            pl.Series(attribute_column("branch"), branches, dtype=pl.String),
        ),
        values,
    )


@settings(
    max_examples=int(os.environ.get("DUECOURSE_PROPERTY_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    data=portfolios(),
    as_of_offset=st.integers(0, 130),
    picks=st.lists(st.integers(0, 23), min_size=4, max_size=4),
)
def test_the_engine_chooses_attribute_segments_as_the_specification_does(
    data: Data, as_of_offset: int, picks: list[int]
) -> None:
    as_of = START + dt.timedelta(days=as_of_offset)
    accounts, dues, payments = frames(data)
    accounts, values = with_attributes(accounts, picks)
    got = dict(
        compute_snapshots(accounts, dues, payments, SCORED, as_of).select("account_id", "stage").iter_rows()
    )
    for account_id, code, ds, ps in data:
        product = PRODUCTS[code]
        s = snapshot(
            account_id,
            product,
            BUCKETS[product.bucket_set],
            SCORED.stages,
            ds,
            ps,
            as_of,
            segments=SCORED.segments,
            attributes=values[account_id],
        )
        assert got[account_id] == s.stage, (account_id, s.segment, s.segment_condition, s.stage_condition)


@settings(
    max_examples=int(os.environ.get("DUECOURSE_PROPERTY_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    data=portfolios(),
    as_of_offset=st.integers(20, 110),
    back=st.lists(st.integers(0, 60), min_size=4, max_size=4),
    picks=st.lists(st.integers(0, 23), min_size=4, max_size=4),
)
def test_the_stage_search_finds_the_days_with_attribute_segments(
    data: Data, as_of_offset: int, back: list[int], picks: list[int]
) -> None:
    """The attributes are those in force on the run's date, the same for every day looked at: a segment
    with an upper bound on them cannot break the search."""
    as_of = START + dt.timedelta(days=as_of_offset)
    accounts, dues, payments = frames(data)
    accounts, _ = with_attributes(accounts, picks)
    lower = {a: as_of - dt.timedelta(days=back[i]) for i, (a, _, _, _) in enumerate(data)}
    daily = day_by_day(accounts, dues, payments, min(lower.values()), as_of, SCORED)
    now = daily.filter(pl.col("day") == as_of).select("account_id", "stage")
    bounds = pl.DataFrame({"account_id": list(lower), "lower": list(lower.values())})
    found = stage_path(accounts, dues, payments, SCORED, as_of, now, bounds, day_by_day=0)
    assert found.to_dicts() == changes(daily, lower).to_dicts()


def test_choose_segment_says_which_value_decided_and_none_matches_nothing() -> None:
    segment, why = choose_segment(
        SCORED.segments,
        product_code="card_portion",
        jurisdiction=None,
        amount_past_due=Decimal("80.00"),
        balance=Decimal("80.00"),
        attributes={"risk_score": Decimal("512"), "branch": "east"},
    )
    assert segment is not None and segment.name == "middle-north"
    assert why == (
        "amount past due 80.00 ≥ 50.00 and risk_score 512: 400.5 ≤ risk_score ≤ 699.999999 and "
        "branch east: branch in north, east"
    )
    segment, _ = choose_segment(
        SCORED.segments,
        product_code="card_portion",
        jurisdiction=None,
        amount_past_due=Decimal("80.00"),
        balance=Decimal("80.00"),
        attributes={},
    )
    assert segment is None


def test_the_engine_refuses_accounts_without_the_attribute_columns() -> None:
    accounts = pl.DataFrame(
        {"account_id": ["A"], "customer_id": ["C"], "product_code": ["card_portion"], "opened_on": [START]}
    )
    empty_dues = pl.DataFrame(schema=frames([])[1].schema)
    empty_payments = pl.DataFrame(schema=frames([])[2].schema)
    with pytest.raises(ValueError, match="attribute risk_score"):
        compute_snapshots(accounts, empty_dues, empty_payments, SCORED, START)


def _with(text: str) -> str:
    marker = "[[strategy.stages]]"
    return default_config_text().replace(marker, text + "\n" + marker, 1)


def test_attribute_segments_load_and_mistakes_are_reported_at_their_lines() -> None:
    good = """
[attributes]
risk_score = "number"
branch = "text"

[[strategy.segments]]
name = "risky"
when = { attributes = { risk_score = { min = "700" }, branch = ["north"] } }

  [[strategy.segments.stages]]
  name = "R-1"
  min_days_past_due = 1
"""
    config = config_from_text(_with(good))
    assert config.attributes == {"risk_score": "number", "branch": "text"}
    assert config.terms.segments[0].when.attributes == (
        AttributeCondition("risk_score", "number", min=Decimal("700")),
        AttributeCondition("branch", "text", values=("north",)),
    )
    assert config.terms.needed_attributes == {"risk_score": "number", "branch": "text"}

    bad = """
[attributes]
risk_score = "number"
branch = "text"
Bad-Name = "text"
valid_from = "text"
tier = "integer"

[[strategy.segments]]
name = "a"
when = { attributes = { risk_score = { min = "800", max = "700" }, branch = "north", colour = ["red"] } }

  [[strategy.segments.stages]]
  name = "A-1"
  min_days_past_due = 1

[[strategy.segments]]
name = "b"
when = { attributes = { risk_score = { min = 0.5, above = "1" } } }

  [[strategy.segments.stages]]
  name = "B-1"
  min_days_past_due = 1

[[strategy.segments]]
name = "c"
when = { attributes = { risk_score = { min = "1.0000001" } } }

  [[strategy.segments.stages]]
  name = "C-1"
  min_days_past_due = 1
"""
    with pytest.raises(ProblemsError) as caught:
        config_from_text(_with(bad), "duecourse.toml")
    messages = [str(p) for p in caught.value.problems]
    text = "\n".join(messages)
    assert 'attribute name "Bad-Name" must start with a small letter' in text
    assert 'attribute name "valid_from" is a column of the attributes file itself' in text
    assert "attribute tier must be 'number' or 'text', not \"integer\"" in text
    assert "risk_score: min 800 is more than max 700" in text
    assert 'branch is a text attribute: give the values it may have, like ["north"]' in text
    assert "attribute 'colour' is not declared in [attributes] (declared: branch, risk_score)" in text
    assert "min must be a number like" in text  # a TOML float is not exact
    assert "'above'" in text
    assert "min must be less than 1,000,000,000,000 with at most 6 decimals, not 1.0000001" in text
    assert all(m.startswith("duecourse.toml:") for m in messages)


def test_a_later_segment_covered_by_an_earlier_one_is_unreachable() -> None:
    text = """
[attributes]
risk_score = "number"

[[strategy.segments]]
name = "wide"
when = { attributes = { risk_score = { min = "500" } } }

  [[strategy.segments.stages]]
  name = "W-1"
  min_days_past_due = 1

[[strategy.segments]]
name = "narrow"
when = { attributes = { risk_score = { min = "600", max = "800" } } }

  [[strategy.segments.stages]]
  name = "N-1"
  min_days_past_due = 1
"""
    with pytest.raises(ProblemsError, match="segment 'narrow' can never be chosen"):
        config_from_text(_with(text))


DECLARED = {"risk_score": "number", "branch": "text"}


def test_an_attributes_file_is_read_exactly_with_every_problem_at_its_row_and_column(tmp_path: Path) -> None:
    good = tmp_path / "scores.csv"
    good.write_text(
        "account_id,valid_from,risk_score,branch\n"
        "A1,2025-05-01,712,north\n"
        "A2,2025-05-01,0.035000,\n"
        "\n"
        'A3,2025-05-01,-1.50,"south"\n',
        encoding="utf-8",
    )
    frame = read_file(good, DECLARED, {"A1", "A2", "A3"})
    assert frame.select("account_id", "name", "value", "row").rows() == [
        ("A1", "risk_score", "712", 2),
        ("A1", "branch", "north", 2),
        ("A2", "risk_score", "0.035", 3),
        ("A2", "branch", "", 3),
        ("A3", "risk_score", "-1.5", 5),
        ("A3", "branch", "south", 5),
    ]
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "account_id,valid_from,risk_score,branch\n"
        "A1,2025-05-01,7.1234567,north\n"
        "A9,2025-13-01,abc,north\n"
        "A1,2025-05-01,700,south\n"
        "A2,2025-05-01,1e3,x\n",
        encoding="utf-8",
    )
    with pytest.raises(ProblemsError) as caught:
        read_file(bad, DECLARED, {"A1", "A2"})
    got = [str(p) for p in caught.value.problems]
    assert got == [
        f"{bad}:2:risk_score: risk_score must be a number with at most 6 decimals and less than "
        "1,000,000,000,000, not '7.1234567'",
        f"{bad}:3:account_id: account A9 is not in the store",
        f"{bad}:3:valid_from: valid_from must be a date as YYYY-MM-DD, not '2025-13-01'",
        f"{bad}:3:risk_score: risk_score must be a number with at most 6 decimals and less than "
        "1,000,000,000,000, not 'abc'",
        f"{bad}:4:branch: account A1 has branch from 2025-05-01 already on row 2",
    ]
    header = tmp_path / "header.csv"
    header.write_text("account,valid_from,colour\nA1,2025-05-01,red\n", encoding="utf-8")
    with pytest.raises(ProblemsError) as caught:
        read_file(header, DECLARED, None)
    assert [str(p) for p in caught.value.problems] == [
        f"{header}:1: the header has no account_id column",
        f"{header}:1:account: 'account' is not an attribute declared in [attributes] of duecourse.toml "
        "(branch, risk_score)",
        f"{header}:1:colour: 'colour' is not an attribute declared in [attributes] of duecourse.toml "
        "(branch, risk_score)",
    ]
