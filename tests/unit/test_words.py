"""人民币 in capital numerals (大写), as the 支付结算办法 writes them: zeros, 角/分 and 整."""

from __future__ import annotations

from decimal import Decimal

import pytest

from duecourse.domain.words import cny_capital


@pytest.mark.parametrize(
    ("amount", "words"),
    [
        pytest.param("0.05", "人民币伍分", id="fen-only"),
        pytest.param("0.50", "人民币伍角整", id="jiao-only"),
        pytest.param("0.00", "人民币零元整", id="zero"),
        pytest.param("10.00", "人民币壹拾元整", id="ten-keeps-yi"),
        pytest.param("15.00", "人民币壹拾伍元整", id="fifteen"),
        pytest.param("1.05", "人民币壹元零伍分", id="zero-jiao-between-yuan-and-fen"),
        pytest.param("3070.50", "人民币叁仟零柒拾元伍角整", id="the-issue-example"),
        pytest.param("1001.00", "人民币壹仟零壹元整", id="two-zeros-one-ling"),
        pytest.param("10010.00", "人民币壹万零壹拾元整", id="zero-after-wan"),
        pytest.param("101000.00", "人民币壹拾万壹仟元整", id="no-zero-before-thousands"),
        pytest.param("100000.10", "人民币壹拾万元壹角整", id="issue-100000.10"),
        pytest.param("1000001.00", "人民币壹佰万零壹元整", id="issue-1000001.00"),
        pytest.param("1000000.00", "人民币壹佰万元整", id="round-million"),
        pytest.param("20301.07", "人民币贰万零叁佰零壹元零柒分", id="zeros-everywhere"),
        pytest.param("1010101.01", "人民币壹佰零壹万零壹佰零壹元零壹分", id="alternating"),
        pytest.param("100000000.01", "人民币壹亿元零壹分", id="yi-and-fen"),
        pytest.param("1100000000.00", "人民币壹拾壹亿元整", id="yi-group"),
        pytest.param("315.00", "人民币叁佰壹拾伍元整", id="inner-ten"),
    ],
)
def test_capital_numerals(amount: str, words: str) -> None:
    assert cny_capital(Decimal(amount)) == words


def test_a_negative_amount_has_no_capital_form() -> None:
    with pytest.raises(ValueError, match="negative"):
        cny_capital(Decimal("-1.00"))


def test_amounts_are_rounded_half_up_to_the_fen() -> None:
    assert cny_capital(Decimal("0.005")) == "人民币壹分"
