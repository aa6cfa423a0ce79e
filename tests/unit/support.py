"""Terms the unit tests share: the Chinese M-bucket set, three stages, and a card and a loan product."""

from __future__ import annotations

from decimal import Decimal

from duecourse.domain.terms import Bucket, BucketSet, Charges, LateFee, Product, Stage, Terms

CN_M = BucketSet(
    "cn_m",
    (
        Bucket("M1", 1, 30),
        Bucket("M2", 31, 60),
        Bucket("M3", 61, 90),
        Bucket("M4", 91, 120),
        Bucket("M5", 121, 150),
        Bucket("M6", 151, 180),
        Bucket("M7+", 181, None),
    ),
)
STAGES = (
    Stage("early", min_days_past_due=1),
    Stage("M1", min_delinquency_days=1),
    Stage("M2", min_delinquency_days=31),
)
CN_ORDER = ("penalty", "fee", "interest", "principal")


def card(
    mode: str = "full_amount", fee: LateFee | None = None, grace: int = 0, code: str = "card_cn"
) -> Product:
    """A CNY card charging card interest at 0.05 % a day in ``mode`` and the late fee ``fee``."""
    charges = Charges(card_interest_mode=mode, card_daily_rate=Decimal("0.0005"), late_fee=fee or LateFee())
    return Product(code, "card", "CNY", grace, "cn_m", "CN", CN_ORDER, charges)


def loan(
    rate: str = "0",
    grace: int = 0,
    order: tuple[str, ...] = CN_ORDER,
    code: str = "loan_cn",
    currency: str = "CNY",
) -> Product:
    """An instalment loan charging penalty interest at the daily ``rate``."""
    charges = Charges(penalty_daily_rate=Decimal(rate))
    return Product(code, "instalment_loan", currency, grace, "cn_m", "CN", order, charges)


def terms(*products: Product, stages: tuple[Stage, ...] = STAGES) -> Terms:
    return Terms({p.code: p for p in products}, {"cn_m": CN_M}, stages)
