"""Sample accounts the clarity lint renders every template with: one customer per jurisdiction.

The dates are the worked examples' (rules.md): a CN letter dated Fri 2025-09-26, whose 10th working day is
Thu 2025-10-16 across the National Day holiday and its make-up Sunday (E-CN-5); a US notice mailed Mon
2025-11-03, whose validation period ends 2025-12-10 (E-US-2); a UK letter in March 2025 after two missed
monthly payments (E-UK-1).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from duecourse.domain.model import Account, Customer, Due, Payment
from duecourse.domain.terms import Product
from duecourse.letters import LetterError
from duecourse.letters.data import LetterInputs, PlanRow


@dataclass(frozen=True, slots=True)
class Sample:
    customer: Customer
    account: Account
    dues: list[Due]
    payments: list[Payment]
    letter_date: dt.date
    inputs: LetterInputs


def _product_for(products: dict[str, Product], jurisdiction: str) -> Product:
    for product in products.values():
        if product.calendar == jurisdiction:
            return product
    raise LetterError(f"no product with calendar {jurisdiction!r} in the configuration to make a sample with")


def sample_for(jurisdiction: str, products: dict[str, Product]) -> Sample:
    """A sample account in ``jurisdiction`` on the first configured product of its calendar."""
    product = _product_for(products, jurisdiction)
    d = dt.date
    if jurisdiction == "CN":
        customer = Customer(
            "SC1",
            "王芳",
            "zh-CN",
            "Asia/Shanghai",
            "CN",
            address_line1="建国路88号院3号楼2单元1201室",
            city="朝阳区",
            region="北京市",
            postal_code="100022",
            country="CN",
        )
        letter_date = d(2025, 9, 26)
        first, second = d(2025, 8, 23), d(2025, 10, 23)
        amount, minimum = Decimal("3000.00"), Decimal("300.00")
    elif jurisdiction == "US":
        customer = Customer(
            "SU1",
            "Person A",
            "en-US",
            "America/New_York",
            "US",
            address_line1="2323 Park Street",
            address_line2="Apartment 342",
            city="Bethesda",
            region="MD",
            postal_code="20815",
            country="US",
        )
        letter_date = d(2025, 11, 3)
        first, second = d(2025, 9, 25), d(2025, 11, 25)
        amount, minimum = Decimal("2234.56"), Decimal("75.00")
    else:
        customer = Customer(
            "SK1",
            "Jane Doe",
            "en-GB",
            "Europe/London",
            "UK",
            address_line1="12 Acacia Avenue",
            city="Leeds",
            postal_code="LS6 2AB",
            country="GB",
        )
        letter_date = d(2025, 3, 10)
        first, second = d(2025, 2, 1), d(2025, 4, 1)
        amount, minimum = Decimal("200.00"), Decimal("200.00")
    account = Account(
        f"{customer.customer_id}-4000123412345678", customer.customer_id, product.code, d(2023, 1, 1)
    )
    aid = account.account_id
    if product.kind == "card":
        dues = [
            Due(aid, "S1", first, amount, "principal", minimum, first - dt.timedelta(days=24)),
            Due(aid, "S2", second, amount, "principal", minimum, second - dt.timedelta(days=24)),
        ]
    else:
        dues = [
            Due(aid, "I0", first - dt.timedelta(days=28), amount, "principal"),
            Due(aid, "I1", first, amount, "principal"),
            Due(aid, "I2", second, amount, "principal"),
        ]
    inputs = LetterInputs(
        plan_id="P-2025-0001",
        plan_rows=tuple(
            PlanRow(letter_date + dt.timedelta(days=30 * n), Decimal("150.00")) for n in (1, 2, 3)
        ),
        promise_amount=Decimal("150.00"),
        promise_date=letter_date + dt.timedelta(days=7),
        dispute_id="D-2025-0042",
        dispute_received=letter_date - dt.timedelta(days=3),
        dispute_subject="amount",
        dispute_outcome="corrected",
        dispute_reason=(
            "您按时支付的一笔款项曾被延迟入账，相关费用已全部退回。"
            if jurisdiction == "CN"
            else "A payment made on time had been applied late. We have removed the charges on it."
        ),
    )
    return Sample(customer, account, dues, [], letter_date, inputs)
