"""The snapshot of every account as of a date, computed over whole columns (docs/semantics.md).

``domain/delinquency.py`` is the readable specification, one account at a time with Decimal and loops;
this module computes the same for a whole portfolio, and a property test holds the two equal to the cent
and the day. Money is integer minor units throughout; rates are applied exactly as integer fractions
``num / 10**k`` and each charge is rounded once with integer arithmetic (never a float).

The rows are put once in the order (account, day) (one sort of rows that mostly arrive in order) and
everything after is a pass over sorted Int64 columns in numpy: running totals, running maxima, the first
and last row of each run, binary searches in sorted keys, no join and no group by hash. Polars reads the
inputs and builds the result. Steps 4 and 5 below run on a block of a few thousand accounts at a time
(``_blocks``), small enough for each column to stay in the core's cache across the passes. (On the
bench portfolio, 100,000 accounts: about 0.5 CPU seconds; the same steps as Polars queries, with
windows, as-of joins and merges, took 2.4.)

How it is computed:

1. **Accounts are numbered** 0..n-1 in account_id order (``aidx``), so a per-account figure is a dense
   array read with ``values[aidx]`` and written with ``values[aidx] = ...``; rows sorted by account_id
   find their number by one binary search per account (else by one join).
2. **Payments** with ``paid_on <= as_of`` are sorted by the packed key (account, day) (``_Keys``).
3. **Dues** are sorted by (account, due date, component rank, due_id): "the order". Running totals of the
   required parts and remainders, reset at each account (a global ``cumsum`` less the account's starting
   offset), make each tier one waterfall: what a due holds of a tier total ``T`` is
   ``clip(T - total_before, 0, amount)``.
4. **The ledger** (``_ledger``): payments are applied in the order they arrive, each day to the required
   parts of the dues payable that day, then to their remainders. Merging the days dues become payable
   with the payment days gives, per account and event, the tier totals ``R`` (required parts) and ``Q``
   (remainders) as running sums and one running maximum; each tier becomes an axis of money arriving
   over time (``_Axis``), and what a tier held at the end of any (account, day) is one binary search in
   the axis's keys. The anchor, the missed dues and the unpaid amounts follow from ``R(D)``, and the
   late fees from ``R`` at the end of each due date's grace days.
5. **Interest** (penalty and card) is ``Σ_days (amount − paid(d))``. On each tier's axis each due owns one
   slot and each row covers a slice of money that arrived on its day, so ``Σ_days paid(d)`` is the
   integral, over the due's two slots, of the number of accrual days after the money arrived: a
   piecewise-linear function of the position on the axis, evaluated with two binary searches per slot
   (no join of dues × payments). Only principal dues past due and not fully paid by their due date can
   bear interest; the rest are never looked at.
6. **The charges due now, card interest and credit** follow from the account totals; then the bucket, the
   stage and the hold, one row per account.

Payments and dues are non-negative (a reversal removes a payment; it is not a negative one): the paid
total never decreases, which is what makes "paid in full by the due date" final and the slots above exact.
Sums that might not fit Int64 (money × days over a huge portfolio) are done exactly with Python integers
instead (numpy object arrays): slower, never wrong.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from duecourse.domain.model import COMPONENTS, Component
from duecourse.domain.money import HALF_EVEN, HALF_UP, currency_spec, to_minor
from duecourse.domain.terms import (
    ATTRIBUTE_SCALE,
    CARD_INTEREST_MODES,
    CURRENT_STAGE,
    LATE_FEE_MODES,
    AttributeCondition,
    Terms,
)
from duecourse.engine.schema import JURISDICTION, SNAPSHOTS, attribute_column

__all__ = ["compute_snapshots"]

I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
# Int64, or Python integers (dtype object) where a sum might not fit Int64.
Exact = npt.NDArray[Any]

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
_NO_DAY = np.iinfo(np.int64).max  # a day column's null (no posting date), above every real day


def compute_snapshots(  # noqa: PLR0917 - the signature the run and the property test call
    accounts: pl.DataFrame,
    dues: pl.DataFrame,
    payments: pl.DataFrame,
    terms: Terms,
    as_of: dt.date,
    on_hold: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One snapshot row per account as of ``as_of`` (schema ``SNAPSHOTS``), sorted by account_id.

    ``dues`` may lack ``due_id`` (the daily run does not read it): the dues of an account on the same day
    with the same component are then taken in the order given, which must be the order of their due_id
    (the order of the dues' key, as ``repo.portfolio_chunks(for_run=True)`` reads them).

    When ``accounts`` has a Date column ``as_of``, each account is taken as of its own date there (null:
    ``as_of``): the stage history uses it to find the day an account entered its stage.
    """
    accts, params = _index_accounts(accounts, terms)
    book = _Book.of(accts)
    day_d = _AsOf.of(accts, as_of)
    payments = payments.filter(pl.col("paid_on") <= dt.date.fromordinal(day_d.latest + _EPOCH.toordinal()))
    _check_amounts(dues, payments)
    keys = _Keys.for_inputs(dues, payments, book.n, day_d.latest)
    # The payments are read beside the dues: numpy and Polars release the GIL in their loops.
    with ThreadPoolExecutor(max_workers=1) as pool:
        paid_job = pool.submit(_Payments.of, payments, book, keys, day_d)
        due_rows = _Dues.of(dues, book, params, keys)
        paid = paid_job.result()
    sums = _Sums.joined(
        [
            _block_sums(block_dues, block_paid, products, params, keys=keys, day_d=block_day)
            for block_dues, block_paid, products, block_day in _blocks(due_rows, paid, book, keys, day_d)
        ]
    )
    ids = accts.lazy().select("account_id", "aidx")
    return _assemble(accts, terms, params, sums, day_d=day_d, on_hold=_holds(on_hold, ids, book.n))


# Accounts are computed a block at a time, a block holding about this many dues: each column of a block
# (512 KB) stays in the core's cache across the many passes over it. Measured on the bench portfolio,
# 100,000 accounts in blocks of 5,000 took 40 % less CPU than in one block (and 2x fewer rows per block
# was no faster).
_BLOCK_ROWS = 1 << 16


def _blocks(
    dues: _Dues, paid: _Payments, book: _Book, keys: _Keys, day_d: _AsOf
) -> Iterator[tuple[_Dues, _Payments, I64, _AsOf]]:
    """The dues, payments, product of each account and as-of days of consecutive blocks of accounts.

    Each block numbers its accounts from 0 (``aidx`` less the block's first) and its keys likewise.
    """
    inner = set(dues.aidx[_BLOCK_ROWS::_BLOCK_ROWS].tolist()) - {0, book.n}
    edges = [0, *sorted(inner), book.n]  # at least one block, if empty
    due_cuts = np.searchsorted(dues.aidx, edges).tolist()
    pay_cuts = np.searchsorted(paid.aidx, edges).tolist()
    for i in range(len(edges) - 1):
        first, end = edges[i], edges[i + 1]
        yield (
            dues.block(due_cuts[i], due_cuts[i + 1], first, keys),
            paid.block(pay_cuts[i], pay_cuts[i + 1], first, keys),
            book.pidx[first:end],
            day_d.block(first, end),
        )


@dataclass(frozen=True, slots=True)
class _Sums:
    """What the snapshot reads of each account (dense arrays, in ``aidx`` order)."""

    required_total: I64
    remainder_total: I64
    req_past: I64  # the required parts of the dues due before D
    missed: I64  # distinct due dates with an unpaid required part
    unpaid: tuple[I64, ...]  # per component: the required parts past due and unpaid
    anchor_day: I64  # the oldest due left unpaid (where ``has_anchor``)
    has_anchor: Bools
    paid_total: I64
    held_req: I64  # what the required parts and the remainders hold as of D
    held_rem: I64
    penalty: I64
    card: I64
    late_fees: I64

    @classmethod
    def joined(cls, parts: list[_Sums]) -> _Sums:
        """The sums of consecutive blocks of accounts, as one."""
        if len(parts) == 1:
            return parts[0]
        unpaid = tuple(np.concatenate([part.unpaid[c] for part in parts]) for c in range(_N_COMP))
        columns = {
            name: np.concatenate([getattr(part, name) for part in parts])
            for name in cls.__dataclass_fields__
            if name != "unpaid"
        }
        return cls(unpaid=unpaid, **columns)


def _block_sums(
    dues: _Dues, paid: _Payments, products: I64, params: pl.DataFrame, *, keys: _Keys, day_d: _AsOf
) -> _Sums:
    """The sums of the accounts of one block (``products``: the ``pidx`` of each)."""
    n = len(products)
    held = _ledger(dues, paid, keys, n, day_d)
    figures = _due_figures(dues, held, products, params, keys=keys, day_d=day_d)
    penalty, card = _interest(figures, held, products, params, keys=keys, day_d=day_d)
    return _Sums(
        required_total=figures.required_total,
        remainder_total=figures.remainder_total,
        req_past=figures.req_past,
        missed=figures.missed,
        unpaid=figures.unpaid,
        anchor_day=figures.anchor_day,
        has_anchor=figures.has_anchor,
        paid_total=paid.totals(n),
        held_req=held[0].total,
        held_rem=held[1].total,
        penalty=penalty,
        card=card,
        late_fees=_late_fees(figures.late, products, params),
    )


# --- inputs and parameters ---------------------------------------------------------------------------


def _index_accounts(accounts: pl.DataFrame, terms: Terms) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Accounts sorted by id with their index ``aidx`` and product index ``pidx``; the product parameters."""
    columns = ["account_id", "product_code"] + [c for c in ("as_of", JURISDICTION) if c in accounts.columns]
    if terms.needs_jurisdiction and JURISDICTION not in accounts.columns:
        raise ValueError(
            "a strategy segment chooses by jurisdiction: the accounts need a 'jurisdiction' column "
            "(the customer's)"
        )
    for name, kind in terms.needed_attributes.items():
        column = attribute_column(name)
        wanted = pl.Int64() if kind == "number" else pl.String()
        if column not in accounts.columns or accounts.schema[column] != wanted:
            raise ValueError(
                f"a strategy segment chooses by the attribute {name}: the accounts need a {column!r} column "
                f"of {wanted} (services/attributes.with_attributes)"
            )
        columns.append(column)
    accts = accounts.select(columns)
    if not accts["account_id"].is_sorted():  # the run reads them in order
        accts = accts.sort("account_id")
    accts = accts.with_row_index("aidx")
    ids = accts["account_id"]
    duplicated = ids.slice(1).filter(ids.slice(1) == ids.slice(0, max(0, len(ids) - 1)))
    if len(duplicated):
        raise ValueError(f"duplicate account_id: {', '.join(duplicated.unique().sort().head(10).to_list())}")
    codes = sorted(accts["product_code"].unique().to_list())
    params = _product_params(terms, codes)
    pidx = (
        accts["product_code"].replace_strict(codes, list(range(len(codes))), return_dtype=pl.Int64)
        if codes
        else pl.Series([], dtype=pl.Int64)
    )
    return accts.with_columns(pidx=pidx), params


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
    # Derived from the above, for the kernels to read as they are.
    "charges_fee": pl.Boolean(),
    "charges_card": pl.Boolean(),
    "card_portion": pl.Boolean(),
    "charges_penalty": pl.Boolean(),
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
        row |= {
            "charges_fee": row["fee_mode"] in (_PERCENT, _FLAT),
            "charges_card": row["card_mode"] in (_FULL_AMOUNT, _UNPAID_PORTION) and card_num > 0,
            "card_portion": row["card_mode"] == _UNPAID_PORTION,
            "charges_penalty": pen_num > 0,
        }
        for c, component in enumerate(COMPONENTS):
            row[f"rank_{c}"] = order.index(component) if component in order else None
        # amount >= threshold in minor units; rounding the threshold up keeps it exact.
        for i, stage in enumerate(terms.all_stages()):
            row[f"stage_apd_{i}"] = _threshold(stage.min_amount_past_due, spec.minor_digits)
        for k, segment in enumerate(terms.segments):
            row[f"seg_product_{k}"] = not segment.when.products or code in segment.when.products
            row[f"seg_apd_{k}"] = _threshold(segment.when.min_amount_past_due, spec.minor_digits)
            row[f"seg_balance_{k}"] = _threshold(segment.when.min_balance, spec.minor_digits)
        rows.append(row)
    schema = dict(_PARAMS_SCHEMA)
    schema |= {f"rank_{c}": pl.Int64() for c in range(_N_COMP)}
    schema |= {f"stage_apd_{i}": pl.Int64() for i in range(len(terms.all_stages()))}
    for k in range(len(terms.segments)):
        schema |= {
            f"seg_product_{k}": pl.Boolean(),
            f"seg_apd_{k}": pl.Int64(),
            f"seg_balance_{k}": pl.Int64(),
        }
    return pl.DataFrame(rows, schema=schema)


def _threshold(amount: Decimal | None, minor_digits: int) -> int | None:
    """A lower bound in minor units, rounded up (``amount >= bound`` stays exact); None for none."""
    if amount is None:
        return None
    return int(amount.scaleb(minor_digits).to_integral_value(rounding=ROUND_CEILING))


def _dense(n: int, aidx: I64, values: I64) -> I64:
    """An array of n accounts holding ``values`` at ``aidx`` and 0 elsewhere."""
    out = np.zeros(n, dtype=np.int64)
    out[aidx] = values
    return out


def _is_sorted(values: I64) -> bool:
    return bool(np.all(values[1:] >= values[:-1]))


def _first_of(values: I64) -> Bools:
    """True on the first row of each run of equal values (the array is sorted by them)."""
    first = np.ones(len(values), dtype=np.bool_)
    np.not_equal(values[1:], values[:-1], out=first[1:])
    return first


@dataclass(frozen=True, slots=True)
class _Runs:
    """The runs of equal values of a sorted array (the rows of each account, or of each due date).

    Attributes:
        starts: the first row of each run.
        ends: the last row of each run.
    """

    starts: I64
    ends: I64

    @classmethod
    def of(cls, values: I64) -> _Runs:
        starts = np.flatnonzero(_first_of(values))
        ends = np.empty_like(starts)
        ends[:-1] = starts[1:] - 1
        ends[-1:] = len(values) - 1
        return cls(starts, ends)

    def spread(self, per_run: I64) -> I64:
        """One value per run, repeated on each of its rows."""
        return np.repeat(per_run, self.ends - self.starts + 1)

    def running(self, x: I64) -> I64:
        """The running total of x within each run, this row included."""
        total = np.cumsum(x)
        return total - self.spread((total - x)[self.starts])

    def restarted(self, total: I64) -> I64:
        """A global running total (non-decreasing) made to start again from 0 at each run."""
        before = np.zeros(len(self.starts), dtype=total.dtype)
        before[1:] = total[self.starts[1:] - 1]
        return total - self.spread(before)

    def sums(self, x: Exact) -> Exact:
        """The total of x over each run."""
        return np.add.reduceat(x, self.starts) if len(self.starts) else x[:0]


def _running_max(x: I64, aidx: I64, n: int) -> I64:
    """The running maximum of x >= 0 within each account (rows sorted by account).

    One global running maximum of x lifted by ``aidx × lift``: a later account's values are all above an
    earlier one's. When ``x`` is too large to lift in Int64, its ranks are lifted instead.
    """
    if not len(x):
        return x
    lift = int(x.max()) + 1
    if n * lift < _INT64_SAFE:
        lifted = aidx * lift
        return np.asarray(np.maximum.accumulate(x + lifted) - lifted, dtype=np.int64)
    values, rank = np.unique(x, return_inverse=True)
    lifted = aidx * len(values)
    return np.asarray(values[np.maximum.accumulate(rank.astype(np.int64) + lifted) - lifted], dtype=np.int64)


def _exact(values: Exact, wide: bool) -> Exact:
    """``values`` as Python integers when a computation on them might not fit Int64."""
    return values.astype(object) if wide else values


def _fits(*bounds: int) -> bool:
    """Whether a product of the (non-negative) bounds stays well inside Int64."""
    product = 1
    for bound in bounds:
        product *= max(bound, 0)
    return product < _INT64_SAFE


@dataclass(frozen=True, slots=True)
class _Book:
    """The accounts in ``aidx`` order: their ids (sorted) and product index, to number other rows by."""

    ids: pl.Series
    pidx: I64
    table: pl.DataFrame  # account_id, aidx

    @classmethod
    def of(cls, accts: pl.DataFrame) -> _Book:
        return cls(
            accts["account_id"],
            accts["pidx"].to_numpy().astype(np.int64),
            accts.select("account_id", pl.col("aidx").cast(pl.Int64)),
        )

    @property
    def n(self) -> int:
        return len(self.ids)

    def index(self, account_id: pl.Series) -> I64:
        """Each row's ``aidx`` (-1: an account not in the portfolio).

        Rows sorted by account_id (as the run reads them) take one binary search per account instead of
        a join of every row: measured 3-5x faster.
        """
        if not len(account_id) or not self.n:
            return np.full(len(account_id), -1, dtype=np.int64)
        runs = account_id.rle().struct.unnest()
        names = runs["value"]
        # Runs in increasing order: the rows are sorted by account (runs are never equal neighbours).
        if len(names) == self.n and names.equals(self.ids):  # every account has rows
            return np.repeat(np.arange(self.n, dtype=np.int64), runs["len"].to_numpy())
        if not names.null_count() and names.is_sorted():
            at = self.ids.search_sorted(names, side="left").to_numpy().astype(np.int64)
            at = np.minimum(at, self.n - 1)
            found = (self.ids.gather(at) == names).to_numpy()
            return np.repeat(np.where(found, at, -1), runs["len"].to_numpy())
        joined = account_id.to_frame("account_id").join(
            self.table, on="account_id", how="left", maintain_order="left"
        )
        return joined["aidx"].fill_null(-1).to_numpy().astype(np.int64)


@dataclass(frozen=True, slots=True)
class _AsOf:
    """The as-of day of each account (days since 1970): one for all, or each account its own."""

    day: int | None  # the day of every account, or None when they differ
    days: I64  # per account (dense) when they differ
    latest: int

    @classmethod
    def of(cls, accts: pl.DataFrame, as_of: dt.date) -> _AsOf:
        default = (as_of - _EPOCH).days
        none = np.zeros(0, dtype=np.int64)
        if "as_of" not in accts.columns:
            return cls(default, none, default)
        if accts.schema["as_of"] != pl.Date():
            raise ValueError(f"the accounts' as_of column must be Date, not {accts.schema['as_of']}")
        days = accts["as_of"].cast(pl.Int64).fill_null(default)
        low, high = days.min(), days.max()
        if not isinstance(low, int) or not isinstance(high, int) or low == high:
            day = high if isinstance(high, int) else default
            return cls(day, none, day)
        return cls(None, days.to_numpy().astype(np.int64), high)

    def block(self, first: int, end: int) -> _AsOf:
        """The days of the accounts first..end-1, numbered from 0."""
        return self if self.day is not None else _AsOf(None, self.days[first:end], self.latest)

    def at(self, aidx: I64) -> I64 | int:
        """The as-of day of each row's account (one number when they all have the same)."""
        return self.day if self.day is not None else self.days[aidx]


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
        days = [day_d]
        for column in (dues["due_date"], dues["posted_on"], payments["paid_on"]):
            physical = column.to_physical()
            days += [day for day in (physical.min(), physical.max()) if isinstance(day, int)]
        low, high = min(days), max(days)
        day_bits = (high - low + 3).bit_length()
        if n.bit_length() + day_bits + 3 > 62:
            raise ValueError(f"dates from {low} to {high} (days since 1970) span too long a time")
        return cls(low - 1, day_bits)

    @property
    def top(self) -> int:
        return (1 << self.day_bits) - 1

    def day_key(self, aidx: I64, day: I64) -> I64:
        """Key of (aidx, day); a day outside the inputs' range still keeps the account's order."""
        offset = np.clip(day - self.base, 0, self.top)
        return np.asarray((aidx << self.day_bits) + offset, dtype=np.int64)

    def day_of(self, key: I64) -> I64:
        return np.asarray((key & self.top) + self.base, dtype=np.int64)


def _last_at_or_before(sorted_values: I64, at: I64) -> I64:
    """For each of ``at``, the last row of ``sorted_values`` <= it (-1: none): binary searches.

    (A Polars as-of join, a merge pass, measured faster alone but slower inside the engine.)
    """
    return np.asarray(np.searchsorted(sorted_values, at, side="right") - 1, dtype=np.int64)


def _column(frame: pl.DataFrame, name: str, null: int = 0) -> I64:
    """An integer or date column as Int64 (days since 1970 for a date), ``null`` for a missing value."""
    column = frame[name].to_physical()
    if column.null_count():
        column = column.cast(pl.Int64).fill_null(null)
    return column.to_numpy().astype(np.int64, copy=False)


# --- payments ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Payments:
    """Payments up to each account's D with amount > 0, sorted by (account, day)."""

    aidx: I64
    pay: I64
    key: I64

    @classmethod
    def of(cls, payments: pl.DataFrame, book: _Book, keys: _Keys, day_d: _AsOf) -> _Payments:
        aidx = book.index(payments["account_id"])
        pay = _column(payments, "amount_minor")
        day = _column(payments, "paid_on", _NO_DAY)
        # (An unknown account's -1 reads the last account's day: the row is left out either way.)
        keep = (aidx >= 0) & (pay > 0) & (day <= day_d.at(aidx))
        aidx, pay, day = aidx[keep], pay[keep], day[keep]
        key = keys.day_key(aidx, day)
        if not _is_sorted(key):  # payments read back in order need no sort
            order = np.argsort(key, kind="stable")
            aidx, pay, key = aidx[order], pay[order], key[order]
        return cls(aidx, pay, key)

    def block(self, start: int, stop: int, first: int, keys: _Keys) -> _Payments:
        """Rows start..stop-1, the accounts from ``first`` on numbered from 0."""
        shift = first << keys.day_bits
        return _Payments(self.aidx[start:stop] - first, self.pay[start:stop], self.key[start:stop] - shift)

    def totals(self, n: int) -> I64:
        """What each account paid up to its D (dense)."""
        if not len(self.aidx):
            return np.zeros(n, dtype=np.int64)
        runs = _Runs.of(self.aidx)
        return _dense(n, self.aidx[runs.starts], runs.sums(self.pay))


# --- dues --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Dues:
    """The dues of known accounts in the order: (account, due date, component rank, due_id).

    Attributes:
        aidx, day, comp (index in COMPONENTS), req, rem (minor units), posted (day, or ``_NO_DAY``).
        key: the (account, due date) key; ``accounts`` and ``dates`` its runs by account and by date
            (found per block, see ``block``).
    """

    aidx: I64
    day: I64
    comp: I64
    req: I64
    rem: I64
    posted: I64
    key: I64
    accounts: _Runs
    dates: _Runs

    @classmethod
    def of(cls, dues: pl.DataFrame, book: _Book, params: pl.DataFrame, keys: _Keys) -> _Dues:
        ranks = [rank for row in params.select(f"rank_{c}" for c in range(_N_COMP)).rows() for rank in row]
        rank_table = np.array([-1 if rank is None else rank for rank in ranks] or [-1], dtype=np.int64)
        rank_bits = max(1, max((rank for rank in ranks if rank is not None), default=0).bit_length())
        aidx = book.index(dues["account_id"])
        known = aidx >= 0
        every = bool(known.all())

        def kept(values: I64) -> I64:
            return values if every else values[known]

        # The component's index in COMPONENTS (-1 when unknown): one comparison per component, which is
        # 2.5 times faster than a cast to an enum of them (that looks each text up in a table).
        code = pl.lit(-1, dtype=pl.Int64)
        for c, name in enumerate(COMPONENTS):
            code = pl.when(pl.col("component") == name).then(pl.lit(c, dtype=pl.Int64)).otherwise(code)
        comp = kept(dues.select(code).to_series().to_numpy())
        aidx = kept(aidx)
        if (comp < 0).any():
            component = dues["component"] if every else dues["component"].filter(pl.Series(known))
            unknown = component.filter(pl.Series(comp < 0)).unique().sort().to_list()
            raise ValueError(f"unknown due component(s) {unknown}; known: {', '.join(COMPONENTS)}")
        pidx = book.pidx[aidx]
        rank = rank_table[pidx * _N_COMP + comp]
        if (rank < 0).any():
            row = int(np.flatnonzero(rank < 0)[0])
            raise ValueError(
                f"product {params['code'][int(pidx[row])]}: the allocation order lacks "
                f"{COMPONENTS[int(comp[row])]!r}, which its dues use"
            )
        amount = kept(_column(dues, "amount_minor"))
        minimum = kept(_column(dues, "minimum_minor", -1))  # minimums are never negative
        req = np.where(minimum < 0, amount, np.minimum(minimum, amount))
        day = kept(_column(dues, "due_date"))
        posted = kept(_column(dues, "posted_on", _NO_DAY))
        key = keys.day_key(aidx, day)
        # Sorting on one Int64 is several times faster than on four columns with a string among them. Dues
        # tied on (account, date, rank) keep the order of their due_id (docs/semantics.md): only when the
        # portfolio has such ties does the engine sort again with due_id. Without a due_id column the
        # dues come in that order (the run reads them by their key): the stable sort keeps it.
        order = (key << rank_bits) | rank
        perm = None if _is_sorted(order) else np.argsort(order, kind="stable")
        ordered = order if perm is None else order[perm]
        if "due_id" in dues.columns and (ordered[1:] == ordered[:-1]).any():
            due_id = dues["due_id"] if every else dues["due_id"].filter(pl.Series(known))
            perm = (
                pl.DataFrame({"order": order, "due_id": due_id})
                .with_row_index("row")
                .sort(["order", "due_id"], maintain_order=True)["row"]
                .to_numpy()
                .astype(np.int64)
            )
        if perm is not None:
            order, comp, req, amount, posted = (column[perm] for column in (order, comp, req, amount, posted))
            # The account and the day are read back from the key: cheaper than moving them too.
            key = order >> rank_bits
            aidx, day = key >> keys.day_bits, keys.day_of(key)
        none = _Runs(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        return cls(aidx, day, comp, req, amount - req, posted, key, none, none)

    def block(self, start: int, stop: int, first: int, keys: _Keys) -> _Dues:
        """Rows start..stop-1, the accounts from ``first`` on numbered from 0, with their runs."""
        aidx, key = self.aidx[start:stop] - first, self.key[start:stop] - (first << keys.day_bits)
        return _Dues(
            aidx,
            self.day[start:stop],
            self.comp[start:stop],
            self.req[start:stop],
            self.rem[start:stop],
            self.posted[start:stop],
            key,
            _Runs.of(aidx),
            _Runs.of(key),
        )


# --- the ledger --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Axis:
    """Money arriving over time per account, laid end to end on one global axis, sorted by (account, day).

    The money held by the dues' required parts (``R``) and by their remainders (``Q``), see ``_ledger``.

    Attributes:
        aidx, day, pay (> 0), key: one row per (account, day) the tier gained money.
        cum: the global running total, this row included.
        total: per account (dense), the account's total as of D.
        start: per account (dense), the global running total before the account's first row, so that a
            global running total less ``start`` is the account's own.
    """

    aidx: I64
    day: I64
    pay: I64
    key: I64
    cum: I64
    total: I64
    start: I64

    @classmethod
    def of(cls, held: I64, key: I64, accounts: _Runs, keys: _Keys, n: int) -> _Axis:
        """From what an account's tier holds after each (account, day) ``key`` (sorted; runs by account)."""
        gained = np.diff(held, prepend=0)
        gained[accounts.starts] = held[accounts.starts]
        keep = np.flatnonzero(gained > 0)
        key, pay = key[keep], gained[keep]
        aidx = key >> keys.day_bits
        total = np.zeros(n, dtype=np.int64)
        if len(aidx):
            runs = _Runs.of(aidx)
            total = _dense(n, aidx[runs.starts], runs.sums(pay))
        return cls(aidx, keys.day_of(key), pay, key, np.cumsum(pay), total, np.cumsum(total) - total)

    def held_at(self, aidx: I64, key: I64, where: Bools | None = None) -> I64:
        """What each account's tier held at the end of its (account, day) ``key``.

        With ``where``, only those rows are looked up (0 elsewhere): the remainders of dues that have
        none (loan instalments, card fees) need no search, what they hold is nothing.
        """
        if where is not None:
            held = np.zeros(len(key), dtype=np.int64)
            if where.any():
                held[where] = self.held_at(aidx[where], key[where])
            return held
        if not len(self.key):
            return np.zeros(len(key), dtype=np.int64)
        at = _last_at_or_before(self.key, key)
        held = self.cum[at]
        held[at < 0] = 0
        return np.asarray(held - self.start[aidx], dtype=np.int64)


def _through(values: I64, count: I64) -> I64:
    """The total of the first ``count`` values, for each count."""
    total = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(values, out=total[1:])
    return total[count]


def _ledger(dues: _Dues, paid: _Payments, keys: _Keys, n: int, day_d: _AsOf) -> tuple[_Axis, _Axis]:
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
    aidx = dues.aidx
    # A due without a posting date is payable from the posting of its due date's statement, if any.
    posted = dues.posted
    has_posted = posted != _NO_DAY
    if has_posted.any() and not has_posted.all():
        statement = dues.dates.spread(np.minimum.reduceat(posted, dues.dates.starts))
        posted = np.where(has_posted, posted, statement)
        has_posted = posted != _NO_DAY
    posted_key = keys.day_key(aidx, np.where(has_posted, posted, keys.base))  # base: offset 0, the start
    # Never payable before a due earlier in the order: the running maximum (accounts ascend, so a global
    # running maximum stays within the account). Nothing becomes payable after D.
    opens = np.maximum.accumulate(posted_key) if len(posted_key) else posted_key
    payable = keys.day_of(opens) <= day_d.at(aidx)
    due_key = opens[payable]
    event_key = np.concatenate([due_key, paid.key])
    # Two sorted runs: numpy's stable sort (timsort) merges them in one pass.
    order = np.argsort(event_key, kind="stable")
    event_key = event_key[order]
    # The last event of each (account, day), and how many payments and dues are at or before it: each
    # stream's global running total is read there. Each stream keeps its order in the merge, so an event
    # that is the stream's i-th at position j has i + 1 of its stream and j - i of the other at or before it.
    last = np.ones(len(event_key), dtype=np.bool_)
    np.not_equal(event_key[1:], event_key[:-1], out=last[:-1])
    at = np.flatnonzero(last)
    which = order[at]
    is_payment = which >= len(due_key)
    nth = np.where(is_payment, which - len(due_key), which)  # within its stream
    pays_through = np.where(is_payment, nth + 1, at - nth)
    dues_through = at + 1 - pays_through
    paid_in = _through(paid.pay, pays_through)
    req_in = _through(dues.req[payable], dues_through)
    rem_in = _through(dues.rem[payable], dues_through)
    key = event_key[at]
    event_aidx = key >> keys.day_bits
    accounts = _Runs.of(event_aidx)
    p, c_req, c_rem = (accounts.restarted(total) for total in (paid_in, req_in, rem_in))
    q = _running_max(np.maximum(np.minimum(c_rem, p - c_req), 0), event_aidx, n)
    r = np.minimum(c_req, p - q)
    return (
        _Axis.of(r, key, accounts, keys, n),
        _Axis.of(q, key, accounts, keys, n),
    )


# --- what the dues say ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Candidates:
    """Principal dues that may bear interest, with what their tiers held at the end of their due date.

    Attributes:
        aidx, day, posted, req, rem: the due's.
        req_before, rem_before: what the dues before it in the order take of each tier (its slots start).
        held_req, held_rem: what the account's tiers held at the end of the due date (``Rt``, ``Qt``;
            ``Qt`` is 0 for a due without a remainder, whose slot on that axis is empty).
        portion: the product charges card interest on the unpaid portion only.
    """

    aidx: I64
    day: I64
    posted: I64
    req: I64
    rem: I64
    req_before: I64
    rem_before: I64
    held_req: I64
    held_rem: I64
    portion: Bools

    def __len__(self) -> int:
        return len(self.aidx)


@dataclass(frozen=True, slots=True)
class _LateDates:
    """One row per due date left partly unpaid at the end of its grace days, of products with a late fee."""

    aidx: I64
    shortfall: I64  # the required total of the date less what was paid of it by the end of the grace days
    required: I64  # the required total of the date (the minimum payment due)


@dataclass(frozen=True, slots=True)
class _DueFigures:
    """What the dues say per account (dense arrays of n) and the rows the charges start from."""

    required_total: I64
    remainder_total: I64
    req_past: I64  # the required parts of the dues due before D
    missed: I64  # distinct due dates with an unpaid required part
    unpaid: tuple[I64, ...]  # per component: the required parts past due and unpaid
    anchor_day: I64  # the oldest due left unpaid (where ``has_anchor``)
    has_anchor: Bools
    late: _LateDates
    # Principal dues past due and not fully paid by the end of their due date, of products that charge
    # penalty interest, and of products that charge card interest (with a posting date).
    penalty: _Candidates
    card: _Candidates


def _param(params: pl.DataFrame, column: str) -> npt.NDArray[Any]:
    """A per-product value, indexed by ``pidx``: a column of ``_product_params`` (read many times per
    call, once per block: a column, not an expression to evaluate, which took Polars 0.3 ms each)."""
    return params[column].to_numpy()


def _due_figures(  # noqa: PLR0914 - one pass over the dues, each figure named once
    dues: _Dues, held: tuple[_Axis, _Axis], products: I64, params: pl.DataFrame, *, keys: _Keys, day_d: _AsOf
) -> _DueFigures:
    """The past-due parts, the late fee shortfalls and the interest candidates, from the sorted dues."""
    held_req, held_rem = held
    n = len(products)
    aidx, day, req, rem, accounts = dues.aidx, dues.day, dues.req, dues.rem, dues.accounts
    pidx = products[aidx]
    as_of = day_d.at(aidx)
    required = accounts.running(req)  # through this due
    remainder = accounts.running(rem)
    required_before, remainder_before = required - req, remainder - rem
    is_past = day < as_of
    owners = aidx[accounts.starts]
    # The last due before D: past, and the last of its account or followed by one that is not past.
    last_past = np.ones(len(day), dtype=np.bool_)
    np.greater_equal(day[1:], as_of if isinstance(as_of, int) else as_of[:-1], out=last_past[:-1])
    last_past[accounts.ends] = True
    last_past &= is_past

    # The required part of a past-due due left unpaid as of D (few rows: the arrears).
    paid_d = held_req.total[aidx]  # what the required parts hold as of D
    owing = np.flatnonzero(is_past & (req > 0) & (paid_d < required))
    unpaid = req[owing] - np.clip(paid_d[owing] - required_before[owing], 0, req[owing])
    arrears = _Runs.of(aidx[owing])
    debtors = aidx[owing][arrears.starts]
    unpaid_by_component = tuple(
        _dense(n, debtors, arrears.sums(np.where(dues.comp[owing] == c, unpaid, 0))) for c in range(_N_COMP)
    )
    has_anchor = np.zeros(n, dtype=np.bool_)
    has_anchor[debtors] = True

    # Late fees: a due date's required total and what of it was unpaid at the end of its grace days,
    # read at the date's last due, once the grace days are over.
    on_time_until = day + _param(params, "grace_days").astype(np.int64)[pidx]  # 容时
    grace_over = on_time_until < as_of
    charges_fee = _param(params, "charges_fee")[pidx]
    dates = dues.dates
    pick = (grace_over & charges_fee)[dates.ends]
    ends, date_start = dates.ends[pick], required_before[dates.starts[pick]]
    # Card interest asks the same of the principal dues (mostly the last of their date): one search.
    principal = dues.comp == _PRINCIPAL
    charges_card = _param(params, "charges_card")[pidx]
    bears_card = grace_over & principal & (dues.posted != _NO_DAY) & charges_card
    at_grace_end = bears_card.copy()
    at_grace_end[ends] = True
    asked = np.flatnonzero(at_grace_end)
    held_g = np.zeros(len(day), dtype=np.int64)
    held_g[asked] = held_req.held_at(aidx[asked], keys.day_key(aidx[asked], on_time_until[asked]))
    required_t = required[ends] - date_start
    shortfall = required_t - np.clip(held_g[ends] - date_start, 0, required_t)
    late = shortfall > 0

    # Interest accrues only on principal. A due paid in full by the end of its due date bears no penalty
    # interest, and one paid in full within its grace days no card interest (what the dues hold never
    # decreases, so it stays paid): the only rows the interest kernel looks at.
    def still_owed(rows: I64, at: I64, r: I64 | None = None) -> tuple[I64, I64, I64]:
        """The rows not paid in full at the end of their key ``at``, with what the tiers held then."""
        r = held_req.held_at(aidx[rows], at) if r is None else r
        q = held_rem.held_at(aidx[rows], at, where=rem[rows] > 0)
        paid = np.clip(r - required_before[rows], 0, req[rows]) + np.clip(
            q - remainder_before[rows], 0, rem[rows]
        )
        owed = req[rows] + rem[rows] - paid > 0
        return rows[owed], r[owed], q[owed]

    def candidates(rows: I64, r: I64, q: I64) -> _Candidates:
        portion = _param(params, "card_portion")[pidx[rows]]
        return _Candidates(
            aidx[rows],
            day[rows],
            dues.posted[rows],
            req[rows],
            rem[rows],
            required_before[rows],
            remainder_before[rows],
            r,
            q,
            portion,
        )

    charges_penalty = _param(params, "charges_penalty")[pidx]
    pen_rows = np.flatnonzero(is_past & principal & charges_penalty)
    penalty = candidates(*still_owed(pen_rows, dues.key[pen_rows]))
    rows = np.flatnonzero(bears_card)
    card_rows, _, _ = still_owed(rows, keys.day_key(aidx[rows], on_time_until[rows]), held_g[rows])
    card = candidates(
        card_rows,
        held_req.held_at(aidx[card_rows], dues.key[card_rows]),
        held_rem.held_at(aidx[card_rows], dues.key[card_rows], where=rem[card_rows] > 0),
    )
    return _DueFigures(
        required_total=_dense(n, owners, required[accounts.ends]),
        remainder_total=_dense(n, owners, remainder[accounts.ends]),
        req_past=_dense(n, aidx[last_past], required[last_past]),
        missed=_dense(n, debtors, arrears.sums(_first_of(dues.key[owing]).astype(np.int64))),
        unpaid=unpaid_by_component,
        anchor_day=_dense(n, debtors, day[owing][arrears.starts]),
        has_anchor=has_anchor,
        late=_LateDates(aidx[ends][late], shortfall[late], required_t[late]),
        penalty=penalty,
        card=card,
    )


# --- charges -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rate:
    """A product's rate ``num / den`` and its currency's rounding, for each row's ``pidx``."""

    num: list[int]
    den: list[int]
    half_even: Bools

    @classmethod
    def of(cls, params: pl.DataFrame, rate: str) -> _Rate:
        return cls(
            params[f"{rate}_num"].to_list(),
            params[f"{rate}_den"].to_list(),
            params["half_even"].to_numpy().astype(np.bool_),
        )

    def applied(self, amount: Exact, pidx: I64) -> I64:
        """round(amount × num / den) for amount >= 0 by the currency's rule, exactly.

        In Int64 when ``amount × num`` and ``2 × den`` fit, else with Python integers.
        """
        if not len(amount):
            return np.zeros(0, dtype=np.int64)
        wide = amount.dtype == object or not (
            _fits(int(amount.max()), max(self.num)) and _fits(2, max(self.den))
        )
        dtype = object if wide else np.int64
        num = np.array(self.num, dtype=dtype)[pidx]
        den = np.array(self.den, dtype=dtype)[pidx]
        scaled = _exact(amount, wide) * num
        quotient = scaled // den
        twice_rest = (scaled - quotient * den) * 2
        half_up = quotient + (twice_rest >= den)  # (2 × scaled + den) // (2 × den)
        up = (twice_rest > den) | ((twice_rest == den) & (quotient % 2 == 1))
        rounded = np.where(self.half_even[pidx], quotient + up, half_up)
        return np.asarray(rounded.astype(np.int64), dtype=np.int64)


def _late_fees(late: _LateDates, products: I64, params: pl.DataFrame) -> I64:
    """违约金 / late fee (CN-FEE-05), once per due date t < D whose required total was unpaid at t."""
    if not len(late.aidx):
        return np.zeros(len(products), dtype=np.int64)
    pidx = products[late.aidx]

    def p(column: str, null: int = 0) -> I64:
        return np.array([null if v is None else v for v in params[column].to_list()], dtype=np.int64)[pidx]

    pct = _Rate.of(params, "fee").applied(late.shortfall, pidx)
    floor, cap = p("fee_floor", -1), p("fee_cap", -1)  # -1: none (amounts are never negative)
    pct = np.where((floor >= 0) & (pct < floor), floor, pct)
    pct = np.where((cap >= 0) & (pct > cap), cap, pct)
    mode = p("fee_mode")
    fee = np.where(mode == _PERCENT, pct, np.where(mode == _FLAT, p("fee_flat"), 0))
    # Reg Z 1026.52(b): with limit_to_minimum, never more than the minimum payment due that date.
    fee = np.where(p("fee_limit") != 0, np.minimum(fee, late.required), fee)
    accounts = _Runs.of(late.aidx)
    return _dense(len(products), late.aidx[accounts.starts], accounts.sums(fee))


def _interest(
    figures: _DueFigures,
    held: tuple[_Axis, _Axis],
    products: I64,
    params: pl.DataFrame,
    *,
    keys: _Keys,
    day_d: _AsOf,
) -> tuple[I64, I64]:
    """Penalty interest (罚息, CN-LOAN-01) and card interest (全额计息, CN-FEE-06) per account, rounded once.

    For a due with accrual days a..D: ``Σ_d (amount − paid(d)) = amount × days − Σ_d paid(d)``, where
    paid(d) is what the due's required part and remainder held at the end of day d (charges left out,
    docs/semantics.md). See ``_MoneyIntegral`` for ``Σ_d paid(d)``.
    """
    pen, card = figures.penalty, figures.card
    if not len(pen) and not len(card):
        zeros = np.zeros(len(products), dtype=np.int64)
        return zeros, zeros
    held_req, held_rem = held
    integral = _MoneyIntegral(held_req, held_rem, day_d)
    # Penalty: days due_date+1 .. D; money that the due held by its due date counts on each of them.
    pen_sum = integral.unpaid_days(pen, day_d.at(pen.aidx) - pen.day, pen.held_req, pen.held_rem)
    # Card, full amount: days posted_on .. D, both ends counted; a payment on day d lowers that day's
    # balance, so money counts from its own day (money held before posting, on every day). Unpaid
    # portion: a day before the due date counts the balance left at the due date, so money held by the
    # due date counts on every day of the range.
    before_posting = keys.day_key(card.aidx, card.posted - 1)
    req_before_posting = held_req.held_at(card.aidx, before_posting)
    rem_before_posting = held_rem.held_at(card.aidx, before_posting, where=card.rem > 0)
    split_req = np.where(card.portion, np.maximum(card.held_req, req_before_posting), req_before_posting)
    split_rem = np.where(card.portion, np.maximum(card.held_rem, rem_before_posting), rem_before_posting)
    days = np.maximum(day_d.at(card.aidx) - card.posted + 1, 0)
    card_sum = integral.unpaid_days(card, days, split_req, split_rem)
    return (
        _round_per_account(pen.aidx, pen_sum, "pen", products, params),
        _round_per_account(card.aidx, card_sum, "card", products, params),
    )


def _round_per_account(aidx: I64, balance_days: Exact, rate: str, products: I64, params: pl.DataFrame) -> I64:
    """Each account's Σ balance × days, times the product's daily rate, rounded once (dense)."""
    if not len(aidx):
        return np.zeros(len(products), dtype=np.int64)
    # Summed in Int64 unless the largest possible total might not fit.
    wide = balance_days.dtype == object or not _fits(int(balance_days.max()), len(balance_days))
    accounts = _Runs.of(aidx)
    owners = aidx[accounts.starts]
    rounded = _Rate.of(params, rate).applied(accounts.sums(_exact(balance_days, wide)), products[owners])
    return _dense(len(products), owners, rounded)


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

    __slots__ = ("axes", "tables", "wide")

    def __init__(self, held_req: _Axis, held_rem: _Axis, day_d: _AsOf) -> None:
        self.axes = {"req": held_req, "rem": held_rem}
        # Σ pay × days over a whole portfolio fits Int64 in practice; Python integers when it might not.
        self.wide = False
        for axis in self.axes.values():
            if len(axis.pay):
                span = day_d.latest + 1 - int(axis.day.min())
                self.wide |= not _fits(int(axis.pay.max()), len(axis.pay), max(span, 1))
        self.tables: dict[str, tuple[I64, Exact, Exact]] = {}
        for slot, axis in self.axes.items():
            weight = _exact(day_d.at(axis.aidx) + 1 - axis.day, self.wide)
            weighted = _exact(axis.pay, self.wide) * weight
            # (the row's start on the axis, strictly increasing: every row is > 0; its count of days;
            # G at its start)
            self.tables[slot] = (axis.cum - axis.pay, weight, np.cumsum(weighted) - weighted)

    def _g(self, slot: str, at: I64) -> Exact:
        """G(at) on the slot's axis: the row covering ``at`` is the last to start at or before it."""
        start, weight, before = self.tables[slot]
        row = _last_at_or_before(start, at)
        return np.asarray(before[row] + _exact(at - start[row], self.wide) * weight[row])

    def unpaid_days(self, cands: _Candidates, days: I64, split_req: I64, split_rem: I64) -> Exact:
        """For each due: Σ over its ``days`` accrual days of (amount − paid(d)), in minor units × days."""
        if not len(cands):
            return np.zeros(0, dtype=np.int64)
        amount = cands.req + cands.rem
        # amount × days (and every term below it) fits Int64 in practice; Python integers when it might not.
        wide = self.wide or not _fits(int(amount.max()), int(days.max()))
        days_x = _exact(days, wide)
        total = _exact(amount, wide) * days_x
        slots = {
            "req": (cands.req_before, cands.req, split_req),
            "rem": (cands.rem_before, cands.rem, split_rem),
        }
        for slot, (before, size, split) in slots.items():
            axis = self.axes[slot]
            held_d = axis.total[cands.aidx]
            lo = np.clip(before, 0, held_d)
            hi = np.clip(before + size, 0, held_d)
            split_at = np.clip(split, 0, held_d)
            # Money in the slot that arrived by the split counts on every accrual day.
            total = total - _exact(np.maximum(np.minimum(hi, split_at) - lo, 0), wide) * days_x
            # The rest, [late_lo, hi), counts from its own day: G(hi) − G(late_lo). Along the axis late_lo
            # and hi each grow from one due to the next, so each binary search runs in order.
            start = axis.start[cands.aidx]
            late_lo = start + np.minimum(np.maximum(lo, split_at), hi)
            late_hi = start + hi
            has_late = np.flatnonzero(late_hi > late_lo)
            if not len(has_late):
                continue
            late = self._g(slot, late_hi[has_late]) - self._g(slot, late_lo[has_late])
            total[has_late] -= _exact(late, wide)
        return total


# --- the snapshot ------------------------------------------------------------------------------------


def _assemble(  # noqa: PLR0914 - one row per account, each figure named once
    accts: pl.DataFrame,
    terms: Terms,
    params: pl.DataFrame,
    sums: _Sums,
    *,
    day_d: _AsOf,
    on_hold: pl.Series,
) -> pl.DataFrame:
    """The snapshot rows (schema ``SNAPSHOTS``): days past due, amounts past due by component,
    outstanding and credit, the bucket and the stage."""
    n = accts.height
    pidx = accts["pidx"].to_numpy().astype(np.int64)
    pen, fee, card, paid_total = sums.penalty, sums.late_fees, sums.card, sums.paid_total
    held_req, held_rem = sums.held_req, sums.held_rem
    penalty_first = _param(params, "penalty_first")[pidx]
    # The charges due now rank before anything not yet past due: they are paid from everything paid
    # except what the past-due required parts hold, in product order of their components.
    held_past = np.minimum(held_req, sums.req_past)  # the past-due dues are the first in the order
    left = paid_total - held_past
    first_charge = np.where(penalty_first, pen, fee)
    paid_first = np.minimum(left, first_charge)
    paid_second = np.minimum(np.maximum(left - first_charge, 0), np.where(penalty_first, fee, pen))
    pen_paid = np.where(penalty_first, paid_first, paid_second)
    fee_paid = np.where(penalty_first, paid_second, paid_first)
    # They take the credit first; card interest is paid from what credit is left.
    credit = paid_total - held_req - held_rem
    credit_left = np.maximum(credit - pen_paid - fee_paid, 0)
    credit_after = credit_left - np.minimum(credit_left, card)
    as_of = day_d.at(np.arange(n, dtype=np.int64))
    days_past_due = np.where(sums.has_anchor, as_of - sums.anchor_day, 0)
    grace = _param(params, "grace_days").astype(np.int64)[pidx]
    delinquency_days = np.maximum(days_past_due - grace, 0)
    owed = sums.required_total + sums.remainder_total + pen + fee + card
    past_due = {
        "principal_past_due_minor": sums.unpaid[_PRINCIPAL],
        "interest_past_due_minor": sums.unpaid[_INTEREST],
        "fee_past_due_minor": sums.unpaid[_FEE] + fee - fee_paid,
        "penalty_past_due_minor": sums.unpaid[_PENALTY] + pen - pen_paid,
    }
    amount_past_due = sum(past_due.values(), np.zeros(n, dtype=np.int64))
    outstanding = owed - paid_total + credit_after
    oldest = pl.Series(sums.anchor_day.astype(np.int32)).cast(pl.Date)
    columns: dict[str, pl.Series | I64] = {
        "account_id": accts["account_id"],
        "as_of": pl.Series(np.broadcast_to(as_of, (n,)).astype(np.int32)).cast(pl.Date),
        "currency": params["currency"].gather(pidx),
        "days_past_due": days_past_due,
        "delinquency_days": delinquency_days,
        "bucket": _buckets(accts, terms, params, pidx, delinquency_days),
        "amount_past_due_minor": amount_past_due,
        **past_due,
        "oldest_unpaid_due_date": oldest.set(pl.Series(~sums.has_anchor), None),
        "missed_dues": sums.missed,
        "stage": _stages(
            terms,
            params,
            pidx,
            _Figures(days_past_due, delinquency_days, amount_past_due, sums.missed, outstanding),
            accts,
        ),
        "on_hold": on_hold,
        "outstanding_minor": outstanding,
        "credit_minor": credit_after,
        "penalty_interest_minor": pen,
        "card_interest_minor": card,
        "late_fees_minor": fee,
    }
    return pl.DataFrame([pl.Series(name, columns[name]).cast(dtype) for name, dtype in SNAPSHOTS.items()])


def _buckets(
    accts: pl.DataFrame, terms: Terms, params: pl.DataFrame, pidx: I64, delinquency_days: I64
) -> pl.Series:
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
    position = np.array(offsets, dtype=np.int64)[pidx] + np.minimum(
        delinquency_days, np.array(caps, dtype=np.int64)[pidx]
    )
    buckets = pl.Series(names, dtype=pl.String).gather(position)
    if buckets.null_count():
        row = int(np.flatnonzero(buckets.is_null().to_numpy())[0])
        raise ValueError(
            f"the bucket set of product {accts['product_code'][row]} does not cover "
            f"{delinquency_days[row]} days"
        )
    return buckets


@dataclass(frozen=True, slots=True)
class _Figures:
    """Per account (dense), the figures stages and segments choose by (amounts in minor units)."""

    days_past_due: I64
    delinquency_days: I64
    amount_past_due: I64
    missed_dues: I64
    balance: I64


def _segments(terms: Terms, params: pl.DataFrame, pidx: I64, figures: _Figures, accts: pl.DataFrame) -> I64:
    """Per account, 0 for the default segment or k + 1 for ``terms.segments[k]``: the first that matches
    (``delinquency.choose_segment``). ``accts``: the indexed accounts, with the jurisdiction and the
    attributes the segments need (``_index_accounts`` checks that they are there)."""
    chosen = np.zeros(len(pidx), dtype=np.int64)
    # From last to first: an earlier segment that matches replaces a later one.
    for k in reversed(range(len(terms.segments))):
        when = terms.segments[k].when
        conditions: list[Bools] = [_param(params, f"seg_product_{k}").astype(bool)[pidx]]
        if when.jurisdictions:
            jurisdiction = accts[JURISDICTION]
            conditions.append(jurisdiction.is_in(list(when.jurisdictions)).fill_null(False).to_numpy())
        for condition in when.attributes:
            conditions.append(_attribute_holds(accts[attribute_column(condition.name)], condition))
        if when.min_amount_past_due is not None:
            conditions.append(
                figures.amount_past_due >= _param(params, f"seg_apd_{k}").astype(np.int64)[pidx]
            )
        if when.min_balance is not None:
            conditions.append(figures.balance >= _param(params, f"seg_balance_{k}").astype(np.int64)[pidx])
        chosen = np.where(np.logical_and.reduce(conditions), k + 1, chosen)
    return chosen


def _attribute_holds(values: pl.Series, condition: AttributeCondition) -> Bools:
    """Whether each account's attribute meets ``condition`` (no value: no)."""
    if condition.kind == "text":
        found = values.is_in(list(condition.values))
    else:
        found = pl.Series(np.ones(len(values), dtype=bool))
        if condition.min is not None:
            found = found & (values >= scaled_attribute(condition.min))
        if condition.max is not None:
            found = found & (values <= scaled_attribute(condition.max))
    return found.fill_null(False).to_numpy().astype(bool)


def scaled_attribute(value: Decimal) -> int:
    """A number attribute in the engine's exact integer units (10**-ATTRIBUTE_SCALE)."""
    return int(value.scaleb(ATTRIBUTE_SCALE).to_integral_value())


def _stages(
    terms: Terms, params: pl.DataFrame, pidx: I64, figures: _Figures, accts: pl.DataFrame
) -> pl.Series:
    """The most severe stage of the account's segment whose set conditions all hold (thresholds
    inclusive), else ``current``.

    A stage with no condition set never matches (the reading of ``delinquency.choose_stage``).
    """
    segment = _segments(terms, params, pidx, figures, accts) if terms.segments else None
    chosen = np.zeros(len(pidx), dtype=np.int64)  # 0: current; i + 1: terms.all_stages()[i]
    i = 0
    for k, (_, ladder) in enumerate(terms.ladders()):
        mine = None if segment is None else segment == k
        # From least to most severe: a later (more severe) stage that holds replaces an earlier one.
        for st in ladder:
            conditions: list[Bools] = []
            if st.min_days_past_due is not None:
                conditions.append(figures.days_past_due >= st.min_days_past_due)
            if st.min_delinquency_days is not None:
                conditions.append(figures.delinquency_days >= st.min_delinquency_days)
            if st.min_amount_past_due is not None:
                threshold = _param(params, f"stage_apd_{i}").astype(np.int64)[pidx]
                conditions.append(figures.amount_past_due >= threshold)
            if st.min_missed_dues is not None:
                conditions.append(figures.missed_dues >= st.min_missed_dues)
            if conditions:
                if mine is not None:
                    conditions.append(mine)
                chosen = np.where(np.logical_and.reduce(conditions), i + 1, chosen)
            i += 1
    names = [CURRENT_STAGE, *(st.name for st in terms.all_stages())]
    return pl.Series(names, dtype=pl.String).gather(chosen)


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
