"""The [issuer] and [letters] sections: every problem at its line, legal minimum deadlines kept."""

from __future__ import annotations

from textwrap import dedent

from duecourse.config import config_from_text, default_config_text
from duecourse.domain.errors import ProblemsError

STAGES = """
[[strategy.stages]]
name = "M1"
min_days_past_due = 1
"""


def problems(text: str) -> list[str]:
    try:
        config_from_text(dedent(text) + STAGES, "duecourse.toml")
    except ProblemsError as exc:
        return [str(p) for p in exc.problems]
    return []


def test_the_example_configuration_has_an_issuer_per_jurisdiction() -> None:
    config = config_from_text(default_config_text())
    assert sorted(config.issuers) == ["CN", "UK", "US"]
    assert config.issuers["CN"].repayment_accounts[0].number == "0200 0011 2233 4455 667"
    assert config.letters.deadlines["overdue_reminder"].days == 10


def test_issuer_problems_are_reported_at_their_lines() -> None:
    found = problems(
        """
        [issuer.CN]
        legal_name = "示例银行"
        address = "北京"
        portal_url = "http://portal.example.cn"

        [issuer.XX]
        legal_name = "?"
        """
    )
    assert "duecourse.toml:2: missing key 'hotline' in [issuer.CN]" in found
    assert any(p.startswith("duecourse.toml:4: address must be an array of lines") for p in found)
    assert 'duecourse.toml:5: portal_url must start with https://, not "http://portal.example.cn"' in found
    assert any(p.startswith("duecourse.toml:7: [issuer.XX] names no jurisdiction") for p in found)


def test_a_deadline_below_the_legal_minimum_is_refused() -> None:
    found = problems(
        """
        [letters.deadlines.uk_default_notice]
        days = 7

        [letters.deadlines.final_demand]
        days = 15
        minimum = 3

        [letters.deadlines.overdue_remindr]
        days = 10
        """
    )
    assert [p for p in found if "no products" not in p] == [
        "duecourse.toml:3: uk_default_notice deadline of 7 calendar days is shorter than the minimum of 14",
        "duecourse.toml:7: the legal minimum for final_demand is 10 business days; "
        "it cannot be lowered or counted in other days",
        "duecourse.toml:9: unknown key 'overdue_remindr'; did you mean 'overdue_reminder'?",
    ]
