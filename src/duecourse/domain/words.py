"""Amounts in words: 人民币 in Chinese capital numerals (大写), as written on cheques and letters.

The rules of writing (中国人民银行《支付结算办法》附一《正确填写票据和结算凭证的基本规定》, §2-§3):

* Digits are 零壹贰叁肆伍陆柒捌玖, units 拾佰仟 inside a group of four, and 万, 亿 for the groups.
* The yuan part ends with 元; a 角 and a 分 follow when present. When there is no 分 the amount ends with
  整 (人民币叁仟零柒拾元伍角整, 人民币拾元整); when there is a 分 no 整 is written.
* Zeros between digits are written once, as one 零, however many there are (壹仟零壹元). A zero group
  between two groups is one 零 as well (壹佰万零壹元). Zeros at the end of the yuan part are not written.
* With yuan and 分 but no 角, a 零 stands in the 角's place (壹元零伍分); under one yuan the yuan part is
  left out (伍分, 伍角整).
* A number beginning with 壹拾 keeps the 壹 (壹拾元整): the rules ask for 壹 before 拾 so that nothing can
  be written in front of it.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

DIGITS = "零壹贰叁肆伍陆柒捌玖"
UNITS = ("", "拾", "佰", "仟")
GROUPS = ("", "万", "亿", "万亿")
PREFIX = "人民币"


def _group(number: int) -> str:
    """A number 1..9999 in capitals, zeros inside it written once; leading and trailing zeros left out."""
    out: list[str] = []
    zero = False
    for position in range(3, -1, -1):
        digit = number // 10**position % 10
        if digit == 0:
            zero = bool(out)
            continue
        if zero:
            out.append("零")
            zero = False
        out.append(DIGITS[digit] + UNITS[position])
    return "".join(out)


def _yuan(number: int) -> str:
    groups: list[int] = []
    while number:
        number, rest = divmod(number, 10_000)
        groups.append(rest)
    if len(groups) > len(GROUPS):
        raise ValueError("amount too large for capital numerals (below 10^16 yuan)")
    out: list[str] = []
    pending_zero = False
    for index in range(len(groups) - 1, -1, -1):
        value = groups[index]
        if value == 0:
            pending_zero = bool(out)
            continue
        # A group under 1000 after a higher group reads with a 零 before it (壹万零伍佰).
        if out and (pending_zero or value < 1000):
            out.append("零")
        pending_zero = False
        out.append(_group(value) + GROUPS[index])
    return "".join(out)


def cny_capital(amount: Decimal, *, prefix: str = PREFIX) -> str:
    """``Decimal("3070.50")`` -> ``人民币叁仟零柒拾元伍角整``; to the 分, half up; negative is refused."""
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise ValueError(f"not an exact amount: {amount!r}")
    if amount < 0:
        raise ValueError(f"a negative amount has no capital form: {amount}")
    fen_total = int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    yuan, cents = divmod(fen_total, 100)
    jiao, fen = divmod(cents, 10)
    if fen_total == 0:
        return f"{prefix}零元整"
    out = _yuan(yuan) + "元" if yuan else ""
    if jiao:
        out += DIGITS[jiao] + "角"
    elif fen and yuan:
        out += "零"
    if fen:
        out += DIGITS[fen] + "分"
    else:
        out += "整"
    return prefix + out
