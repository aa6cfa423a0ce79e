"""The snapshot of every account as of a date, computed over whole columns (docs/semantics.md).

``domain/delinquency.py`` is the readable specification, one account at a time with Decimal and loops;
this module computes the same for a whole portfolio with Polars, and a property test holds the two equal
to the cent and the day. Money is integer minor units throughout; rates are applied exactly as integer
fractions ``num / 10**k`` and each charge is rounded once with integer arithmetic (never a float).

How it is computed:

1. **Accounts are numbered** 0..n-1 in account_id order (``aidx``), so a per-account figure is a dense
   column read with ``gather(aidx)`` and written with ``scatter``: no joins after the first.
2. **Payments** with ``paid_on <= as_of`` are sorted by (account, day) with a running total: the paid total
   ``P(d)`` of any account and day is an as-of join on the packed key (account, day).
3. **Dues** are sorted by (account, due date, component rank, due_id): "the order". Running totals of the
   required parts and remainders, reset at each account (a global ``cum_sum`` less the account's starting
   offset), make each tier one waterfall: what a due holds of a tier total ``T`` is
   ``clip(T - total_before, 0, amount)``.
4. **The ledger** (``_ledger``): payments are applied in the order they arrive, each day to the required
   parts of the dues payable that day, then to their remainders. Merging the days dues become payable
   with the payment days gives, per account and event, the tier totals ``R`` (required parts) and ``Q``
   (remainders) as running sums and one running maximum; each tier becomes an axis like the payments'.
   The anchor, the missed dues and the unpaid amounts follow from ``R(D)``, and the late fees from
   ``R(due_date)`` at the last due of each date.
5. **Interest** (penalty and card) is ``Σ_days (amount − paid(d))``. On each tier's axis each due owns one
   slot and each row covers a slice of money that arrived on its day, so ``Σ_days paid(d)`` is the
   integral, over the due's two slots, of the number of accrual days after the money arrived: a
   piecewise-linear function of the position on the axis, evaluated with two sorted as-of joins per slot
   (no join of dues × payments). Only principal dues past due and not fully paid by their due date can
   bear interest; the rest are never looked at.
6. **The charges due now, card interest and credit** follow from the account totals; then the bucket, the
   stage and the hold.

Payments and dues are non-negative (a reversal removes a payment; it is not a negative one): the paid
total never decreases, which is what makes "paid in full by the due date" final and the slots above exact.
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

import numpy as np
import polars as pl

from duecourse.domain.model import COMPONENTS, Component
from duecourse.domain.money import HALF_EVEN, HALF_UP, currency_spec, to_minor
from duecourse.domain.terms import CARD_INTEREST_MODES, CURRENT_STAGE, LATE_FEE_MODES, Terms
from duecourse.engine.schema import SNAPSHOTS

__all__ = ["compute_snapshots"]

_N_COMP = len(COMPONENTS)
_PRINCIPAL = COMPONENTS.index(Component.PRINCIPAL.value)
_INTEREST = COMPONENTS.index(Component.INTEREST.value)
_FEE = COMPONENTS.index(Component.FEE.value)
_PENALTY = COMPONENTS.index(Component.PENALTY.value)
_FULL_AMOUNT = CARD_INTEREST_MODES.index("full_amount")
_UNPAID_PORTION = CARD_INTEREST_MODES.index("unpaid_portion")
_PERCENT = LATE_FEE_MODES.index("percent")
_FLAT = LATE_FEE_MODES.index("flat")
_EPOCH = dt.date(1970, 1, 1)
_INT64_SAFE = 1 << 62


def compute_snapshots(  # noqa: PLR0917 - the signature the run and the property test call
    accounts: pl.DataFrame,
    dues: pl.DataFrame,
    payments: pl.DataFrame,
    terms: Terms,
    as_of: dt.date,
    on_hold: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One snapshot row per account as of ``as_of`` (schema ``SNAPSHOTS``), sorted by account_id.

    When ``accounts`` has a Date column ``as_of``, each account is taken as of its own date there (null:
    ``as_of``): the stage history uses it to find the day an account entered its stage.
    """
    accts, params = _index_accounts(accounts, terms)
    n = accts.height
    day_d = _AsOf.of(accts, as_of)
    payments = payments.filter(pl.col("paid_on") <= dt.date.fromordinal(day_d.latest + _EPOCH.toordinal()))
    _check_amounts(dues, payments)
    keys = _Keys.for_inputs(dues, payments, n, day_d.latest)
    ids = accts.lazy().select("account_id", "aidx", "pidx")

    # Independent steps run side by side: much of each is single-threaded inside Polars.
    with ThreadPoolExecutor(max_workers=2) as pool:
        paid_job = pool.submit(_Axis.payments, payments, ids, keys, n, day_d)
        due_rows = _sorted_dues(dues, ids, params, keys)
        paid = paid_job.result()
        held = _ledger(due_rows, paid, keys, n, day_d)
        figures = _due_figures(due_rows, held, params, keys, day_d)
        fees_job = pool.submit(_late_fees, figures.late_rows, accts, params, n)
        penalty, card = _interest(figures, held, accts, params, keys=keys, day_d=day_d)
        late_fees = fees_job.result()

    frame = _assemble(
        accts,
        params,
        figures,
        paid=paid,
        held=held,
        penalty=penalty,
        card=card,
        late_fees=late_fees,
        day_d=day_d,
    )
    frame = _with_bucket(frame, terms, params)
    frame = _with_stage(frame, terms, params)
    frame = frame.with_columns(
        on_hold=_holds(on_hold, ids, n), as_of=day_d.expr().cast(pl.Int32).cast(pl.Date)
    )
    return frame.select([pl.col(name).cast(dtype) for name, dtype in SNAPSHOTS.items()])


# --- inputs and parameters ---------------------------------------------------------------------------


def _index_accounts(accounts: pl.DataFrame, terms: Terms) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Accounts sorted by id with their index ``aidx`` and product index ``pidx``; the product parameters."""
    columns = ["account_id", "product_code"] + (["as_of"] if "as_of" in accounts.columns else [])
    accts = accounts.select(columns).sort("account_id").with_row_index("aidx")
    ids = accts["account_id"]
    duplicated = ids.slice(1).filter(ids.slice(1) == ids.slice(0, max(0, len(ids) - 1)))
    if len(duplicated):
        raise ValueError(f"duplicate account_id: {', '.join(duplicated.unique().sort().head(10).to_list())}")
    codes = sorted(accts["product_code"].unique().to_list())
    params = _product_params(terms, codes)
    product_index = pl.DataFrame(
        {"product_code": codes, "pidx": range(len(codes))},
        schema={"product_code": pl.String(), "pidx": pl.Int64()},
    )
    accts = accts.join(product_index, on="product_code", how="left", maintain_order="left")
    return accts, params


def _check_amounts(dues: pl.DataFrame, payments: pl.DataFrame) -> None:
    """Refuse negative amounts: the allocation assumes a paid total that never decreases."""
    negative = (
        (dues["amount_minor"] < 0).any()
        or (dues["minimum_minor"] < 0).any()
        or (payments["amount_minor"] < 0).any()
    )
    if negative:
        raise ValueError("dues, minimums and payments must not be negative (a reversal removes a payment)")


def _rate_parts(rate: Decimal, what: str) -> tuple[int, int]:
    """``(num, 10**k)`` with ``rate == num / 10**k`` exactly."""
    if not rate.is_finite() or rate < 0:
        raise ValueError(f"{what} must be a non-negative number, not {rate}")
    exponent = rate.as_tuple().exponent
    if not isinstance(exponent, int):  # only NaN and the infinities have a str exponent
        raise ValueError(f"{what} must be finite, not {rate}")
    if exponent >= 0:
        return int(rate), 1
    return int(rate.scaleb(-exponent)), 10**-exponent


def _optional_minor(value: Decimal | None, currency: str) -> int | None:
    return None if value is None else to_minor(value, currency)


_PARAMS_SCHEMA: dict[str, pl.DataType] = {
    "code": pl.String(),
    "currency": pl.String(),
    "grace_days": pl.Int64(),
    "half_even": pl.Boolean(),
    "penalty_first": pl.Boolean(),
    "pen_num": pl.Int128(),
    "pen_den": pl.Int128(),
    "card_mode": pl.Int64(),
    "card_num": pl.Int128(),
    "card_den": pl.Int128(),
    "fee_mode": pl.Int64(),
    "fee_num": pl.Int128(),
    "fee_den": pl.Int128(),
    "fee_floor": pl.Int64(),
    "fee_cap": pl.Int64(),
    "fee_flat": pl.Int64(),
    "fee_limit": pl.Boolean(),
    "bucket_set": pl.String(),
}


def _product_params(terms: Terms, codes: list[str]) -> pl.DataFrame:
    """One row per product used, in ``pidx`` order: the numbers the kernels read, in minor units."""
    unknown = [code for code in codes if code not in terms.products]
    if unknown:
        raise ValueError(f"accounts refer to unknown product(s): {', '.join(unknown)}")
    rows: list[dict[str, object]] = []
    for code in codes:
        product = terms.products[code]
        charges, fee, currency = product.charges, product.charges.late_fee, product.currency
        spec = currency_spec(currency)
        if spec.rounding not in (HALF_UP, HALF_EVEN):
            raise ValueError(f"currency {currency}: rounding {spec.rounding} is not supported by the engine")
        if charges.card_interest_mode not in CARD_INTEREST_MODES:
            raise ValueError(f"product {code}: unknown card interest mode {charges.card_interest_mode!r}")
        if fee.mode not in LATE_FEE_MODES:
            raise ValueError(f"product {code}: unknown late fee mode {fee.mode!r}")
        if product.bucket_set not in terms.bucket_sets:
            raise ValueError(f"product {code}: unknown bucket set {product.bucket_set!r}")
        pen_num, pen_den = _rate_parts(charges.penalty_daily_rate, f"product {code} penalty_daily_rate")
        card_num, card_den = _rate_parts(charges.card_daily_rate, f"product {code} card_daily_rate")
        fee_num, fee_den = _rate_parts(fee.percent, f"product {code} late fee percent")
        order = product.allocation_order
        # Block 2 pays the charges in the product's order of their components (penalty interest is a
        # penalty, late fees a fee); a component missing from the order goes last.
        rank_penalty = order.index("penalty") if "penalty" in order else len(order)
        rank_fee = order.index("fee") if "fee" in order else len(order) + 1
        row: dict[str, object] = {
            "code": code,
            "currency": currency,
            "grace_days": product.grace_days,
            "half_even": spec.rounding == HALF_EVEN,
            "penalty_first": rank_penalty < rank_fee,
            "pen_num": pen_num,
            "pen_den": pen_den,
            "card_mode": CARD_INTEREST_MODES.index(charges.card_interest_mode),
            "card_num": card_num,
            "card_den": card_den,
            "fee_mode": LATE_FEE_MODES.index(fee.mode),
            "fee_num": fee_num,
            "fee_den": fee_den,
            "fee_floor": _optional_minor(fee.floor, currency),
            "fee_cap": _optional_minor(fee.cap, currency),
            "fee_flat": to_minor(fee.flat, currency),
            "fee_limit": fee.limit_to_minimum,
            "bucket_set": product.bucket_set,
        }
        for c, component in enumerate(COMPONENTS):
            row[f"rank_{c}"] = order.index(component) if component in order else None
        for i, stage in enumerate(terms.stages):
            threshold = stage.min_amount_past_due
            # amount_past_due >= threshold in minor units; rounding the threshold up keeps it exact.
            row[f"stage_apd_{i}"] = (
                None
                if threshold is None
                else int(threshold.scaleb(spec.minor_digits).to_integral_value(rounding=ROUND_CEILING))
            )
        rows.append(row)
    schema = dict(_PARAMS_SCHEMA)
    schema |= {f"rank_{c}": pl.Int64() for c in range(_N_COMP)}
    schema |= {f"stage_apd_{i}": pl.Int64() for i in range(len(terms.stages))}
    return pl.DataFrame(rows, schema=schema)


def _by_product(params: pl.DataFrame, column: str, pidx: pl.Expr | None = None) -> pl.Expr:
    """A product parameter for each row, looked up by the row's ``pidx``."""
    return pl.lit(params[column]).gather(pl.col("pidx") if pidx is None else pidx)


def _by_account(values: pl.Series) -> pl.Expr:
    """A dense per-account column for each row, looked up by the row's ``aidx``."""
    return pl.lit(values).gather(pl.col("aidx"))


def _scatter(n: int, at: pl.Series, values: pl.Series, dtype: pl.DataType) -> pl.Series:
    """A column of n rows holding ``values`` at the positions ``at`` and 0 elsewhere.

    Through numpy: Polars' ``Series.scatter`` was measured 10-20x slower on chunked inputs.
    """
    if dtype == pl.Int128():  # numpy has no 128-bit integers
        return pl.repeat(0, n, dtype=dtype, eager=True).scatter(at, values.cast(dtype)).alias(values.name)
    out = np.zeros(n, dtype=np.int64)
    out[at.to_numpy()] = values.cast(pl.Int64).to_numpy()
    return pl.Series(values.name, out, dtype=pl.Int64).cast(dtype)


def _dense(n: int, aidx: pl.Series, values: pl.Series, dtype: pl.DataType) -> pl.Series:
    """A column of n accounts holding ``values`` at ``aidx`` and 0 elsewhere."""
    return _scatter(n, aidx, values, dtype)


@dataclass(frozen=True, slots=True)
class _AsOf:
    """The as-of day of each account (days since 1970): one for all, or each account its own."""

    day: int | None  # the day of every account, or None when they differ
    days: pl.Series  # per account (dense), Int32
    latest: int

    @classmethod
    def of(cls, accts: pl.DataFrame, as_of: dt.date) -> _AsOf:
        default = (as_of - _EPOCH).days
        if "as_of" not in accts.columns:
            return cls(default, pl.Series("as_of", [], dtype=pl.Int32), default)
        if accts.schema["as_of"] != pl.Date():
            raise ValueError(f"the accounts' as_of column must be Date, not {accts.schema['as_of']}")
        days = accts["as_of"].cast(pl.Int32).fill_null(default)
        low, high = days.min(), days.max()
        if not isinstance(low, int) or not isinstance(high, int) or low == high:
            day = high if isinstance(high, int) else default
            return cls(day, days, day)
        return cls(None, days, high)

    def expr(self) -> pl.Expr:
        """Each row's as-of day, by its ``aidx``."""
        return (
            pl.lit(self.day, dtype=pl.Int64)
            if self.day is not None
            else _by_account(self.days).cast(pl.Int64)
        )


@dataclass(frozen=True, slots=True)
class _Keys:
    """Packs (account, day) into one Int64, ordered like the pair: ``aidx << day_bits | (day - base)``.

    ``base`` is the day before every date of the inputs and of the as-of date. Offset 0 stands for "before
    everything" (dues payable from the start sit there) and no real day reaches the top offset, so the
    keys of two accounts never meet, even for a day clipped into range.
    """

    base: int
    day_bits: int

    @classmethod
    def for_inputs(cls, dues: pl.DataFrame, payments: pl.DataFrame, n: int, day_d: int) -> _Keys:
        days = pl.concat(
            [
                dues["due_date"].cast(pl.Int64),
                dues["posted_on"].cast(pl.Int64).drop_nulls(),
                payments["paid_on"].cast(pl.Int64),
                pl.Series([day_d], dtype=pl.Int64),
            ]
        )
        low, high = days.min(), days.max()
        assert isinstance(low, int) and isinstance(high, int)  # never empty: it holds day_d
        day_bits = (high - low + 3).bit_length()
        if n.bit_length() + day_bits + 3 > 62:
            raise ValueError(f"dates from {low} to {high} (days since 1970) span too long a time")
        return cls(low - 1, day_bits)

    def day_key(self, day: pl.Expr) -> pl.Expr:
        """Key of (aidx, day); a day outside the inputs' range still keeps the account's order."""
        offset = (day.cast(pl.Int64) - self.base).clip(0, (1 << self.day_bits) - 1)
        return pl.col("aidx").cast(pl.Int64) * (1 << self.day_bits) + offset


# --- payments ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Axis:
    """Money arriving over time per account, laid end to end on one global axis, sorted by (account, day).

    Used for the payments (``P``) and for the money held by the dues' required parts (``R``) and
    remainders (``Q``), see ``_ledger``.

    Attributes:
        rows: aidx, day, pay (> 0), key, cum (global running total, this row included).
        total: per account (dense), the account's total as of D.
        start: per account (dense), the global running total before the account's first row, so that a
            global running total less ``start`` is the account's own.
    """

    rows: pl.DataFrame
    total: pl.Series
    start: pl.Series

    @classmethod
    def payments(  # noqa: PLR0917 - one call site
        cls, payments: pl.DataFrame, ids: pl.LazyFrame, keys: _Keys, n: int, day_d: _AsOf
    ) -> _Axis:
        """Payments up to each account's D with amount > 0."""
        rows = (
            payments.lazy()
            .filter(pl.col("amount_minor") > 0)
            .join(ids.select("account_id", "aidx"), on="account_id", how="inner")
            .select(
                "aidx", pl.col("paid_on").cast(pl.Int32).alias("day"), pl.col("amount_minor").alias("pay")
            )
            .filter(pl.col("day") <= day_d.expr())
            .with_columns(key=keys.day_key(pl.col("day")))
            .collect()
        )
        if not rows["key"].is_sorted():  # payments read back in order need no sort
            rows = rows.sort("key")  # eager: measured 2-3x faster than the same sort in the lazy query
        return cls.from_rows(rows, n)

    @classmethod
    def from_rows(cls, rows: pl.DataFrame, n: int) -> _Axis:
        """From rows (aidx, day, pay, key) sorted by key, pay > 0."""
        rows = rows.with_columns(cum=pl.col("pay").cum_sum())
        last = rows.filter(_last_of(pl.col("aidx")))
        total = _dense(n, last["aidx"], last["cum"].diff().fill_null(last["cum"]), pl.Int64())
        return cls(rows, total.alias("paid_total"), (total.cum_sum() - total).alias("start"))

    def with_paid(self, frame: pl.LazyFrame, key: pl.Expr, name: str = "P") -> pl.LazyFrame:
        """``frame``, sorted by the (account, day) ``key``, with ``name``: the account's total up to that day.

        One as-of join (a merge pass), measured several times faster than ``search_sorted``.
        """
        return (
            frame.with_columns(_key=key)
            .join_asof(
                self.rows.lazy().select(pl.col("key").alias("_akey"), pl.col("cum").alias("_cum")),
                left_on="_key",
                right_on="_akey",
            )
            .with_columns((pl.col("_cum").fill_null(0) - _by_account(self.start)).alias(name))
            .drop("_key", "_akey", "_cum", strict=False)
        )

    def paid_by(self, key: pl.Series, aidx: pl.Series) -> pl.Series:
        """The total up to each (account, day) key, in any order."""
        queries = pl.DataFrame({"_query": key, "aidx": aidx}).with_row_index("_row")
        in_order = key.is_sorted()
        if not in_order:
            queries = queries.sort("_query")
        answered = self.with_paid(queries.lazy(), pl.col("_query")).collect()
        return (answered if in_order else answered.sort("_row"))["P"]


def _ledger(due_rows: pl.DataFrame, paid: _Axis, keys: _Keys, n: int, day_d: _AsOf) -> tuple[_Axis, _Axis]:
    """The money held by the dues' required parts (R) and by their remainders (Q), as two axes.

    Payments are applied in the order they arrive (docs/semantics.md): each day's money goes to the
    required parts of the dues payable that day, then to their remainders, the rest is credit. A due is
    payable from its posting day (else its statement's, else from the start), never earlier than a due
    before it in the order: the running maximum of the keys, so the payable dues are a prefix of the order
    and each tier fills as one waterfall. At each event (a day something becomes payable or money
    arrives), with P the paid total and Creq, Crem the required parts and remainders payable:
    ``Q = running max of max(0, min(Crem, P − Creq))`` (money reaches the remainders only when every payable
    required part is full, and never leaves them) and ``R = min(Creq, P − Q)``.
    """
    step = 1 << keys.day_bits
    aidx = pl.col("aidx")
    # A due without a posting date is payable from the posting of its due date's statement, if any.
    posted = pl.col("posted")
    if due_rows["posted"].null_count() not in (0, due_rows.height):
        posted = pl.coalesce(posted, posted.min().over("aidx", "day"))
    posted_key = pl.when(posted.is_null()).then(aidx.cast(pl.Int64) * step).otherwise(keys.day_key(posted))
    zero = pl.lit(0, dtype=pl.Int64)
    due_events = due_rows.lazy().select(
        # Never payable before a due earlier in the order: the running maximum (accounts ascend, so a
        # global cum_max stays within the account).
        key=posted_key.cum_max(),
        dreq=pl.col("req").cast(pl.Int64),
        drem=pl.col("rem").cast(pl.Int64),
        dpay=zero,
    )
    pay_events = paid.rows.lazy().select("key", dreq=zero, drem=zero, dpay=pl.col("pay").cast(pl.Int64))
    key = pl.col("key")
    first_acct = _first_of(aidx)

    def running(x: pl.Expr) -> pl.Expr:
        total = x.cum_sum()
        return total - pl.when(first_acct).then(total - x).forward_fill()

    events = (
        due_events.merge_sorted(pay_events, key="key")
        .with_columns(aidx=key // step)
        # Nothing becomes payable after D (payments after D are already left out).
        .filter(key % step <= day_d.expr() - keys.base)
        .with_columns(P=running(pl.col("dpay")), Creq=running(pl.col("dreq")), Crem=running(pl.col("drem")))
        .filter(_last_of(key))
        .with_columns(x=pl.min_horizontal("Crem", pl.col("P") - pl.col("Creq")).clip(lower_bound=0))
        .collect()
    )
    if events.is_empty():
        empty = pl.DataFrame(schema={"aidx": pl.Int64, "day": pl.Int32, "pay": pl.Int64, "key": pl.Int64})
        return _Axis.from_rows(empty, n), _Axis.from_rows(empty, n)
    # Q: the running maximum of x within the account, as one global cum_max of x lifted by the account.
    largest = events["x"].max()
    lift = (largest if isinstance(largest, int) else 0) + 1
    wide = n * lift >= _INT64_SAFE
    lifted = aidx.cast(pl.Int128 if wide else pl.Int64) * lift
    events = events.with_columns(Q=((pl.col("x") + lifted).cum_max() - lifted).cast(pl.Int64)).with_columns(
        R=pl.min_horizontal("Creq", pl.col("P") - pl.col("Q"))
    )
    day = (key % step + keys.base).cast(pl.Int32)

    def axis(column: str) -> _Axis:
        held = pl.col(column)
        gained = held - pl.when(first_acct).then(0).otherwise(held.shift(1))
        rows = events.select(aidx.cast(pl.UInt32), day.alias("day"), gained.alias("pay"), "key").filter(
            pl.col("pay") > 0
        )
        return _Axis.from_rows(rows, n)

    return axis("R"), axis("Q")


def _first_of(col: pl.Expr) -> pl.Expr:
    """True on the first row of each run of equal values (the frame is sorted by them)."""
    return (col != col.shift(1)).fill_null(True)


def _last_of(col: pl.Expr) -> pl.Expr:
    """True on the last row of each run of equal values."""
    return (col != col.shift(-1)).fill_null(True)


# --- dues --------------------------------------------------------------------------------------------


def _sorted_dues(dues: pl.DataFrame, ids: pl.LazyFrame, params: pl.DataFrame, keys: _Keys) -> pl.DataFrame:
    """The dues of known accounts in the order: (account, due date, component rank, due_id).

    Columns: aidx, pidx, day, comp (index in COMPONENTS), req, rem (minor units), posted (day or null).
    """
    ranks = [rank for row in params.select(f"rank_{c}" for c in range(_N_COMP)).rows() for rank in row]
    rank_table = pl.Series("rank", ranks, dtype=pl.UInt8)
    rank_bits = max(1, max((rank for rank in ranks if rank is not None), default=0).bit_length())
    # The component's index in COMPONENTS (null when unknown): four string comparisons are cheaper
    # than a categorical cast.
    comp: pl.Expr = pl.lit(None, dtype=pl.UInt8)
    for c in reversed(range(_N_COMP)):
        comp = pl.when(pl.col("component") == COMPONENTS[c]).then(pl.lit(c, dtype=pl.UInt8)).otherwise(comp)
    amount = pl.col("amount_minor")
    required = pl.min_horizontal(pl.col("minimum_minor").fill_null(amount), amount)
    # The account of each due, aligned with the dues (a left join on the key alone: the other columns
    # are not copied); dues of unknown accounts are dropped.
    matched = (
        dues.lazy()
        .select("account_id")
        .join(ids, on="account_id", how="left", maintain_order="left")
        .select("aidx", "pidx")
        .collect()
    )
    known = pl.concat([dues, matched], how="horizontal")
    if matched["aidx"].null_count():
        known = known.filter(pl.col("aidx").is_not_null())
    rows = known.select(
        "aidx",
        "pidx",
        "component",
        pl.col("due_date").cast(pl.Int32).alias("day"),
        comp.alias("comp"),
        required.alias("req"),
        (amount - required).alias("rem"),
        pl.col("posted_on").cast(pl.Int32).alias("posted"),
    )
    if rows["comp"].null_count():
        unknown = rows.filter(pl.col("comp").is_null())["component"].unique().sort().to_list()
        raise ValueError(f"unknown due component(s) {unknown}; known: {', '.join(COMPONENTS)}")
    rows = rows.drop("component").with_columns(
        rank=pl.lit(rank_table).gather(pl.col("pidx") * _N_COMP + pl.col("comp").cast(pl.Int64))
    )
    if rows["rank"].null_count():
        row = rows.filter(pl.col("rank").is_null()).row(0, named=True)
        raise ValueError(
            f"product {params['code'][row['pidx']]}: the allocation order lacks {COMPONENTS[row['comp']]!r}, "
            "which its dues use"
        )
    order = keys.day_key(pl.col("day")) * (1 << rank_bits) + pl.col("rank").cast(pl.Int64)
    rows = rows.with_columns(order=order, pidx=pl.col("pidx").cast(pl.UInt32)).drop("rank")
    # Sorting on one Int64 is several times faster than on four columns with a string among them. Dues
    # tied on (account, date, rank) keep the order of their due_id (docs/semantics.md): only when the
    # portfolio has such ties does the engine sort again with due_id.
    out = rows if rows["order"].is_sorted() else rows.sort("order")
    key = out["order"]
    if (key.slice(1) == key.slice(0, max(0, len(key) - 1))).any():
        out = rows.with_columns(due_id=known["due_id"]).sort(["order", "due_id"]).drop("due_id")
    return out.drop("order")


@dataclass(frozen=True, slots=True)
class _DueFigures:
    """What the dues say per account (dense columns of n) and the rows the charges start from."""

    sums: pl.DataFrame  # required_total, remainder_total, req_past, missed, unpaid_<c>
    anchor_day: pl.Series  # null when nothing is past due
    late_rows: pl.DataFrame  # aidx, shortfall_t, required_t: one per missed due date
    # Principal dues past due and not fully paid by the end of their due date, of products that charge
    # penalty interest, and of products that charge card interest (with a posting date).
    penalty_candidates: pl.DataFrame
    card_candidates: pl.DataFrame


def _due_figures(
    due_rows: pl.DataFrame, held: tuple[_Axis, _Axis], params: pl.DataFrame, keys: _Keys, day_d: _AsOf
) -> _DueFigures:
    """The past-due parts, the late fee shortfalls and the interest candidates, from the sorted dues."""
    held_req, held_rem = held
    n = len(held_req.total)
    aidx, day, req, rem = pl.col("aidx"), pl.col("day"), pl.col("req"), pl.col("rem")
    first_acct, last_acct = _first_of(aidx), _last_of(aidx)

    def running(x: pl.Expr) -> pl.Expr:
        """Running total of x within the account, this row included."""
        total = x.cum_sum()
        return total - pl.when(first_acct).then(total - x).forward_fill()

    at_due_date = keys.day_key(day)
    # The last day a payment counts as on time: the due date plus the product's grace days (容时).
    on_time_until = day + _by_product(params, "grace_days").cast(pl.Int32)
    at_grace_end = keys.day_key(on_time_until)
    query = due_rows.lazy()
    # Rt, Qt: what the required parts and the remainders held at the end of the due date; Rg, Qg: at the
    # end of the grace days.
    for axis, at, name in (
        (held_req, at_due_date, "Rt"),
        (held_rem, at_due_date, "Qt"),
        (held_req, at_grace_end, "Rg"),
        (held_rem, at_grace_end, "Qg"),
    ):
        query = axis.with_paid(query, at, name)
    base = query.with_columns(R=running(req), Rem=running(rem)).collect()  # through this due
    paid_d = _by_account(held_req.total)  # what the required parts hold as of D
    required_before = pl.col("R") - req
    is_past = day < day_d.expr()

    totals = base.lazy().filter(last_acct).select("aidx", "R", "Rem")
    past_totals = (
        base.lazy().filter(is_past & (last_acct | (day.shift(-1) >= day_d.expr()))).select("aidx", "R")
    )
    # The required part of a past-due due left unpaid as of D (few rows: the arrears).
    unpaid = req - (paid_d - required_before).clip(0, req)
    arrears = (
        base.lazy()
        .filter(is_past & (req > 0) & (paid_d < pl.col("R")))
        .with_columns(unpaid=unpaid)
        .group_by("aidx")
        .agg(
            *[
                pl.col("unpaid").filter(pl.col("comp") == c).sum().alias(f"unpaid_{c}")
                for c in range(_N_COMP)
            ],
            pl.col("day").min().alias("anchor_day"),  # the oldest due left unpaid
            pl.col("day").n_unique().alias("missed"),  # distinct due dates with an unpaid required part
        )
    )
    # Late fees: a due date's required total and what of it was unpaid at the end of its grace days,
    # read at the date's last due, once the grace days are over.
    date_start = pl.when(first_acct | _first_of(day)).then(required_before).forward_fill()
    required_t = pl.col("R") - pl.col("date_start")
    grace_over = on_time_until < day_d.expr()
    late_rows = (
        base.lazy()
        .with_columns(date_start=date_start)
        .filter((last_acct | _last_of(day)) & grace_over)
        .with_columns(
            required_t=required_t,
            shortfall_t=required_t - (pl.col("Rg") - pl.col("date_start")).clip(0, required_t),
        )
        .filter(pl.col("shortfall_t") > 0)
        .select("aidx", "shortfall_t", "required_t")
    )
    last, last_past, owing, late = pl.collect_all([totals, past_totals, arrears, late_rows])

    sums = pl.DataFrame(
        [
            _dense(n, last["aidx"], last["R"], pl.Int64()).alias("required_total"),
            _dense(n, last["aidx"], last["Rem"], pl.Int64()).alias("remainder_total"),
            _dense(n, last_past["aidx"], last_past["R"], pl.Int64()).alias("req_past"),
            _dense(n, owing["aidx"], owing["missed"], pl.Int64()),
            *[_dense(n, owing["aidx"], owing[f"unpaid_{c}"], pl.Int64()) for c in range(_N_COMP)],
        ]
    )
    has_anchor = np.zeros(n, dtype=np.bool_)
    has_anchor[owing["aidx"].to_numpy()] = True
    anchor_day = pl.select(
        anchor_day=pl.when(pl.lit(pl.Series(has_anchor))).then(
            _dense(n, owing["aidx"], owing["anchor_day"], pl.Int32())
        )
    ).to_series()

    # Interest accrues only on principal. A due paid in full by the end of its due date bears no penalty
    # interest, and one paid in full within its grace days no card interest (what the dues hold never
    # decreases, so it stays paid): the only rows the interest kernel looks at.
    remainder_before = pl.col("Rem") - rem

    def paid_at(r: str, q: str) -> pl.Expr:
        return (pl.col(r) - required_before).clip(0, req) + (pl.col(q) - remainder_before).clip(0, rem)

    principal = pl.col("comp") == _PRINCIPAL
    penalty_candidates = base.lazy().filter(is_past & principal & (req + rem - paid_at("Rt", "Qt") > 0))
    card_candidates = base.lazy().filter(
        grace_over & principal & (req + rem - paid_at("Rg", "Qg") > 0) & pl.col("posted").is_not_null()
    )
    mode = _by_product(params, "card_mode")
    charges_penalty = _by_product(params, "pen_num") > 0
    charges_card = mode.is_in([_FULL_AMOUNT, _UNPAID_PORTION]) & (_by_product(params, "card_num") > 0)
    columns: list[str | pl.Expr] = [
        "aidx",
        "pidx",
        "day",
        "posted",
        "req",
        "rem",
        "Rt",
        "Qt",
        required_before.alias("req_before"),
        remainder_before.alias("rem_before"),
    ]
    penalty, card = pl.collect_all(
        [
            penalty_candidates.filter(charges_penalty).select(columns),
            card_candidates.filter(charges_card).select(*columns, portion=mode == _UNPAID_PORTION),
        ]
    )
    return _DueFigures(sums, anchor_day, late, penalty, card)


# --- charges -----------------------------------------------------------------------------------------


def _round_rate(amount: pl.Expr, num: pl.Expr, den: pl.Expr, half_even: pl.Expr) -> pl.Expr:
    """round(amount × num / den) for amount >= 0 by the currency's rule, in Int128 (no overflow)."""
    scaled = amount.cast(pl.Int128) * num
    half_up = (scaled * 2 + den) // (den * 2)
    quotient = scaled // den
    twice_rest = (scaled - quotient * den) * 2
    up = (twice_rest > den) | ((twice_rest == den) & (quotient % 2 == 1))
    return pl.when(half_even).then(quotient + up.cast(pl.Int128)).otherwise(half_up).cast(pl.Int64)


def _late_fees(late_rows: pl.DataFrame, accts: pl.DataFrame, params: pl.DataFrame, n: int) -> pl.Series:
    """违约金 / late fee (CN-FEE-05), once per due date t < D whose required total was unpaid at t."""
    pidx = pl.lit(accts["pidx"]).gather(pl.col("aidx"))

    def p(column: str) -> pl.Expr:
        return _by_product(params, column, pidx)

    pct = _round_rate(pl.col("shortfall_t"), p("fee_num"), p("fee_den"), p("half_even"))
    pct = pl.max_horizontal(pct, p("fee_floor").fill_null(pct))
    pct = pl.min_horizontal(pct, p("fee_cap").fill_null(pct))
    mode = p("fee_mode")
    fee = pl.when(mode == _PERCENT).then(pct).when(mode == _FLAT).then(p("fee_flat")).otherwise(0)
    # Reg Z 1026.52(b): with limit_to_minimum, never more than the minimum payment due that date.
    fee = pl.when(p("fee_limit")).then(pl.min_horizontal(fee, pl.col("required_t"))).otherwise(fee)
    per_account = (
        late_rows.lazy()
        .with_columns(fee=fee)
        .group_by("aidx")
        .agg(pl.col("fee").sum().alias("late_fees"))
        .collect()
    )
    return _dense(n, per_account["aidx"], per_account["late_fees"], pl.Int64())


def _interest(
    figures: _DueFigures,
    held: tuple[_Axis, _Axis],
    accts: pl.DataFrame,
    params: pl.DataFrame,
    *,
    keys: _Keys,
    day_d: _AsOf,
) -> tuple[pl.Series, pl.Series]:
    """Penalty interest (罚息, CN-LOAN-01) and card interest (全额计息, CN-FEE-06) per account, rounded once.

    For a due with accrual days a..D: ``Σ_d (amount − paid(d)) = amount × days − Σ_d paid(d)``, where
    paid(d) is what the due's required part and remainder held at the end of day d (charges left out,
    docs/semantics.md). See ``_MoneyIntegral`` for ``Σ_d paid(d)``.
    """
    pen, card = figures.penalty_candidates, figures.card_candidates
    if pen.is_empty() and card.is_empty():
        zeros = pl.repeat(0, accts.height, dtype=pl.Int64, eager=True)
        return zeros, zeros
    held_req, held_rem = held
    integral = _MoneyIntegral(held_req, held_rem, day_d)
    # Penalty: days due_date+1 .. D; money that the due held by its due date counts on each of them.
    pen_sum = integral.unpaid_days(pen, day_d.expr() - pl.col("day"), pl.col("Rt"), pl.col("Qt"))
    # Card, full amount: days posted_on .. D, both ends counted; a payment on day d lowers that day's
    # balance, so money counts from its own day (money held before posting, on every day). Unpaid
    # portion: a day before the due date counts the balance left at the due date, so money held by the
    # due date counts on every day of the range.
    before_posting = card.select(keys.day_key(pl.col("posted") - 1)).to_series()
    req_before_posting = held_req.paid_by(before_posting, card["aidx"])
    rem_before_posting = held_rem.paid_by(before_posting, card["aidx"])
    portion = pl.col("portion")
    split_req = (
        pl.when(portion).then(pl.max_horizontal("Rt", req_before_posting)).otherwise(req_before_posting)
    )
    split_rem = (
        pl.when(portion).then(pl.max_horizontal("Qt", rem_before_posting)).otherwise(rem_before_posting)
    )
    days = (day_d.expr() - pl.col("posted") + 1).clip(lower_bound=0)
    card_sum = integral.unpaid_days(card, days, split_req, split_rem)
    return (
        _round_per_account(pen, pen_sum, "pen", accts.height, params),
        _round_per_account(card, card_sum, "card", accts.height, params),
    )


def _round_per_account(
    cands: pl.DataFrame, balance_days: pl.Series, rate: str, n: int, params: pl.DataFrame
) -> pl.Series:
    """Each account's Σ balance × days, times the product's daily rate, rounded once (dense)."""
    # Summed in Int64 unless the largest possible total might not fit.
    largest = balance_days.max()
    safe = isinstance(largest, int) and largest * len(balance_days) < _INT64_SAFE
    per_account = (
        cands.select("aidx", "pidx", total=balance_days.cast(pl.Int64 if safe else pl.Int128))
        .group_by("aidx")
        .agg(pl.col("total").sum(), pl.col("pidx").first())
    )
    rounded = per_account.select(
        _round_rate(
            pl.col("total"),
            _by_product(params, f"{rate}_num"),
            _by_product(params, f"{rate}_den"),
            _by_product(params, "half_even"),
        )
    ).to_series()
    return _dense(n, per_account["aidx"], rounded, pl.Int64())


class _MoneyIntegral:
    """``Σ_d paid(d)`` of a due as an integral over the axes of the money the dues hold.

    The required parts fill as one waterfall on their axis (``R``) and the remainders on theirs (``Q``),
    so each due owns one slot on each axis, and each row of an axis is a slice of money that arrived on
    its day τ. A unit of money in a due's slot is part of paid(d) on every accrual day d >= τ:
    ``Σ_d paid(d)`` is the integral over the due's two slots of that count of days. Money below ``split``
    (what had arrived before the accrual days started to count it) counts on every accrual day; money
    above it, on the D − τ + 1 days from τ to D.

    With all accounts laid end to end on one global axis, ``G(x) = ∫_0^x (D − τ(y) + 1) dy`` is piecewise
    linear: G(x) = G(start of the row covering x) + (x − that start) × its count of days.
    """

    __slots__ = ("axes", "dtype", "tables")

    def __init__(self, held_req: _Axis, held_rem: _Axis, day_d: _AsOf) -> None:
        self.axes = {"req": held_req, "rem": held_rem}
        bound = 0
        for axis in self.axes.values():
            rows = axis.rows
            first_day = rows["day"].min()
            span = day_d.latest + 1 - first_day if isinstance(first_day, int) else 1
            largest = rows["pay"].max()
            bound = max(bound, (largest if isinstance(largest, int) else 0) * len(rows) * max(span, 1))
        # Σ pay × days over a whole portfolio fits Int64 in practice; Int128 when it might not.
        self.dtype: pl.DataType = pl.Int64() if bound < _INT64_SAFE else pl.Int128()
        weight = (day_d.expr() + 1 - pl.col("day")).cast(self.dtype)
        weighted = pl.col("pay").cast(self.dtype) * weight
        self.tables = {
            slot: axis.rows.select(
                _start=pl.col("cum") - pl.col("pay"),  # strictly increasing: every row is > 0
                _weight=weight,
                _before=weighted.cum_sum() - weighted,  # G at the row's start
            )
            for slot, axis in self.axes.items()
        }

    def _with_g(self, slot: str, frame: pl.LazyFrame, at: str, name: str) -> pl.LazyFrame:
        """``frame`` with ``name`` = G(``at``) on the slot's axis; ``at`` must be sorted along it."""
        g = pl.col("_before") + (pl.col(at) - pl.col("_start")).cast(self.dtype) * pl.col("_weight")
        return (
            frame.join_asof(self.tables[slot].lazy(), left_on=at, right_on="_start", strategy="backward")
            .with_columns(g.alias(name))
            .drop("_start", "_weight", "_before")
        )

    def unpaid_days(
        self, cands: pl.DataFrame, days: pl.Expr, split_req: pl.Expr, split_rem: pl.Expr
    ) -> pl.Series:
        """For each due: Σ over its ``days`` accrual days of (amount − paid(d)), in minor units × days."""
        req, rem = pl.col("req"), pl.col("rem")
        frame = cands.with_columns(days=days.cast(pl.Int64))
        # amount × days (and every term below it) fits Int64 in practice; Int128 when it might not.
        amount_max, days_max = frame.select((req + rem).max(), pl.col("days").max()).row(0)
        wide = (amount_max or 0) * (days_max or 0) >= _INT64_SAFE
        dtype = pl.Int128() if wide else self.dtype
        slots = {
            "req": (pl.col("req_before"), req, split_req),
            "rem": (pl.col("rem_before"), rem, split_rem),
        }
        columns: dict[str, pl.Expr] = {
            "days": pl.col("days").cast(dtype),
            "amount": (req + rem).cast(dtype),
        }
        for slot, (before, size, split) in slots.items():
            axis = self.axes[slot]
            held_d = _by_account(axis.total)
            columns |= {
                f"{slot}_lo": before.clip(0, held_d),
                f"{slot}_hi": (before + size).clip(0, held_d),
                f"{slot}_split": split.clip(0, held_d),
                f"{slot}_start": _by_account(axis.start),
            }
        frame = frame.select(**columns)
        total = frame["amount"] * frame["days"]
        for slot in slots:
            lo, hi, split_at = pl.col(f"{slot}_lo"), pl.col(f"{slot}_hi"), pl.col(f"{slot}_split")
            start = pl.col(f"{slot}_start")
            ends = frame.select(
                # Money in the slot that arrived by the split counts on every accrual day.
                early=(pl.min_horizontal(hi, split_at) - lo).clip(lower_bound=0).cast(dtype) * pl.col("days"),
                # The rest, [late_lo, hi), counts from its own day: G(hi) − G(late_lo). Along the axis
                # late_lo and hi each grow from one due to the next, so each is one sorted as-of pass.
                _hi=start + hi,
                _late_lo=start + pl.min_horizontal(pl.max_horizontal(lo, split_at), hi),
            )
            total = total - ends["early"]
            has_late = ends["_hi"] > ends["_late_lo"]
            n_late = has_late.sum()
            if self.tables[slot].is_empty() or not n_late:
                continue
            if n_late < len(ends) // 2:  # e.g. the remainders of card statements: few were paid late
                rows = pl.arange(len(ends), eager=True).filter(has_late)
                late = self._late_days(slot, ends.filter(has_late))
                total = total - _scatter(len(total), rows, late, dtype)
            else:
                total = total - self._late_days(slot, ends).cast(dtype)
        return total

    def _late_days(self, slot: str, ends: pl.DataFrame) -> pl.Series:
        """G(_hi) − G(_late_lo) for each row."""
        late = self._with_g(slot, self._with_g(slot, ends.lazy(), "_hi", "g_hi"), "_late_lo", "g_lo")
        return late.select(pl.col("g_hi") - pl.col("g_lo")).collect().to_series()


# --- the snapshot ------------------------------------------------------------------------------------


def _assemble(
    accts: pl.DataFrame,
    params: pl.DataFrame,
    figures: _DueFigures,
    *,
    paid: _Axis,
    held: tuple[_Axis, _Axis],
    penalty: pl.Series,
    card: pl.Series,
    late_fees: pl.Series,
    day_d: _AsOf,
) -> pl.DataFrame:
    """Days past due, amounts past due by component, outstanding and credit per account."""
    frame = pl.concat(
        [
            accts,
            figures.sums,
            pl.DataFrame(
                [
                    figures.anchor_day,
                    paid.total.alias("paid_total"),
                    held[0].total.alias("held_req"),
                    held[1].total.alias("held_rem"),
                    penalty.alias("penalty_interest_minor"),
                    card.alias("card_interest_minor"),
                    late_fees.alias("late_fees_minor"),
                ]
            ),
        ],
        how="horizontal",
    )
    pen, fee = pl.col("penalty_interest_minor"), pl.col("late_fees_minor")
    penalty_first = _by_product(params, "penalty_first")
    # The charges due now rank before anything not yet past due: they are paid from everything paid
    # except what the past-due required parts hold, in product order of their components.
    held_past = pl.min_horizontal("held_req", "req_past")  # the past-due dues are the first in the order
    left = pl.col("paid_total") - held_past
    first_charge = pl.when(penalty_first).then(pen).otherwise(fee)
    paid_first = pl.min_horizontal(left, first_charge)
    paid_second = pl.min_horizontal(
        (left - first_charge).clip(lower_bound=0), pl.when(penalty_first).then(fee).otherwise(pen)
    )
    pen_paid = pl.when(penalty_first).then(paid_first).otherwise(paid_second)
    fee_paid = pl.when(penalty_first).then(paid_second).otherwise(paid_first)
    # They take the credit first; card interest is paid from what credit is left.
    credit = pl.col("paid_total") - pl.col("held_req") - pl.col("held_rem")
    credit_left = (credit - pen_paid - fee_paid).clip(lower_bound=0)
    credit_after = credit_left - pl.min_horizontal(credit_left, pl.col("card_interest_minor"))
    days_past_due = (day_d.expr() - pl.col("anchor_day")).fill_null(0)
    owed = pl.col("required_total") + pl.col("remainder_total") + pen + fee + pl.col("card_interest_minor")
    return frame.with_columns(
        currency=_by_product(params, "currency"),
        days_past_due=days_past_due,
        delinquency_days=(days_past_due - _by_product(params, "grace_days")).clip(lower_bound=0),
        oldest_unpaid_due_date=pl.col("anchor_day").cast(pl.Int32).cast(pl.Date),
        principal_past_due_minor=pl.col(f"unpaid_{_PRINCIPAL}"),
        interest_past_due_minor=pl.col(f"unpaid_{_INTEREST}"),
        fee_past_due_minor=pl.col(f"unpaid_{_FEE}") + fee - fee_paid,
        penalty_past_due_minor=pl.col(f"unpaid_{_PENALTY}") + pen - pen_paid,
        missed_dues=pl.col("missed"),
        outstanding_minor=owed - pl.col("paid_total") + credit_after,
        credit_minor=credit_after,
    ).with_columns(
        amount_past_due_minor=pl.sum_horizontal(
            "principal_past_due_minor",
            "interest_past_due_minor",
            "fee_past_due_minor",
            "penalty_past_due_minor",
        )
    )


def _with_bucket(frame: pl.DataFrame, terms: Terms, params: pl.DataFrame) -> pl.DataFrame:
    """The bucket of the delinquency days from the product's bucket set.

    Each product's set is tabulated day by day up to one past its last finite bound (beyond it, the
    open-ended bucket), with ``BucketSet.bucket_for`` itself, and looked up by position.
    """
    names: list[str | None] = []
    offsets: list[int] = []
    caps: list[int] = []
    for name in params["bucket_set"]:
        bucket_set = terms.bucket_sets[name]
        bounds = [b.min for b in bucket_set.buckets] + [
            b.max for b in bucket_set.buckets if b.max is not None
        ]
        cap = max(bounds, default=0) + 1
        offsets.append(len(names))
        caps.append(cap)
        for days in range(cap + 1):
            try:
                names.append(bucket_set.bucket_for(days))
            except ValueError:  # a hand-built set with a gap: reported below if an account falls in it
                names.append(None)
    params = params.with_columns(
        offset=pl.Series(offsets, dtype=pl.Int64), cap=pl.Series(caps, dtype=pl.Int64)
    )
    position = _by_product(params, "offset") + pl.min_horizontal(
        "delinquency_days", _by_product(params, "cap")
    )
    frame = frame.with_columns(bucket=pl.lit(pl.Series(names, dtype=pl.String)).gather(position))
    uncovered = frame.filter(pl.col("bucket").is_null())
    if len(uncovered):
        row = uncovered.row(0, named=True)
        raise ValueError(
            f"the bucket set of product {row['product_code']} does not cover {row['delinquency_days']} days"
        )
    return frame


def _with_stage(frame: pl.DataFrame, terms: Terms, params: pl.DataFrame) -> pl.DataFrame:
    """The most severe stage whose set conditions all hold (thresholds inclusive), else ``current``.

    A stage with no condition set never matches (the reading of ``delinquency.choose_stage``).
    """
    stage: pl.Expr = pl.lit(CURRENT_STAGE, dtype=pl.String)
    # Built from least to most severe, so the most severe stage is the outermost `when`, tested first.
    for i, st in enumerate(terms.stages):
        conditions: list[pl.Expr] = []
        if st.min_days_past_due is not None:
            conditions.append(pl.col("days_past_due") >= st.min_days_past_due)
        if st.min_delinquency_days is not None:
            conditions.append(pl.col("delinquency_days") >= st.min_delinquency_days)
        if st.min_amount_past_due is not None:
            conditions.append(pl.col("amount_past_due_minor") >= _by_product(params, f"stage_apd_{i}"))
        if st.min_missed_dues is not None:
            conditions.append(pl.col("missed_dues") >= st.min_missed_dues)
        if conditions:
            stage = pl.when(pl.all_horizontal(conditions)).then(pl.lit(st.name)).otherwise(stage)
    return frame.with_columns(stage=stage)


def _holds(on_hold: pl.DataFrame | None, ids: pl.LazyFrame, n: int) -> pl.Series:
    """Per account (dense): on hold when any row of ``on_hold`` says so; unknown accounts are ignored."""
    held = pl.repeat(False, n, dtype=pl.Boolean, eager=True).alias("on_hold")
    if on_hold is None:
        return held
    aidx = (
        on_hold.lazy()
        .filter(pl.col("on_hold").fill_null(False))
        .join(ids, on="account_id", how="inner")
        .select("aidx")
        .unique()
        .collect()["aidx"]
    )
    return held.scatter(aidx, True)
