"""duecourse.toml: the shipped default loads, and every mistake is reported at once with its file:line."""

from __future__ import annotations

import datetime as dt
import textwrap
import tomllib
from decimal import Decimal
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from duecourse.config import (
    KeyLines,
    check_config,
    config_from_text,
    default_config_text,
    load_config,
)
from duecourse.domain.errors import ProblemsError
from duecourse.domain.strategy import CONTACT_KINDS, TASK_KINDS, Action
from duecourse.domain.terms import Bucket, LateFee, Stage
from duecourse.letters.kinds import KINDS

PRODUCT = """
[products.base]
kind = "instalment_loan"
currency = "CNY"
grace_days = 0
bucket_set = "cn_m"
calendar = "CN"
"""
STAGE = """
[[strategy.stages]]
name = "base"
min_days_past_due = 1
"""


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty directory, so ./duecourse.toml is the test's own file (or absent)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(text: str, product: bool = True, stage: bool = True) -> Path:
    """Write ./duecourse.toml: the test's text from line 1, then a valid product and stage if asked."""
    body = textwrap.dedent(text).lstrip("\n")
    body += (PRODUCT if product else "") + (STAGE if stage else "")
    path = Path("duecourse.toml")
    path.write_text(body, encoding="utf-8")
    return path


def problems(text: str, product: bool = True, stage: bool = True) -> list[str]:
    return [str(p) for p in check_config(write(text, product, stage))]


# ---------------------------------------------------------------- the shipped default


def test_without_a_file_the_shipped_default_loads(in_tmp: Path) -> None:
    config = load_config(None)
    assert config.source == "<default>"
    terms = config.terms
    assert list(terms.products) == ["card_cn", "loan_cn", "card_us", "loan_uk"]
    assert [s.name for s in terms.stages] == ["early", "M1", "M2", "M3", "M4+", "write_off_review"]
    assert terms.stages[-1] == Stage(
        "write_off_review", min_delinquency_days=181, min_amount_past_due=Decimal(100)
    )
    assert set(terms.bucket_sets) == {"fineract", "cn_m", "us_30"}


def test_shipped_products_carry_their_charges_exactly(in_tmp: Path) -> None:
    products = load_config(None).terms.products
    card_cn = products["card_cn"]
    assert (card_cn.kind, card_cn.currency, card_cn.grace_days, card_cn.bucket_set) == (
        "card",
        "CNY",
        3,
        "cn_m",
    )
    assert card_cn.allocation_order == ("penalty", "fee", "interest", "principal")
    assert card_cn.charges.card_interest_mode == "full_amount"
    assert card_cn.charges.card_daily_rate == Decimal("0.0005")
    assert card_cn.charges.late_fee == LateFee(
        mode="percent", percent=Decimal("0.05"), floor=Decimal("10.00")
    )
    assert products["loan_cn"].charges.penalty_daily_rate == Decimal("0.00075")
    assert products["loan_cn"].charges.late_fee == LateFee()
    assert products["card_us"].charges.late_fee == LateFee(
        mode="flat", flat=Decimal("30.00"), limit_to_minimum=True
    )
    assert (products["loan_uk"].currency, products["loan_uk"].bucket_set) == ("GBP", "fineract")
    assert products["loan_uk"].charges.late_fee == LateFee(mode="flat", flat=Decimal("12.00"))


def test_the_default_text_is_the_file_that_loads_and_it_has_no_problems(in_tmp: Path) -> None:
    assert check_config(None) == []
    assert config_from_text(default_config_text()).terms == load_config(None).terms
    assert "# " in default_config_text()


@pytest.mark.parametrize(
    ("bucket_set", "days", "bucket"),
    [
        pytest.param("cn_m", 30, "M1", id="cn-m1-end"),
        pytest.param("cn_m", 31, "M2", id="cn-m2-start"),
        pytest.param("cn_m", 181, "M7+", id="cn-open-end"),
        pytest.param("fineract", 3, "1-3", id="fineract-first"),
        pytest.param("fineract", 4, "4-30", id="fineract-second"),
        pytest.param("fineract", 241, "241+", id="fineract-open-end"),
        pytest.param("us_30", 29, "1-29", id="us-before-30"),
        pytest.param("us_30", 30, "30", id="us-30"),
        pytest.param("us_30", 180, "180+", id="us-charge-off"),
        pytest.param("us_30", 0, "current", id="us-current"),
    ],
)
def test_shipped_bucket_sets_cover_every_day(in_tmp: Path, bucket_set: str, days: int, bucket: str) -> None:
    assert load_config(None).terms.bucket_sets[bucket_set].bucket_for(days) == bucket


def test_a_local_duecourse_toml_is_read_instead_of_the_default(in_tmp: Path) -> None:
    write("")
    config = load_config(None)
    assert config.source == "duecourse.toml"
    assert list(config.terms.products) == ["base"]


def test_a_named_file_that_does_not_exist_is_a_problem(in_tmp: Path) -> None:
    assert [str(p) for p in check_config(Path("other.toml"))] == ["other.toml: no such configuration file"]


# ---------------------------------------------------------------- bucket sets


def test_a_bucket_set_of_the_same_name_replaces_the_shipped_one(in_tmp: Path) -> None:
    write(
        """
        [bucket_sets.cn_m]
        current = "C"
        buckets = [{ name = "early", min = 1, max = 9 }, { name = "late", min = 10 }]
        """
    )
    bucket_sets = load_config(None).terms.bucket_sets
    assert bucket_sets["cn_m"].buckets == (Bucket("early", 1, 9), Bucket("late", 10, None))
    assert bucket_sets["cn_m"].bucket_for(0) == "C"
    assert set(bucket_sets) == {"fineract", "cn_m", "us_30"}


def test_a_gap_between_buckets_is_reported_at_the_second_bucket(in_tmp: Path) -> None:
    assert problems(
        """
        [bucket_sets.weekly]
        buckets = [
            { name = "W1", min = 1, max = 7 },
            { name = "W2", min = 9, max = 14 },
            { name = "W3+", min = 15 },
        ]
        """
    ) == [
        "duecourse.toml:4: gap between buckets 'W1' (ends at 7) and 'W2' (starts at 9); "
        "'W2' should start at 8"
    ]


def test_overlapping_buckets_are_reported_with_both_names(in_tmp: Path) -> None:
    assert problems(
        """
        [bucket_sets.weekly]
        buckets = [
            { name = "W1", min = 1, max = 7 },
            { name = "W2", min = 7 },
        ]
        """
    ) == ["duecourse.toml:4: buckets 'W1' (ends at 7) and 'W2' (starts at 7) overlap; 'W2' should start at 8"]


@pytest.mark.parametrize(
    ("buckets", "message"),
    [
        pytest.param(
            '{ name = "A", min = 0, max = 7 }, { name = "B", min = 8 }',
            "the first bucket 'A' must start at 1 day (min = 1), not 0",
            id="first-not-1",
        ),
        pytest.param(
            '{ name = "A", min = 1, max = 7 }, { name = "B", min = 8, max = 30 }',
            "the last bucket 'B' must be open-ended (leave out max) so that every day past 30 has a bucket",
            id="last-closed",
        ),
        pytest.param(
            '{ name = "A", min = 1 }, { name = "B", min = 8 }',
            "only the last bucket may be open-ended (no max): 'A' has no max but 'B' follows it",
            id="open-not-last",
        ),
        pytest.param(
            '{ name = "A", min = 1, max = 7 }, { name = "B", min = 9, max = 8 }, { name = "C", min = 9 }',
            "bucket 'B' has min 9 greater than max 8",
            id="min-above-max",
        ),
        pytest.param(
            '{ name = "A", min = 1, max = 7 }, { name = "A", min = 8 }',
            "bucket name 'A' is used twice",
            id="duplicate-name",
        ),
        pytest.param(
            '{ name = "current", min = 1 }',
            "bucket name 'current' is the name of 0 days (current = \"current\")",
            id="named-current",
        ),
        pytest.param('{ name = "A", min = "1" }', 'min must be a whole number, not "1"', id="min-a-string"),
        pytest.param(
            '{ name = "A", min = 1, size = 3 }',
            "unknown key 'size'; expected one of: name, min, max",
            id="unknown",
        ),
        pytest.param('{ name = "A", min = 1, mxa = 7 }', "unknown key 'mxa'; did you mean 'max'?", id="typo"),
        pytest.param("{ min = 1 }", "missing key 'name' in [bucket_sets.b.buckets #1]", id="no-name"),
        pytest.param(
            "", 'buckets must be a non-empty array like [{ name = "M1", min = 1, max = 30 }, ...]', id="empty"
        ),
    ],
)
def test_bucket_set_rules(in_tmp: Path, buckets: str, message: str) -> None:
    assert problems(f"[bucket_sets.b]\nbuckets = [{buckets}]\n") == [f"duecourse.toml:2: {message}"]


def test_buckets_written_as_an_array_of_tables_are_located_too(in_tmp: Path) -> None:
    assert problems(
        """
        [[bucket_sets.b.buckets]]
        name = "A"
        min = 1
        max = 7

        [[bucket_sets.b.buckets]]
        name = "B"
        min = 10
        """
    ) == [
        "duecourse.toml:6: gap between buckets 'A' (ends at 7) and 'B' (starts at 10); 'B' should start at 8"
    ]


# ---------------------------------------------------------------- products


def test_an_unknown_key_suggests_the_known_one(in_tmp: Path) -> None:
    assert problems(
        """
        [products.x]
        kind = "card"
        currency = "USD"
        grace_day = 3
        bucket_set = "us_30"
        calendar = "US"
        """
    ) == [
        "duecourse.toml:4: unknown key 'grace_day'; did you mean 'grace_days'?",
        "duecourse.toml:1: missing key 'grace_days' in [products.x]",
    ]


def test_a_float_rate_is_refused_because_it_is_not_exact(in_tmp: Path) -> None:
    assert problems(
        """
        [products.x.charges]
        penalty_daily_rate = 0.00075
        """,
        product=False,
    ) == [
        "duecourse.toml:1: missing key 'kind' in [products.x]",
        "duecourse.toml:1: missing key 'currency' in [products.x]",
        "duecourse.toml:1: missing key 'grace_days' in [products.x]",
        "duecourse.toml:1: missing key 'bucket_set' in [products.x]",
        "duecourse.toml:1: missing key 'calendar' in [products.x]",
        "duecourse.toml:2: penalty_daily_rate = 0.00075 is a TOML float; "
        'write rates as strings, e.g. "0.0005", to keep them exact',
    ]


def test_rates_may_be_strings_or_whole_numbers(in_tmp: Path) -> None:
    write(
        """
        [products.base.charges]
        penalty_daily_rate = "0.00075"
        card_daily_rate = 0
        """
    )
    charges = load_config(None).terms.products["base"].charges
    assert charges.penalty_daily_rate == Decimal("0.00075")
    assert charges.card_daily_rate == Decimal(0)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        pytest.param(
            'kind = "cards"',
            'kind must be one of "card", "instalment_loan", not "cards"; did you mean "card"?',
            id="kind",
        ),
        pytest.param(
            'currency = "RMB"',
            'currency must be one of "CNY", "USD", "GBP", "EUR", "HKD", "JPY", not "RMB"',
            id="currency",
        ),
        pytest.param("grace_days = -1", "grace_days must be a whole number, at least 0, not -1", id="grace"),
        pytest.param('calendar = "DE"', 'calendar must be one of "CN", "UK", "US", not "DE"', id="calendar"),
        pytest.param(
            'bucket_set = "cn-m"', "bucket_set 'cn-m' is not defined; did you mean 'cn_m'?", id="bucket-set"
        ),
        pytest.param(
            'allocation_order = ["fee", "fee", "principal", "bonus"]',
            "allocation_order must list each of principal, interest, fee, penalty once "
            "(unknown: bonus; twice: fee; missing: interest, penalty)",
            id="allocation-order",
        ),
    ],
)
def test_product_values_are_checked(in_tmp: Path, line: str, message: str) -> None:
    fields = {
        "kind": '"card"',
        "currency": '"USD"',
        "grace_days": "0",
        "bucket_set": '"us_30"',
        "calendar": '"US"',
    }
    key = line.split(" = ", maxsplit=1)[0]
    body = "[products.x]\n" + line + "\n" + "".join(f"{k} = {v}\n" for k, v in fields.items() if k != key)
    assert problems(body) == [f"duecourse.toml:2: {message}"]


def test_allocation_order_defaults_to_the_component_order(in_tmp: Path) -> None:
    write("")
    assert load_config(None).terms.products["base"].allocation_order == (
        "principal",
        "interest",
        "fee",
        "penalty",
    )


def test_card_interest_on_a_loan_is_refused(in_tmp: Path) -> None:
    assert problems(
        """
        [products.base.charges]
        card_interest_mode = "full_amount"
        card_daily_rate = "0.0005"
        """
    ) == [
        'duecourse.toml:2: card_interest_mode = "full_amount" applies to cards only; this product is '
        "'instalment_loan'",
        "duecourse.toml:3: card_daily_rate applies to cards only; this product is 'instalment_loan'",
    ]


@pytest.mark.parametrize(
    ("late_fee", "line", "message"),
    [
        pytest.param(
            'mode = "percent"\npercent = "0.05"\nfloor = "20.00"\ncap = "10.00"',
            4,
            "floor 20.00 is greater than cap 10.00",
            id="floor-above-cap",
        ),
        pytest.param(
            'mode = "flat"\nflat = "10.001"',
            3,
            'flat = "10.001" does not fit CNY, which has 2 decimal places',
            id="fraction-of-a-cent",
        ),
        pytest.param(
            'mode = "percent"\npercent = "5"',
            3,
            'percent is a fraction of the unpaid minimum: write "0.05" for 5 %, not "5"',
            id="percent-as-a-whole",
        ),
        pytest.param(
            'mode = "flat"\nflat = "12.00"\nfloor = "5.00"',
            4,
            'floor is not used when mode = "flat"; remove it or change the mode',
            id="unused-key",
        ),
        pytest.param('mode = "flat"', 2, 'mode = "flat" needs flat', id="flat-without-amount"),
        pytest.param(
            'flat = "12.00"', 1, "missing key 'mode' in [products.base.charges.late_fee]", id="no-mode"
        ),
        pytest.param(
            'mode = "flat"\nflat = 12.0',
            3,
            'flat = 12.0 is a TOML float; write amounts as strings, e.g. "10.00", to keep them exact',
            id="float-amount",
        ),
        pytest.param(
            'mode = "flat"\nflat = "-1"',
            3,
            'flat must not be negative, not "-1"',
            id="negative",
        ),
        pytest.param(
            'mode = "flat"\nflat = "1"\nlimit_to_minimum = "yes"',
            4,
            'limit_to_minimum must be true or false, not "yes"',
            id="not-a-bool",
        ),
    ],
)
def test_late_fee_rules(in_tmp: Path, late_fee: str, line: int, message: str) -> None:
    text = "[products.base.charges.late_fee]\n" + late_fee + "\n"
    assert problems(text) == [f"duecourse.toml:{line}: {message}"]


def test_a_late_fee_reads_every_field(in_tmp: Path) -> None:
    write(
        """
        [products.base.charges.late_fee]
        mode = "percent"
        percent = "0.05"
        floor = "5"
        cap = "500.00"
        limit_to_minimum = true
        """
    )
    fee = load_config(None).terms.products["base"].charges.late_fee
    assert fee == LateFee("percent", Decimal("0.05"), Decimal(5), Decimal("500.00"), Decimal(0), True)


def test_a_configuration_without_products_is_refused(in_tmp: Path) -> None:
    assert problems("", product=False) == [
        "duecourse.toml:1: no products: add a [products.CODE] table for each product"
    ]


# ---------------------------------------------------------------- stages


def test_a_stage_without_conditions_is_refused(in_tmp: Path) -> None:
    assert problems(
        """
        [[strategy.stages]]
        name = "anyone"
        """,
        stage=False,
    ) == [
        "duecourse.toml:1: stage 'anyone' has no condition, so every account would be in it; "
        "set at least one of min_days_past_due, min_delinquency_days, min_amount_past_due, min_missed_dues"
    ]


def test_a_stage_that_a_later_stage_always_overrides_is_unreachable(in_tmp: Path) -> None:
    assert problems(
        """
        [[strategy.stages]]
        name = "soft"
        min_delinquency_days = 1

        [[strategy.stages]]
        name = "late_and_large"
        min_delinquency_days = 31
        min_amount_past_due = "500.00"

        [[strategy.stages]]
        name = "late"
        min_delinquency_days = 31
        """,
        stage=False,
    ) == [
        "duecourse.toml:5: stage 'late_and_large' can never be chosen: stage 'late' (later, more severe) "
        "matches whenever 'late_and_large' does"
    ]


def test_stages_with_different_conditions_are_both_reachable(in_tmp: Path) -> None:
    write(
        """
        [[strategy.stages]]
        name = "early"
        min_days_past_due = 5

        [[strategy.stages]]
        name = "two_missed"
        min_missed_dues = 2
        """,
        stage=False,
    )
    assert [s.name for s in load_config(None).terms.stages] == ["early", "two_missed"]


@pytest.mark.parametrize(
    ("stage", "line", "message"),
    [
        pytest.param(
            'name = "current"\nmin_days_past_due = 1',
            2,
            "'current' is the stage of accounts that match no stage; choose another name",
            id="reserved-name",
        ),
        pytest.param(
            'name = "s"\nmin_days_past_due = 0',
            3,
            "min_days_past_due must be a whole number, at least 1, not 0 (0 always holds)",
            id="zero-threshold",
        ),
        pytest.param(
            'name = "s"\nmin_amount_past_due = 100.0',
            3,
            'min_amount_past_due = 100.0 is a TOML float; write amounts as strings, e.g. "100.00", to keep '
            "them exact",
            id="float-amount",
        ),
        pytest.param(
            'name = "s"\nmin_days_overdue = 5',
            3,
            "unknown key 'min_days_overdue'; did you mean 'min_days_past_due'?",
            id="misspelt-condition",
        ),
        pytest.param(
            'nmae = "s"\nmin_days_past_due = 5',
            2,
            "unknown key 'nmae'; did you mean 'name'?",
            id="misspelt-name",
        ),
    ],
)
def test_stage_rules(in_tmp: Path, stage: str, line: int, message: str) -> None:
    found = problems("[[strategy.stages]]\n" + stage + "\n", stage=False)
    assert f"duecourse.toml:{line}: {message}" in found


def test_a_stage_name_used_twice_is_reported_at_the_second(in_tmp: Path) -> None:
    assert problems(
        """
        [[strategy.stages]]
        name = "s"
        min_days_past_due = 5
        [[strategy.stages]]
        name = "s"
        min_missed_dues = 2
        """,
        stage=False,
    ) == ["duecourse.toml:5: stage name 's' is used twice"]


def test_stage_actions_and_channels_are_read(in_tmp: Path) -> None:
    write(
        """
        [channels.email]
        transport = "files"
        dir = "out/email"
        from = "Example Bank <collections@example.com>"

        [channels.post]
        dir = "out/print"

        [[strategy.stages]]
        name = "early"
        min_days_past_due = 1
          [[strategy.stages.actions]]
          channel = "email"
          kind = "overdue_reminder"
          offset_days = 0
          repeat_every_days = 7
          max_times = 3
          at = "10:00"
          fallback = ["letter"]
        """,
        stage=False,
    )
    config = load_config(None)
    (action,) = config.actions_of("early")
    assert action == Action(
        stage="early",
        name="email-overdue_reminder-0",  # unnamed: named by what it does, not by its place
        channel="email",
        kind="overdue_reminder",
        offset_days=0,
        repeat_every_days=7,
        max_times=3,
        at=dt.time(10, 0),
        fallback=("letter",),
    )
    assert config.channels["email"].transport == "files"
    assert config.channels["post"].values == {"dir": "out/print"}


def test_channel_settings_that_would_fail_or_leak_at_send_time_are_refused(in_tmp: Path) -> None:
    found = problems(
        """
        [channels.email]
        host = "smtp.example.com"
        from = "Bank <c@example.com>"
        user = "bank"
        starttls = false

        [channels.sms]
        gateway = "http"
        url = "https://sms.example.com/send"
        source_addr = "Bank"
        body = { message = "{text}" }
        port = 70000

        [channels.push]
        transport = "files"
        dir = "out/push"

        [channels.post]
        dir = "out/print"

        [[strategy.stages]]
        name = "early"
        min_days_past_due = 1
          [[strategy.stages.actions]]
          channel = "email"
          kind = "overdue_reminder"
          fallback = ["letter", "email"]
          [[strategy.stages.actions]]
          name = "a|b"
          channel = "letter"
          kind = "overdue_reminder"
          [[strategy.stages.actions]]
          channel = "email"
          kind = "uk_default_notice"
        """,
        stage=False,
    )
    assert found == [
        "duecourse.toml:5: user is set without starttls or ssl: the password would cross the network "
        "in clear",
        "duecourse.toml:12: port must be at most 65535, not 70000",
        "duecourse.toml:11: body never says {to}: the gateway would not know what to send where",
        "duecourse.toml:16: unknown key 'dir'; expected one of: transport, url, secret_env, timeout_seconds",
        'duecourse.toml:15: transport must be one of "webhook", not "files"',
        "duecourse.toml:27: fallback (letter, email) repeats a channel or names the action's own (email)",
        "duecourse.toml:29: name \"a|b\" must not contain '|'",
        "duecourse.toml:34: uk_default_notice has no email words in any locale (it goes by letter only): "
        "send it by letter",
    ]


def test_every_problem_of_actions_and_channels_is_reported_at_its_line(in_tmp: Path) -> None:
    found = problems(
        """
        [channels.email]
        host = "smtp.example.com"
        password_env = "my password"

        [channels.fax]
        dir = "x"

        [[strategy.stages]]
        name = "early"
        min_days_past_due = 1
          [[strategy.stages.actions]]
          channel = "sms"
          kind = "overdue_reminder"
          at = "25:00"
          [[strategy.stages.actions]]
          channel = "email"
          kind = "overdue_remider"
          max_times = 3
        """,
        stage=False,
    )
    assert found == [
        "duecourse.toml:1: missing key 'from' in [channels.email] (transport smtp)",
        "duecourse.toml:1: missing key 'starttls' in [channels.email] (transport smtp)",
        "duecourse.toml:3: password_env names an environment variable (like DUECOURSE_SMTP_PASSWORD), "
        'not "my password"',
        "duecourse.toml:5: unknown key 'fax'; expected one of: email, sms, push, post",
        'duecourse.toml:14: at must be a local time like "10:00", not "25:00"',
        "duecourse.toml:12: the action sends by sms, but there is no [channels.sms] table: "
        "configure the channel or remove the action",
        "duecourse.toml:17: kind must be one of "
        + ", ".join(f'"{k}"' for k in (*KINDS, *TASK_KINDS, *CONTACT_KINDS))
        + ', not "overdue_remider"; did you mean "overdue_reminder"?',
        "duecourse.toml:18: max_times above 1 needs repeat_every_days",
    ]


def test_a_configuration_without_stages_is_refused(in_tmp: Path) -> None:
    assert problems("", stage=False) == [
        "duecourse.toml:1: no collection stages: add [[strategy.stages]] tables, from least to most severe"
    ]


# ---------------------------------------------------------------- the file as a whole


def test_a_toml_syntax_error_is_reported_at_its_line(in_tmp: Path) -> None:
    assert problems(
        """
        [products.x]
        kind = "card"
        currency = USD
        """
    ) == ["duecourse.toml:3: invalid TOML: Invalid value (column 12)"]


def test_a_near_miss_of_a_section_name_is_a_typo(in_tmp: Path) -> None:
    assert problems('[product.x]\nkind = "card"\n') == [
        "duecourse.toml:1: unknown section 'product'; did you mean 'products'?"
    ]


def test_every_problem_is_reported_at_once(in_tmp: Path) -> None:
    write(
        """
        [bucket_sets.b]
        buckets = [{ name = "A", min = 1, max = 7 }, { name = "B", min = 9 }]

        [products.x]
        kind = "card"
        currency = "USD"
        grace_days = "3"
        bucket_set = "b"
        calendar = "US"

        [products.x.charges]
        card_daily_rate = 0.0005

        [[strategy.stages]]
        name = "never"
        """,
        product=False,
        stage=False,
    )
    with pytest.raises(ProblemsError) as raised:
        load_config(None)
    assert [str(p) for p in raised.value.problems] == [
        "duecourse.toml:2: gap between buckets 'A' (ends at 7) and 'B' (starts at 9); 'B' should start at 8",
        'duecourse.toml:7: grace_days must be a whole number, at least 0, not "3"',
        'duecourse.toml:12: card_daily_rate = 0.0005 is a TOML float; write rates as strings, e.g. "0.0005", '
        "to keep them exact",
        "duecourse.toml:14: stage 'never' has no condition, so every account would be in it; "
        "set at least one of min_days_past_due, min_delinquency_days, min_amount_past_due, min_missed_dues",
    ]
    assert {p.code for p in raised.value.problems} == {
        "config.bucket_gap",
        "config.bad_type",
        "config.float_number",
        "config.stage_no_condition",
    }


# ---------------------------------------------------------------- KeyLines

LOCATED = """\
# a comment with [brackets] and = signs
title = "x # not a comment"            # 2
notes = \"\"\"
[not.a.table]
key = 1
\"\"\"
[products.card]                        # 7
kind = "card"                          # 8
charges.late_fee.mode = "flat"         # 9
"quoted key".x = 1                     # 10

[[strategy.stages]]                    # 12
name = "a"
[[strategy.stages.actions]]            # 14
channel = "sms"
[[strategy.stages]]                    # 16
name = "b"                             # 17
[[strategy.stages.actions]]            # 18

[bucket_sets.x]
buckets = [
    # a comment inside an array
    { name = "A", min = 1,
      max = 7 },                       # 24 (a newline inside an inline table, as TOML 1.1 allows)
    {name="B",min=8},                  # 25
]
matrix = [[1, 2], [3,
  4]]                                  # 28
"""


@pytest.mark.parametrize(
    ("path", "line"),
    [
        pytest.param(("title",), 2, id="key"),
        pytest.param(("products", "card"), 7, id="table-header"),
        pytest.param(("products",), 7, id="implicit-parent"),
        pytest.param(("products", "card", "kind"), 8, id="key-in-table"),
        pytest.param(("products", "card", "charges", "late_fee", "mode"), 9, id="dotted-key"),
        pytest.param(("products", "card", "charges"), 9, id="dotted-parent"),
        pytest.param(("products", "card", "quoted key", "x"), 10, id="quoted-key"),
        pytest.param(("strategy", "stages", 0), 12, id="array-of-tables-first"),
        pytest.param(("strategy", "stages", 0, "actions", 0), 14, id="nested-array-of-tables"),
        pytest.param(("strategy", "stages", 1), 16, id="array-of-tables-second"),
        pytest.param(("strategy", "stages", 1, "name"), 17, id="key-in-second-element"),
        pytest.param(("strategy", "stages", 1, "actions", 0), 18, id="nested-under-second"),
        pytest.param(("bucket_sets", "x", "buckets", 0), 23, id="inline-table-item"),
        pytest.param(("bucket_sets", "x", "buckets", 0, "max"), 24, id="inline-key-on-next-line"),
        pytest.param(("bucket_sets", "x", "buckets", 1, "min"), 25, id="compact-inline-table"),
        pytest.param(("bucket_sets", "x", "matrix", 1, 1), 28, id="nested-array"),
        pytest.param(("products", "card", "missing"), 7, id="absent-key-falls-back-to-table"),
        pytest.param(("nowhere",), 1, id="unknown-path"),
    ],
)
def test_key_lines_find_each_key(path: tuple[str | int, ...], line: int) -> None:
    assert KeyLines(LOCATED).line(path) == line


def _paths(value: object, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every key path of parsed TOML, array items included."""
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in [(*path, key), *_paths(item, (*path, key))]]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in [(*path, i), *_paths(item, (*path, i))]]
    return []


@pytest.mark.parametrize("name", ["duecourse.toml", "bucket_sets.toml"])
def test_key_lines_find_every_key_of_the_shipped_files(name: str) -> None:
    text = (resources.files("duecourse.defaults") / name).read_text(encoding="utf-8")
    lines = text.splitlines()
    key_lines = KeyLines(text)
    for path in _paths(tomllib.loads(text)):
        if isinstance(path[-1], str):
            assert path[-1] in lines[key_lines.line(path) - 1], path


@given(st.text(alphabet="[]{}=\"'#.,\n ab1\\", max_size=60))
def test_key_lines_end_on_any_text(text: str) -> None:
    assert KeyLines(text).line(("a", "b", 0)) >= 1


def test_an_action_to_a_third_party_is_checked_at_its_line(in_tmp: Path) -> None:
    found = problems(
        """
        [channels.sms]
        gateway = "files"
        dir = "sms"
        contact_source_addr = "8800"

        [channels.post]
        dir = "print"

        [governor]
        third_party_contact_in = ["UK", "FR"]

        [[strategy.stages]]
        name = "late"
        min_days_past_due = 60
          [[strategy.stages.actions]]
          channel = "letter"
          kind = "location_request"
          to = "contact"
          [[strategy.stages.actions]]
          channel = "sms"
          kind = "overdue_reminder"
          to = "contact"
          fallback = ["letter"]
          [[strategy.stages.actions]]
          channel = "sms"
          kind = "location_request"
          [[strategy.stages.actions]]
          channel = "sms"
          kind = "location_request"
          to = "neighbour"
          [[strategy.stages.actions]]
          name = "ask"
          channel = "sms"
          kind = "location_request"
          to = "contact"
        """,
        stage=False,
    )
    assert found == [
        "duecourse.toml:16: a third party is contacted by sms or email only, not letter",
        "duecourse.toml:21: a third party gets location_request only, never overdue_reminder: "
        "nothing about the debt goes to anyone but the customer (US-3P-01, CN-COL-07 Art 18, UK-CONC-04)",
        'duecourse.toml:23: an action to = "contact" has no fallback',
        "duecourse.toml:26: location_request is written for a third party the customer named: "
        'add to = "contact"',
        'duecourse.toml:30: to must be one of "customer", "contact", not "neighbour"',
        "duecourse.toml:10: third_party_contact_in must be a list of jurisdictions among CN, US, UK, "
        "not an array",
    ]


def test_an_action_to_contacts_needs_a_contact_sender_that_names_no_debt(in_tmp: Path) -> None:
    found = problems(
        """
        [channels.sms]
        gateway = "files"
        dir = "sms"

        [channels.email]
        transport = "files"
        dir = "email"
        from = "Example Bank Collections <collections@example.com>"
        contact_from = "Example Bank <collections@example.com>"
        contact_reply_to = "Overdue Team <hello@example.com>"

        [[strategy.stages]]
        name = "late"
        min_days_past_due = 60
          [[strategy.stages.actions]]
          name = "text"
          channel = "sms"
          kind = "location_request"
          to = "contact"
          [[strategy.stages.actions]]
          name = "mail"
          channel = "email"
          kind = "location_request"
          to = "contact"
        """,
        stage=False,
    )
    assert found == [
        'duecourse.toml:9: contact_from "Example Bank <collections@example.com>" reveals the debt to a '
        "third party with 'collect' (US-3P-01, CN-COL-07 Art 18, EU-GDPR-01): name the institution only",
        'duecourse.toml:10: contact_reply_to "Overdue Team <hello@example.com>" reveals the debt to a '
        "third party with 'Overdue' (US-3P-01, CN-COL-07 Art 18, EU-GDPR-01): name the institution only",
        'duecourse.toml:17: an action to = "contact" on sms needs [channels.sms] contact_source_addr: the '
        "customer's sender may reveal the debt to the contact (US-3P-01, CN-COL-07 Art 18)",
    ]


# ------------------------------------------------------------- a third-party collector's location agent

AGENT = """
[location_agent.US]
name = "Jordan Lee"
phone = "+12125550147"
email_from = "Jordan Lee <jordan.lee@locate.example>"
sms_from = "+12125550147"
link_base = "https://locate.example"
"""


def _line_of(text: str, needle: str) -> int:
    """The line of the last ``needle`` (the test's table comes after the default's comments)."""
    return text[: text.rindex(needle)].count("\n") + 1


def test_a_location_agent_is_read_for_the_us() -> None:
    config = config_from_text(default_config_text() + AGENT)
    agent = config.location_agents["US"]
    assert (agent.name, agent.phone, agent.sms_from) == ("Jordan Lee", "+12125550147", "+12125550147")
    assert (agent.email_from, agent.link_base) == (
        "Jordan Lee <jordan.lee@locate.example>",
        "https://locate.example",
    )
    assert config_from_text(default_config_text()).location_agents == {}


def test_a_location_agent_names_neither_the_employer_nor_a_debt_and_is_us_only(in_tmp: Path) -> None:
    text = default_config_text() + (
        "\n[location_agent.US]\n"
        'name = "Jordan Lee, Example Bank"\n'
        'phone = "212-555-0147"\n'
        'email_from = "Jordan Lee <jordan.lee@example.com>"\n'
        'sms_from = "+12125550147"\n'
        'link_base = "https://debt-help.example"\n'
        "\n[location_agent.CN]\n"
        'name = "李雷"\n'
    )
    Path("duecourse.toml").write_text(text, encoding="utf-8")
    found = [str(p) for p in check_config(Path("duecourse.toml"))]
    employer = "names his employer to a third party only if expressly asked (12 CFR 1006.10(b)(1), §1692b(1))"
    phone, name = _line_of(text, 'phone = "212'), _line_of(text, 'name = "Jordan Lee, Example')
    mail, base, cn = (
        _line_of(text, "email_from = "),
        _line_of(text, "link_base = "),
        _line_of(text, "[location_agent.CN]"),
    )
    assert found == [
        f'duecourse.toml:{phone}: phone "212-555-0147" is not an E.164 phone number (like +12125550147)',
        f"duecourse.toml:{name}: name \"Jordan Lee, Example Bank\" names the employer ('Example Bank'): a "
        f"collector {employer}",
        f'duecourse.toml:{mail}: email_from "Jordan Lee <jordan.lee@example.com>" names the employer '
        f"('example.com'): a collector {employer}",
        f'duecourse.toml:{base}: link_base "https://debt-help.example" reveals the debt to a third party '
        "with 'debt' (US-3P-01: 12 CFR 1006.10(b)(2), 1006.22(f))",
        f"duecourse.toml:{cn}: [location_agent.CN]: a location agent speaks for a third-party collector, "
        "whose location requests only US law treats apart (12 CFR 1006.10(b)); elsewhere the institution's "
        "own contact senders are used",
    ]


@pytest.mark.parametrize(
    ("key", "number"),
    [("phone", "+18001234567"), ("sms_from", "+18001234567"), ("phone", "+441134960000")],
    ids=["us-hotline-to-call", "us-hotline-as-sender", "uk-hotline-to-call"],
)
def test_a_location_agents_number_is_not_the_employers_hotline(in_tmp: Path, key: str, number: str) -> None:
    """The contact who calls the agent back must not reach the bank's own line, which answers in its name."""
    text = default_config_text() + AGENT.replace(f'{key} = "+12125550147"', f'{key} = "{number}"')
    Path("duecourse.toml").write_text(text, encoding="utf-8")
    found = [str(p) for p in check_config(Path("duecourse.toml"))]
    line = _line_of(text, f'{key} = "{number}"')
    assert len(found) == 1, found
    assert found[0].startswith(f'duecourse.toml:{line}: {key} "{number}" is the hotline of the employer')


def test_a_payment_is_not_said_to_restart_the_limitation_where_the_law_says_it_does_not() -> None:
    """New York's CPLR 214-i: a payment does not revive a consumer credit debt's time to sue; the NY
    disclosure the letters carry says so too."""
    text = default_config_text() + "\n[governor]\nlimitation_years = { NY = 3 }\n"
    assert config_from_text(
        text + 'limitation_restarts_on_payment = ["NJ"]\n'
    ).governor.limitation_restarts_on_payment == ("NJ",)
    with pytest.raises(ProblemsError) as caught:
        config_from_text(text + 'limitation_restarts_on_payment = ["NJ", "NY"]\n')
    (problem,) = caught.value.problems
    assert problem.message == (
        "limitation_restarts_on_payment names NY, where a payment does not start the period again: "
        "CPLR 214-i (Consumer Credit Fairness Act, in force 2022-04-07): a payment on a consumer credit "
        "debt does not revive or extend the time to sue on it"
    )
