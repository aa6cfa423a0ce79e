"""Money is exact: never a float.

Amounts are ``Decimal`` built from ``str``, ``int`` or ``Decimal``; a float is refused. Each currency has
its minor digits and one named rounding rule; a value is rounded once, where a rule says so, by
``round_money``. Bulk columns hold integer minor units (``to_minor`` / ``from_minor``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, InvalidOperation

# The named rounding rules. Charges in CNY, USD and GBP are rounded half up to the minor unit, as the
# banks' published worked examples do (E-CN-1 .. E-CN-4); HALF_EVEN is offered for currencies that need it.
HALF_UP = ROUND_HALF_UP
HALF_EVEN = ROUND_HALF_EVEN


@dataclass(frozen=True, slots=True)
class CurrencySpec:
    """A currency's minor digits and its rounding rule name."""

    code: str
    minor_digits: int
    rounding: str


CURRENCIES: dict[str, CurrencySpec] = {
    "CNY": CurrencySpec("CNY", 2, HALF_UP),
    "USD": CurrencySpec("USD", 2, HALF_UP),
    "GBP": CurrencySpec("GBP", 2, HALF_UP),
    "EUR": CurrencySpec("EUR", 2, HALF_UP),
    "HKD": CurrencySpec("HKD", 2, HALF_UP),
    "JPY": CurrencySpec("JPY", 0, HALF_UP),
}


class MoneyError(ValueError):
    """An amount that cannot be money: a float, not a number, or two currencies mixed."""


def currency_spec(code: str) -> CurrencySpec:
    try:
        return CURRENCIES[code]
    except KeyError:
        raise MoneyError(f"unknown currency {code!r}; known: {', '.join(sorted(CURRENCIES))}") from None


def to_decimal(value: str | int | Decimal) -> Decimal:
    """A Decimal from a string, int or Decimal; floats are refused."""
    if isinstance(value, bool) or isinstance(value, float):
        raise MoneyError(f"refusing {type(value).__name__} {value!r} as money: pass a string or Decimal")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise MoneyError(f"{value!r} is not a decimal number") from None
    else:
        raise MoneyError(f"refusing {type(value).__name__} as money")
    if not result.is_finite():
        raise MoneyError(f"{value!r} is not a finite number")
    return result


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-currency_spec(currency).minor_digits)


def round_money(value: Decimal, currency: str) -> Decimal:
    """Round once to the currency's minor unit by its named rule."""
    spec = currency_spec(currency)
    return value.quantize(quantum(currency), rounding=spec.rounding)


def to_minor(value: Decimal, currency: str) -> int:
    """Integer minor units of an amount that is already exact to the minor unit."""
    spec = currency_spec(currency)
    scaled = value.scaleb(spec.minor_digits)
    if scaled != scaled.to_integral_value():
        raise MoneyError(f"{value} has more than {spec.minor_digits} decimal places for {currency}")
    return int(scaled)


def from_minor(minor: int, currency: str) -> Decimal:
    """The Decimal amount of integer minor units, with the currency's digits (100 -> 1.00)."""
    spec = currency_spec(currency)
    return Decimal(minor).scaleb(-spec.minor_digits).quantize(quantum(currency))


def format_amount(value: Decimal, currency: str) -> str:
    """Plain decimal with the currency's minor digits ("1000.00")."""
    return str(value.quantize(quantum(currency)))


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount in one currency."""

    amount: Decimal
    currency: str

    @classmethod
    def of(cls, value: str | int | Decimal, currency: str) -> Money:
        currency_spec(currency)
        return cls(to_decimal(value), currency)

    def _check(self, other: Money) -> None:
        if other.currency != self.currency:
            raise MoneyError(f"cannot combine {self.currency} and {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._check(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._check(other)
        return Money(self.amount - other.amount, self.currency)

    def rounded(self) -> Money:
        return Money(round_money(self.amount, self.currency), self.currency)

    def __str__(self) -> str:
        return f"{format_amount(self.amount, self.currency)} {self.currency}"
