"""Champion/challenger: stable arms by hash, and the ``[[strategy.experiments]]``, ``[governor]`` and
``[costs]`` tables checked at load with file:line problems."""

from __future__ import annotations

import textwrap
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from duecourse.config import check_config, config_from_text
from duecourse.domain.strategy import ASSIGNMENT_BUCKETS, Experiment, Variant, assignment_bucket

BASE = """
[products.base]
kind = "instalment_loan"
currency = "CNY"
grace_days = 0
bucket_set = "cn_m"
calendar = "CN"

[[strategy.stages]]
name = "M1"
min_days_past_due = 1

  [[strategy.stages.actions]]
  name = "text"
  channel = "sms"
  kind = "overdue_reminder"
  experiment = "sms-first"
  variants = ["challenger"]

[channels.sms]
gateway = "files"
dir = "out/sms"
"""
EXPERIMENT = """
[[strategy.experiments]]
name = "sms-first"
stages = ["M1"]
variants = [
  { name = "champion", percent = 80 },
  { name = "challenger", percent = 15 },
  { name = "holdout", percent = 5, holdout = true },
]
"""
ARMS = (Variant("champion", 80), Variant("challenger", 15), Variant("holdout", 5, holdout=True))


def test_an_accounts_arm_is_stable_and_the_split_follows_the_percentages() -> None:
    experiment = Experiment("sms-first", ("M1",), ARMS)
    # SHA-256 of "sms-first|A000001", its first 8 bytes big-endian, modulo 10,000
    assert (
        assignment_bucket("sms-first", "A000001")
        == int.from_bytes(__import__("hashlib").sha256(b"sms-first|A000001").digest()[:8], "big")
        % ASSIGNMENT_BUCKETS
    )
    arms = Counter(experiment.variant_of(f"A{n:06d}").name for n in range(20_000))
    assert abs(arms["champion"] - 16_000) < 400
    assert abs(arms["challenger"] - 3_000) < 300
    assert abs(arms["holdout"] - 1_000) < 200
    assert experiment.variant_of("A000001") == experiment.variant_of("A000001")
    # another experiment splits independently: the same accounts land elsewhere
    other = Experiment("letters-later", (), ARMS)
    moved = sum(experiment.variant_of(f"A{n:06d}") != other.variant_of(f"A{n:06d}") for n in range(2_000))
    assert moved > 400


def test_experiments_costs_and_governor_settings_load() -> None:
    text = (
        BASE + EXPERIMENT + '\n[governor]\ndaily_contacts_per_customer = 2\nthird_party_products = ["base"]\n'
    )
    text += '\n[costs]\ncurrency = "CNY"\nsms_segment = "0.045"\nletter = "1.20"\n'
    config = config_from_text(text)
    (experiment,) = config.experiments
    assert experiment == Experiment("sms-first", ("M1",), ARMS)
    (action,) = config.actions
    assert (action.experiment, action.variants) == ("sms-first", ("challenger",))
    assert config.governor.daily_contacts_per_customer == 2
    assert config.governor.third_party_products == ("base",)
    assert config.costs.currency == "CNY"
    assert config.costs.sms_segment == Decimal("0.045")
    assert config.costs.per_message == {"letter": Decimal("1.20")}


def _problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "duecourse.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return [str(p) for p in check_config(path)]


def test_bad_experiments_are_reported_with_their_lines(tmp_path: Path) -> None:
    found = _problems(tmp_path, BASE + EXPERIMENT.replace("percent = 5,", "percent = 10,"))
    # the experiment's own problem, and no second one for the action that names it
    assert [p.split(": ", 1)[1] for p in found] == ["the variants' percents add up to 105, not 100"]
    assert ":27: " in found[0]
    typo = BASE.replace('variants = ["challenger"]', 'variants = ["challanger"]')
    found = _problems(tmp_path, typo + EXPERIMENT)
    assert [p.split(": ", 1)[1] for p in found] == [
        "variant 'challanger' is not an arm of experiment 'sms-first' (champion, challenger, holdout)"
    ]
    assert ":18: " in found[0]  # the variants line of the action


def test_an_action_for_the_holdout_arm_or_an_unknown_experiment_is_refused(tmp_path: Path) -> None:
    held = _problems(tmp_path, BASE.replace('["challenger"]', '["holdout"]') + EXPERIMENT)
    assert any("variant 'holdout' is held out" in p for p in held)
    unknown = _problems(tmp_path, BASE)
    assert any(
        "experiment 'sms-first' is not a [[strategy.experiments]] (none is defined)" in p for p in unknown
    )
    alone = _problems(tmp_path, BASE.replace('  variants = ["challenger"]\n', "") + EXPERIMENT)
    assert any("names both experiment and variants" in p for p in alone)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            "[governor]\ndaily_contacts_per_customer = 0\n",
            "daily_contacts_per_customer must be a whole number, at least 1, not 0",
        ),
        (
            '[governor]\nthird_party_products = ["bsae"]\n',
            "third_party_products names 'bsae', which is not a product; did you mean 'base'?",
        ),
        ('[costs]\ncurrency = "CNY"\nsms_segment = 0.05\n', "sms_segment = 0.05 is a TOML float"),
        ('[costs]\nemail = "0.01"\n', "missing key 'currency' in [costs]"),
    ],
)
def test_bad_governor_and_cost_settings_are_reported(tmp_path: Path, table: str, message: str) -> None:
    found = _problems(tmp_path, BASE + EXPERIMENT + "\n" + table)
    assert any(message in p for p in found), found


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            '[[strategy.pre_due]]\nchannel = "sms"\noffset_days = 3\n',
            "offset_days counts days before the due date here: -1 or less, not 3",
        ),
        (
            '[[strategy.pre_due]]\nchannel = "sms"\nkind = "final_demand"\noffset_days = -3\n',
            "a reminder before the due date is kind pre_due, not final_demand",
        ),
        (
            '[[strategy.pre_due]]\nchannel = "sms"\noffset_days = -3\nrepeat_every_days = 1\n',
            "unknown key 'repeat_every_days'",
        ),
    ],
)
def test_bad_reminders_before_the_due_date_are_reported(tmp_path: Path, table: str, message: str) -> None:
    found = _problems(tmp_path, BASE + EXPERIMENT + "\n" + table)
    assert any(message in p for p in found), found


def test_a_reminder_before_the_due_date_loads() -> None:
    config = config_from_text(
        BASE + EXPERIMENT + '\n[[strategy.pre_due]]\nchannel = "sms"\noffset_days = -3\n'
    )
    (action,) = config.pre_due
    assert (action.stage, action.name, action.kind, action.offset_days) == (
        "current",
        "sms-pre_due--3",
        "pre_due",
        -3,
    )
