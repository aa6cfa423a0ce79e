"""Product terms, bucket sets and collection stages: the configuration the rules read.

These are validated values (``config.py`` builds them from ``duecourse.toml`` and reports every problem
with its file:line); the rules in ``delinquency`` and the set-based engine take them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from duecourse.domain.model import COMPONENTS

PRODUCT_KINDS = ("card", "instalment_loan")
CARD_INTEREST_MODES = ("none", "full_amount", "unpaid_portion")
LATE_FEE_MODES = ("none", "percent", "flat")


@dataclass(frozen=True, slots=True)
class Bucket:
    """A named range of delinquency days, ``min`` to ``max`` inclusive; ``max`` None is open-ended."""

    name: str
    min: int
    max: int | None


@dataclass(frozen=True, slots=True)
class BucketSet:
    """Buckets in order, without gaps or overlaps, starting at 1 day; 0 days is ``current_name``."""

    name: str
    buckets: tuple[Bucket, ...]
    current_name: str = "current"

    def bucket_for(self, delinquency_days: int) -> str:
        if delinquency_days <= 0:
            return self.current_name
        for bucket in self.buckets:
            if bucket.min <= delinquency_days and (bucket.max is None or delinquency_days <= bucket.max):
                return bucket.name
        # Validation guarantees the buckets cover 1..infinity; reaching here means they were built by hand.
        raise ValueError(f"bucket set {self.name} does not cover {delinquency_days} days")


@dataclass(frozen=True, slots=True)
class LateFee:
    """违约金 or a late fee, charged once per missed due date on the unpaid required amount.

    Attributes:
        mode: ``none``, ``percent`` (of the unpaid minimum, CN-FEE-05) or ``flat``.
        percent: e.g. ``Decimal("0.05")`` for 5 %.
        floor / cap: bounds applied after rounding (``None`` for none).
        flat: the amount in ``flat`` mode.
        limit_to_minimum: never more than the minimum payment that was due (Reg Z 1026.52(b)).
    """

    mode: str = "none"
    percent: Decimal = Decimal(0)
    floor: Decimal | None = None
    cap: Decimal | None = None
    flat: Decimal = Decimal(0)
    limit_to_minimum: bool = False


@dataclass(frozen=True, slots=True)
class Charges:
    """The charges duecourse accrues for a product (left at zero when the bank bills them itself).

    Attributes:
        penalty_daily_rate: 罚息, a daily rate on overdue principal (contract rate × 1.5, CN-LOAN-01).
        card_interest_mode: ``none``, ``full_amount`` (全额计息 from the posting date, CN-FEE-06) or
            ``unpaid_portion``.
        card_daily_rate: the card's daily interest rate (0.0005 = 0.05 %/day).
        late_fee: see ``LateFee``.
    Interest never accrues on fees or penalties (PBoC 银发〔2016〕111号 §3): only principal dues bear it.
    """

    penalty_daily_rate: Decimal = Decimal(0)
    card_interest_mode: str = "none"
    card_daily_rate: Decimal = Decimal(0)
    late_fee: LateFee = field(default_factory=LateFee)


@dataclass(frozen=True, slots=True)
class Product:
    code: str
    kind: str
    currency: str
    grace_days: int
    bucket_set: str
    calendar: str
    allocation_order: tuple[str, ...] = COMPONENTS
    charges: Charges = field(default_factory=Charges)

    def component_rank(self, component: str) -> int:
        return self.allocation_order.index(component)


@dataclass(frozen=True, slots=True)
class Stage:
    """A collection stage: an account is in it when every condition set here holds (inclusive)."""

    name: str
    min_days_past_due: int | None = None
    min_delinquency_days: int | None = None
    min_amount_past_due: Decimal | None = None
    min_missed_dues: int | None = None


CURRENT_STAGE = "current"
# The segment of the accounts that match no ``[[strategy.segments]]``: they follow ``[[strategy.stages]]``.
DEFAULT_SEGMENT = "default"


ATTRIBUTE_KINDS = ("number", "text")
# Decimal places a number attribute keeps: the engine compares integers of 10**-ATTRIBUTE_SCALE, exactly.
ATTRIBUTE_SCALE = 6
# The largest number attribute (so that the scaled integer fits 64 bits with room to spare).
ATTRIBUTE_LIMIT = Decimal(10) ** 12


@dataclass(frozen=True, slots=True)
class AttributeCondition:
    """A segment's condition on an account attribute (``[attributes]``, imported with ``duecourse import
    attributes``): a number between ``min`` and ``max`` (inclusive, either may be open), or a text among
    ``values``. An account without a value for it does not match.

    The value is the one in force on the run's date, the same for every day the stage search looks at, so
    the condition cannot come and go between two days and an upper bound is allowed (unlike the amounts).
    """

    name: str
    kind: str  # number | text
    values: tuple[str, ...] = ()
    min: Decimal | None = None
    max: Decimal | None = None

    def holds(self, value: Decimal | str | None) -> bool:
        if value is None:
            return False
        if self.kind == "text":
            return value in self.values
        number = Decimal(value)
        return (self.min is None or number >= self.min) and (self.max is None or number <= self.max)

    def describe(self) -> str:
        if self.kind == "text":
            return f"{self.name} in {', '.join(self.values)}"
        if self.min is not None and self.max is not None:
            return f"{self.min} ≤ {self.name} ≤ {self.max}"
        if self.min is not None:
            return f"{self.name} ≥ {self.min}"
        return f"{self.name} ≤ {self.max}"


@dataclass(frozen=True, slots=True)
class SegmentWhen:
    """Which accounts a segment takes: all conditions set here hold (an empty tuple or None: any).

    Amounts are lower bounds only, in the account's currency, thresholds inclusive: between two days on
    which money arrives or a due becomes payable, an account's amount past due and balance never fall, so
    an account that enters a segment stays in it until the next such day, and the day it entered its
    stage can be found again from the data (``engine/stage_path.py``). Tiers are written from the
    highest threshold down: the first segment that matches wins.

    Attributes:
        products: the accounts' product codes.
        jurisdictions: the customers' jurisdictions (CN, US, UK).
        min_amount_past_due: the amount past due is at least this.
        min_balance: the outstanding balance (every due, payable or not, and every charge, less what was
            paid) is at least this.
        attributes: conditions on the account's attributes as of the run's date (a risk score, a branch).
    """

    products: tuple[str, ...] = ()
    jurisdictions: tuple[str, ...] = ()
    min_amount_past_due: Decimal | None = None
    min_balance: Decimal | None = None
    attributes: tuple[AttributeCondition, ...] = ()


@dataclass(frozen=True, slots=True)
class Segment:
    """A part of the portfolio with its own stages (and so its own actions): ``[[strategy.segments]]``.

    Stage names are unique across the whole strategy (the default stages and every segment's), so that a
    stage name in the history, a decision or an export says which segment's ladder it is on.
    """

    name: str
    when: SegmentWhen
    stages: tuple[Stage, ...]


@dataclass(frozen=True, slots=True)
class Terms:
    """Everything the daily run reads from configuration.

    Attributes:
        products, bucket_sets: by code and name.
        stages: the default stages, from least to most severe: those of the accounts no segment takes.
        segments: in order; an account is in the first whose conditions hold, else in the default one.
    """

    products: dict[str, Product]
    bucket_sets: dict[str, BucketSet]
    stages: tuple[Stage, ...]
    segments: tuple[Segment, ...] = ()

    def all_stages(self) -> tuple[Stage, ...]:
        """The default stages, then each segment's, in order (names are unique across them)."""
        return self.stages + tuple(stage for segment in self.segments for stage in segment.stages)

    def ladders(self) -> tuple[tuple[str, tuple[Stage, ...]], ...]:
        """(segment name, its stages) for the default segment, then each segment in order."""
        return ((DEFAULT_SEGMENT, self.stages), *((s.name, s.stages) for s in self.segments))

    def segment_of_stage(self, stage: str) -> str | None:
        """The segment whose ladder holds ``stage`` (``current``: None, it is every segment's)."""
        for name, stages in self.ladders():
            if any(s.name == stage for s in stages):
                return name
        return None

    def severity(self, stage: str) -> int:
        """How severe ``stage`` is on its own ladder: 1 for the least severe, 0 for ``current``."""
        for _, stages in self.ladders():
            for i, s in enumerate(stages):
                if s.name == stage:
                    return i + 1
        return 0

    def deepest(self) -> int:
        """The most stages any one ladder has."""
        return max(len(stages) for _, stages in self.ladders())

    @property
    def needs_jurisdiction(self) -> bool:
        """Whether a segment chooses by the customer's jurisdiction (the run then reads it)."""
        return any(segment.when.jurisdictions for segment in self.segments)

    @property
    def needed_attributes(self) -> dict[str, str]:
        """The account attributes segments choose by, name → kind (``number``, ``text``): the run reads
        them as of its date."""
        return {c.name: c.kind for segment in self.segments for c in segment.when.attributes}
