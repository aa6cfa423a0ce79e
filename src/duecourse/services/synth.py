"""Deterministic synthetic portfolios for the demo and the benchmark.

``generate_portfolio`` builds customers in CN, US and the UK, their card and loan accounts, the dues of a
window ``[start - 300 days, start + days]`` and the payments of each account's behaviour, all dated on or
before ``start + days``. ``generate_bench_portfolio`` builds a flat portfolio of about 12 dues and 8
payments per account, as fast as numpy allows. The same seed gives the same frames, to the byte.

Everything is computed over whole columns (numpy, then Polars for the strings); money is integer minor
units from integer arithmetic throughout, so the amounts do not depend on the platform's floating point.

Behaviours (one per account):
    on_time        pays each due in full, on the date or up to 5 days before it.
    late_payer     pays each due in full, 5 to 40 days late.
    self_cure      pays on time, misses one or two dues (in the simulated days, where it can), then pays
                   them all with the next one.
    partial_payer  pays 30 to 80 % of each due's required part (a card's minimum, a loan's instalment).
    minimum_payer  cards only: pays the minimum of each statement.
    never_pays     pays each bill in full on time until some due, then nothing.
    not_mine       pays nothing, ever: a recently opened account the customer says is not theirs.
    overpayer      pays on time, and once pays 3 to 10 times the due.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from duecourse.domain.money import currency_spec
from duecourse.engine.schema import ACCOUNTS, CUSTOMERS, DUES, PAYMENTS

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
Bools = npt.NDArray[np.bool_]

_EPOCH = dt.date(1970, 1, 1)
HISTORY_DAYS = 300  # dues start this many days before the first simulated day
_NO_TERM = 1_000_000  # a card has no last statement

BEHAVIOURS: tuple[str, ...] = (
    "on_time",
    "late_payer",
    "self_cure",
    "partial_payer",
    "minimum_payer",
    "never_pays",
    "not_mine",
    "overpayer",
)
_ON_TIME, _LATE, _SELF_CURE, _PARTIAL, _MINIMUM, _NEVER, _NOT_MINE, _OVER = range(len(BEHAVIOURS))
# Weights per mille, in the order of BEHAVIOURS; a loan has no minimum payment.
_CARD_WEIGHTS = (470, 120, 90, 70, 130, 70, 20, 30)
_LOAN_WEIGHTS = (590, 130, 100, 80, 0, 60, 10, 30)


@dataclass(frozen=True, slots=True)
class ProductSpec:
    """How the generator draws one product's accounts.

    Attributes:
        amount_lo_minor / amount_hi_minor: a loan's principal, or a card's typical statement balance.
        principal_step_minor: loans are granted in round amounts.
        monthly_rate_ppm_lo / _hi: a loan's monthly interest rate in parts per million (5000 = 0.5 %).
        minimum_floor_minor: a card's minimum payment is 10 % of the balance, at least this (or the balance).
        fee_minor: the occasional card fee billed with a statement.
    """

    code: str
    kind: str
    currency: str
    jurisdiction: str
    amount_lo_minor: int
    amount_hi_minor: int
    principal_step_minor: int = 1
    monthly_rate_ppm_lo: int = 0
    monthly_rate_ppm_hi: int = 0
    minimum_floor_minor: int = 0
    fee_minor: int = 0


PRODUCTS: dict[str, ProductSpec] = {
    "card_cn": ProductSpec(
        "card_cn", "card", "CNY", "CN", 50_000, 3_000_000, minimum_floor_minor=10_000, fee_minor=20_000
    ),
    "loan_cn": ProductSpec(
        "loan_cn", "instalment_loan", "CNY", "CN", 1_000_000, 30_000_000, 100_000, 2_500, 12_000
    ),
    "card_us": ProductSpec(
        "card_us", "card", "USD", "US", 20_000, 800_000, minimum_floor_minor=10_000, fee_minor=3_900
    ),
    "loan_uk": ProductSpec(
        "loan_uk", "instalment_loan", "GBP", "UK", 100_000, 3_000_000, 50_000, 4_000, 16_000
    ),
}
BENCH_MIX: dict[str, int] = {"card_cn": 30, "loan_cn": 30, "card_us": 20, "loan_uk": 20}
_JURISDICTION_WEIGHTS = {"CN": 50, "US": 30, "UK": 20}
_CARD_BILLS_BENCH = 12
_LOAN_BILLS_BENCH = 6  # two dues (principal, interest) each


@dataclass(frozen=True)
class SynthPortfolio:
    """Four frames with the schemas of ``engine.schema``, and each account's behaviour."""

    customers: pl.DataFrame
    accounts: pl.DataFrame
    dues: pl.DataFrame
    payments: pl.DataFrame
    behaviours: pl.DataFrame  # account_id, behaviour


# --- small column helpers ---------------------------------------------------------------------------


def _days(d: dt.date) -> int:
    return (d - _EPOCH).days


def _month_and_day(days: I64) -> tuple[I64, I64]:
    """Months since 1970-01 and the day of month (1-based) of dates given as days since the epoch."""
    d64 = days.astype("datetime64[D]")
    months = d64.astype("datetime64[M]")
    day = (d64 - months.astype("datetime64[D]")).astype(np.int64) + 1
    return months.astype(np.int64), day


def _date_of(months: I32, day: I32) -> I32:
    """Days since the epoch of a day (1..28) in a month given as months since 1970-01."""
    if len(months) == 0:
        return np.zeros(0, dtype=np.int32)
    low = int(months.min())
    span = np.arange(low, int(months.max()) + 1, dtype=np.int64)
    first_days = span.astype("datetime64[M]").astype("datetime64[D]").astype(np.int32)
    out: I32 = first_days[months - low] + day - 1
    return out


def _pick(rng: np.random.Generator, weights: Sequence[int], size: int) -> I64:
    """Indices into ``weights`` drawn in proportion to them (integer arithmetic, no float weights)."""
    cumulative = np.cumsum(np.asarray(weights, dtype=np.int64))
    draws = rng.integers(0, int(cumulative[-1]), size, dtype=np.int64)
    out: I64 = np.searchsorted(cumulative, draws, side="right").astype(np.int64)
    return out


def _ints(rng: np.random.Generator, lo: int | I64, hi: int | I64, size: int) -> I64:
    """Integers in ``[lo, hi]`` (both ends included; either may be a column)."""
    high = np.asarray(hi) + 1
    # 32-bit draws are four times faster than 64-bit ones; every range here fits.
    dtype = np.int32 if int(np.max(high, initial=0)) < 2**31 else np.int64
    out: I64 = rng.integers(lo, high, size, dtype=dtype).astype(np.int64)
    return out


def _take(values: Sequence[str], index: I64 | I32) -> pl.Series:
    return pl.Series(values=list(values), dtype=pl.String).gather(index)


def _text(values: I64, width: int = 0) -> pl.Expr:
    """Non-negative integers as text, zero-padded to ``width`` (faster than ``str.zfill``)."""
    if not width:
        return pl.lit(pl.Series(values=values, dtype=pl.Int64)).cast(pl.String)
    padded = pl.Series(values=values + 10**width, dtype=pl.Int64)  # 7 -> 107 -> "07"
    return pl.lit(padded).cast(pl.String).str.slice(-width)


def _dates(days: I64 | I32) -> pl.Series:
    return pl.Series(values=days.astype(np.int32), dtype=pl.Int32).cast(pl.Date)


def _ids(prefix: str, count: int, minimum_width: int) -> pl.Series:
    width = max(minimum_width, len(str(count)))
    numbers = pl.int_range(1, count + 1, dtype=pl.Int64) + 10**width
    return pl.select(pl.lit(prefix) + numbers.cast(pl.String).str.slice(1)).to_series()


def _frame(columns: dict[str, pl.Series | pl.Expr], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """A frame with exactly the columns and types of ``schema``, in its order."""
    base = pl.DataFrame([c.alias(n) for n, c in columns.items() if isinstance(c, pl.Series)])
    exprs = [
        (col if isinstance(col, pl.Expr) else pl.col(name)).alias(name).cast(schema[name])
        for name, col in columns.items()
    ]
    return base.select(exprs).select(list(schema))


# --- customers -------------------------------------------------------------------------------------

_CN_SURNAMES = (
    ("王", "wang"), ("李", "li"), ("张", "zhang"), ("刘", "liu"), ("陈", "chen"), ("杨", "yang"),
    ("黄", "huang"), ("赵", "zhao"), ("吴", "wu"), ("周", "zhou"), ("徐", "xu"), ("孙", "sun"),
    ("马", "ma"), ("朱", "zhu"), ("胡", "hu"), ("郭", "guo"), ("何", "he"), ("林", "lin"),
    ("高", "gao"), ("罗", "luo"), ("郑", "zheng"), ("梁", "liang"), ("谢", "xie"), ("宋", "song"),
    ("唐", "tang"), ("韩", "han"), ("冯", "feng"), ("邓", "deng"), ("曹", "cao"), ("彭", "peng"),
)  # fmt: skip
_CN_GIVEN = (
    ("伟", "wei"), ("芳", "fang"), ("娜", "na"), ("敏", "min"), ("静", "jing"), ("丽", "li"),
    ("强", "qiang"), ("磊", "lei"), ("军", "jun"), ("洋", "yang"), ("勇", "yong"), ("艳", "yan"),
    ("杰", "jie"), ("娟", "juan"), ("涛", "tao"), ("明", "ming"), ("超", "chao"), ("秀", "xiu"),
    ("霞", "xia"), ("平", "ping"), ("刚", "gang"), ("英", "ying"), ("华", "hua"), ("文", "wen"),
    ("建", "jian"), ("志", "zhi"), ("国", "guo"), ("玉", "yu"), ("红", "hong"), ("海", "hai"),
    ("鹏", "peng"), ("晨", "chen"), ("欣", "xin"), ("宇", "yu"), ("浩", "hao"), ("婷", "ting"),
    ("雪", "xue"), ("琳", "lin"), ("佳", "jia"), ("子", "zi"),
)  # fmt: skip
# city, province, district, postal code of the district, weight
_CN_PLACES = (
    ("北京市", "北京市", "朝阳区", 100020, 8), ("北京市", "北京市", "海淀区", 100080, 7),
    ("上海市", "上海市", "浦东新区", 200120, 8), ("上海市", "上海市", "徐汇区", 200030, 5),
    ("广州市", "广东省", "天河区", 510620, 6), ("深圳市", "广东省", "南山区", 518052, 6),
    ("杭州市", "浙江省", "西湖区", 310012, 4), ("成都市", "四川省", "武侯区", 610041, 4),
    ("武汉市", "湖北省", "洪山区", 430070, 4), ("南京市", "江苏省", "鼓楼区", 210008, 3),
    ("西安市", "陕西省", "雁塔区", 710061, 3), ("重庆市", "重庆市", "渝中区", 400010, 4),
    ("天津市", "天津市", "和平区", 300041, 3), ("苏州市", "江苏省", "姑苏区", 215000, 3),
)  # fmt: skip
_CN_ROADS = (
    "人民路",
    "中山路",
    "解放路",
    "建设路",
    "和平路",
    "长江路",
    "文化路",
    "新华路",
    "朝阳路",
    "学院路",
)
_CN_MOBILE = (
    "130",
    "131",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "158",
    "159",
    "186",
    "187",
    "188",
)

_US_FIRST = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
    "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Maria", "Carlos",
    "Daniel", "Emily", "Jose", "Olivia", "Kevin", "Sophia", "Luis", "Grace", "Aisha", "Ethan",
)  # fmt: skip
_US_LAST = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee",
    "Nguyen", "Patel", "Kim", "Clark", "Lewis", "Walker", "Hall", "Young", "Allen", "King",
)  # fmt: skip
# city, state, time zone, ZIP prefix, area code, weight
_US_PLACES = (
    ("New York", "NY", "America/New_York", "100", "212", 10),
    ("Boston", "MA", "America/New_York", "021", "617", 3),
    ("Atlanta", "GA", "America/New_York", "303", "404", 3),
    ("Miami", "FL", "America/New_York", "331", "305", 3),
    ("Chicago", "IL", "America/Chicago", "606", "312", 6),
    ("Houston", "TX", "America/Chicago", "770", "713", 5),
    ("Dallas", "TX", "America/Chicago", "752", "214", 4),
    ("Denver", "CO", "America/Denver", "802", "303", 3),
    ("Phoenix", "AZ", "America/Phoenix", "850", "602", 3),
    ("Los Angeles", "CA", "America/Los_Angeles", "900", "213", 8),
    ("San Francisco", "CA", "America/Los_Angeles", "941", "415", 3),
    ("Seattle", "WA", "America/Los_Angeles", "981", "206", 3),
    ("Anchorage", "AK", "America/Anchorage", "995", "907", 1),
    ("Honolulu", "HI", "Pacific/Honolulu", "968", "808", 1),
)
_US_STREETS = (
    "Maple Ave", "Oak St", "Main St", "Washington Blvd", "Cedar Ln", "Elm St", "Park Ave", "Lakeview Dr",
    "Sunset Blvd", "Pine St", "Hillside Rd", "River Rd",
)  # fmt: skip

_UK_FIRST = (
    "Oliver", "Amelia", "George", "Isla", "Harry", "Ava", "Jack", "Emily", "Charlie", "Sophie",
    "Thomas", "Grace", "James", "Lily", "William", "Freya", "Alfie", "Ella", "Noah", "Poppy",
    "Arthur", "Evie", "Muhammad", "Chloe", "Leo", "Mia", "Oscar", "Ruby", "Henry", "Florence",
)  # fmt: skip
_UK_LAST = (
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Robinson", "Wright",
    "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Wood", "Jackson", "Clarke",
    "Patel", "Khan", "Hughes", "Edwards", "Lewis", "Morgan", "Murphy", "Campbell", "Kelly", "Singh",
)  # fmt: skip
# city, nation, postcode district, weight
_UK_PLACES = (
    ("London", "England", "SW1A", 3), ("London", "England", "E1", 3), ("London", "England", "N1", 3),
    ("London", "England", "SE1", 3), ("Manchester", "England", "M1", 3), ("Manchester", "England", "M20", 2),
    ("Birmingham", "England", "B15", 3), ("Leeds", "England", "LS6", 2), ("Bristol", "England", "BS8", 2),
    ("Liverpool", "England", "L17", 2), ("Sheffield", "England", "S10", 2),
    ("Newcastle upon Tyne", "England", "NE6", 2), ("Glasgow", "Scotland", "G12", 2),
    ("Edinburgh", "Scotland", "EH3", 2), ("Cardiff", "Wales", "CF24", 2),
    ("Belfast", "Northern Ireland", "BT9", 1),
)  # fmt: skip
_UK_STREETS = (
    "High Street", "Station Road", "Church Lane", "Victoria Road", "Mill Lane", "Park Avenue", "Queen Street",
    "King's Road", "London Road", "The Crescent", "Green Lane", "Manor Road",
)  # fmt: skip
_UK_INWARD_LETTERS = tuple("ABDEFGHJLNPQRSTUWXYZ")  # the letters a postcode's inward code may use


def _cn_people(rng: np.random.Generator, n: int) -> dict[str, pl.Expr]:
    surname = _ints(rng, 0, len(_CN_SURNAMES) - 1, n)
    given1 = _ints(rng, 0, len(_CN_GIVEN) - 1, n)
    two_chars = _ints(rng, 0, 99, n) < 60
    given2 = np.where(two_chars, _ints(rng, 0, len(_CN_GIVEN) - 1, n), len(_CN_GIVEN))  # last: none
    place = _pick(rng, [p[4] for p in _CN_PLACES], n)
    mobile = _ints(rng, 0, len(_CN_MOBILE) - 1, n)
    subscriber = _ints(rng, 0, 99_999_999, n)
    house = _ints(rng, 1, 399, n)
    has_flat = _ints(rng, 0, 99, n) < 70
    building, unit = _ints(rng, 1, 30, n), _ints(rng, 1, 6, n)
    room = _ints(rng, 1, 33, n) * 100 + _ints(rng, 1, 4, n)
    postal = np.array([p[3] for p in _CN_PLACES], dtype=np.int64)[place] + _ints(rng, 0, 9, n)
    hanzi = [c for c, _ in _CN_GIVEN] + [""]
    pinyin = [p for _, p in _CN_GIVEN] + [""]
    name = pl.concat_str(
        [
            pl.lit(_take([c for c, _ in _CN_SURNAMES], surname)),
            pl.lit(_take(hanzi, given1)),
            pl.lit(_take(hanzi, given2)),
        ]
    )
    email = pl.concat_str(
        [
            pl.lit(_take(pinyin, given1)),
            pl.lit(_take(pinyin, given2)),
            pl.lit("."),
            pl.lit(_take([p for _, p in _CN_SURNAMES], surname)),
        ]
    )
    flat = pl.concat_str(
        [_text(building), pl.lit("栋"), _text(unit), pl.lit("单元"), _text(room), pl.lit("室")]
    )
    return {
        "name": name,
        "locale": pl.lit("zh-CN"),
        "timezone": pl.lit("Asia/Shanghai"),
        "jurisdiction": pl.lit("CN"),
        "_domain": pl.lit("@example.cn"),
        "phone": pl.concat_str([pl.lit("+86"), pl.lit(_take(_CN_MOBILE, mobile)), _text(subscriber, 8)]),
        "email": email,
        "address_line1": pl.concat_str(
            [
                pl.lit(_take([p[2] for p in _CN_PLACES], place)),
                pl.lit(_take(_CN_ROADS, _ints(rng, 0, 9, n))),
                _text(house),
                pl.lit("号"),
            ]
        ),  # fmt: skip
        "address_line2": pl.when(pl.lit(pl.Series(values=has_flat))).then(flat).otherwise(pl.lit("")),
        "city": pl.lit(_take([p[0] for p in _CN_PLACES], place)),
        "region": pl.lit(_take([p[1] for p in _CN_PLACES], place)),
        "postal_code": _text(postal, 6),
        "country": pl.lit("CN"),
    }


def _western_people(
    rng: np.random.Generator, n: int, first_names: Sequence[str], last_names: Sequence[str]
) -> tuple[pl.Expr, pl.Expr]:
    first = _take(first_names, _ints(rng, 0, len(first_names) - 1, n))
    last = _take(last_names, _ints(rng, 0, len(last_names) - 1, n))
    name = pl.concat_str([pl.lit(first), pl.lit(last)], separator=" ")
    email = pl.concat_str(
        [
            pl.lit(first).str.to_lowercase(),
            pl.lit("."),
            pl.lit(last).str.to_lowercase().str.replace_all("'", ""),
        ]
    )
    return name, email


def _us_people(rng: np.random.Generator, n: int) -> dict[str, pl.Expr]:
    name, email = _western_people(rng, n, _US_FIRST, _US_LAST)
    place = _pick(rng, [p[5] for p in _US_PLACES], n)
    house, street = _ints(rng, 100, 9999, n), _ints(rng, 0, len(_US_STREETS) - 1, n)
    has_apt = _ints(rng, 0, 99, n) < 25
    apt = pl.concat_str(
        [pl.lit("Apt "), _text(_ints(rng, 1, 20, n)), pl.lit(_take(tuple("ABCDEF"), _ints(rng, 0, 5, n)))]
    )
    zip_tail = _ints(rng, 1, 99, n)
    line = _ints(rng, 0, 99, n)  # 555-0100 .. 555-0199 are reserved for fiction
    return {
        "name": name,
        "locale": pl.lit("en-US"),
        "timezone": pl.lit(_take([p[2] for p in _US_PLACES], place)),
        "jurisdiction": pl.lit("US"),
        "_domain": pl.lit("@example.com"),
        "phone": pl.concat_str(
            [pl.lit("+1"), pl.lit(_take([p[4] for p in _US_PLACES], place)), pl.lit("55501"), _text(line, 2)]
        ),
        "email": email,
        "address_line1": pl.concat_str([_text(house), pl.lit(_take(_US_STREETS, street))], separator=" "),
        "address_line2": pl.when(pl.lit(pl.Series(values=has_apt))).then(apt).otherwise(pl.lit("")),
        "city": pl.lit(_take([p[0] for p in _US_PLACES], place)),
        "region": pl.lit(_take([p[1] for p in _US_PLACES], place)),
        "postal_code": pl.concat_str([pl.lit(_take([p[3] for p in _US_PLACES], place)), _text(zip_tail, 2)]),
        "country": pl.lit("US"),
    }


def _uk_people(rng: np.random.Generator, n: int) -> dict[str, pl.Expr]:
    name, email = _western_people(rng, n, _UK_FIRST, _UK_LAST)
    place = _pick(rng, [p[3] for p in _UK_PLACES], n)
    house, street = _ints(rng, 1, 250, n), _ints(rng, 0, len(_UK_STREETS) - 1, n)
    has_flat = _ints(rng, 0, 99, n) < 30
    flat = pl.concat_str([pl.lit("Flat "), _text(_ints(rng, 1, 40, n))])
    letters = len(_UK_INWARD_LETTERS) - 1
    inward = pl.concat_str(
        [
            _text(_ints(rng, 0, 9, n)),
            pl.lit(_take(_UK_INWARD_LETTERS, _ints(rng, 0, letters, n))),
            pl.lit(_take(_UK_INWARD_LETTERS, _ints(rng, 0, letters, n))),
        ]
    )
    line = _ints(rng, 0, 999, n)  # 07700 900000 .. 900999 are reserved by Ofcom for drama
    return {
        "name": name,
        "locale": pl.lit("en-GB"),
        "timezone": pl.lit("Europe/London"),
        "jurisdiction": pl.lit("UK"),
        "_domain": pl.lit("@example.com"),
        "phone": pl.concat_str([pl.lit("+447700900"), _text(line, 3)]),
        "email": email,
        "address_line1": pl.concat_str([_text(house), pl.lit(_take(_UK_STREETS, street))], separator=" "),
        "address_line2": pl.when(pl.lit(pl.Series(values=has_flat))).then(flat).otherwise(pl.lit("")),
        "city": pl.lit(_take([p[0] for p in _UK_PLACES], place)),
        "region": pl.lit(_take([p[1] for p in _UK_PLACES], place)),
        "postal_code": pl.concat_str(
            [pl.lit(_take([p[2] for p in _UK_PLACES], place)), inward], separator=" "
        ),
        "country": pl.lit("GB"),
    }


_PEOPLE = {"CN": _cn_people, "US": _us_people, "UK": _uk_people}
# Customers beyond this many per jurisdiction reuse drawn people (names, phones, addresses): a million
# customers then cost a gather, not a million string builds. E-mails stay unique (they hold the number).
PEOPLE_POOL = 65_536


def _customers(rng: np.random.Generator, jurisdiction: Sequence[str], codes: I64) -> pl.DataFrame:
    """One row per entry of ``codes`` (an index into ``jurisdiction``), ids C000001.. in that order."""
    n = len(codes)
    pools = []
    person = np.empty(n, dtype=np.int64)  # each customer's row in the concatenated pools
    offset = 0
    for j, code in enumerate(jurisdiction):
        rows = np.flatnonzero(codes == j)
        if len(rows) == 0:
            continue
        size = min(len(rows), PEOPLE_POOL)
        pools.append(pl.select([expr.alias(name) for name, expr in _PEOPLE[code](rng, size).items()]))
        slot = np.arange(size, dtype=np.int64) if size == len(rows) else _ints(rng, 0, size - 1, len(rows))
        person[rows] = offset + slot
        offset += size
    if not pools:
        return pl.DataFrame(schema=CUSTOMERS)
    number = np.arange(1, n + 1, dtype=np.int64)
    # One chunk first: a gather over several chunks of strings is ten times slower.
    people: pl.DataFrame = pl.concat(pools, rechunk=True).select(pl.all().gather(person))
    return people.select(
        pl.lit(_ids("C", n, 6)).alias("customer_id"),
        pl.exclude("email", "_domain"),
        pl.concat_str([pl.col("email"), _text(number), pl.col("_domain")]).alias("email"),
    ).select([pl.col(name).cast(dtype) for name, dtype in CUSTOMERS.items()])


# --- accounts, dues, payments ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Plan:
    """Accounts laid out before any amount is drawn: who holds what, and which monthly bills are in view.

    Bill ``k`` (1-based, counted from the account's opening) is posted (cards) or due (loans) on ``day`` of
    month ``first_month + k - 1``; a card's due date is ``grace`` days after the posting. Bills
    ``k_lo .. k_lo + count - 1`` are in view.
    """

    customer: I64
    product: I64  # index into the products tuple
    behaviour: I64
    opened: I64  # days since the epoch
    first_month: I64  # months since 1970-01
    day: I64
    grace: I64
    term: I64
    k_lo: I64
    count: I64


def _behaviours(rng: np.random.Generator, is_card: Bools) -> I64:
    card = _pick(rng, _CARD_WEIGHTS, len(is_card))
    loan = _pick(rng, _LOAN_WEIGHTS, len(is_card))
    out: I64 = np.where(is_card, card, loan)
    return out


def _assemble(
    rng: np.random.Generator,
    specs: Sequence[ProductSpec],
    customers: pl.DataFrame,
    plan: _Plan,
    *,
    pay_until: int,
    focus_from: int,
) -> SynthPortfolio:
    accounts_n = len(plan.product)
    account_ids = _ids("A", accounts_n, 6)
    bills = _bills(rng, specs, plan)
    payments = _payments_frame(rng, account_ids, plan, bills, pay_until=pay_until, focus_from=focus_from)
    dues = _dues_frame(account_ids, bills)
    accounts = _frame(
        {
            "account_id": account_ids,
            "customer_id": customers.get_column("customer_id").gather(plan.customer),
            "product_code": _take([s.code for s in specs], plan.product),
            "opened_on": _dates(plan.opened),
        },
        ACCOUNTS,
    )
    behaviours = pl.DataFrame({"account_id": account_ids, "behaviour": _take(BEHAVIOURS, plan.behaviour)})
    return SynthPortfolio(customers, accounts, dues, payments, behaviours)


@dataclass(frozen=True, slots=True)
class _Bills:
    """One row per bill in view: a card statement (with its fee, if any) or a loan instalment.

    Dates are days since the epoch; per-bill columns are int32 where they fit, to halve the memory traffic.

    Attributes:
        acct: the account's index; j: the bill's position among the account's bills in view;
        k: the bill's number since the account opened.
        cards / loans: the positions of the card and the loan bills.
        posted, statement, minimum, fee: per card bill (in the order of ``cards``).
        principal, interest: per loan bill (in the order of ``loans``).
        amount: all that is billed on the date; required: what keeps the account current.
    """

    acct: I32
    j: I32
    k: I32
    due: I32
    cards: I64
    loans: I64
    posted: I32
    statement: I64
    minimum: I64
    fee: I64
    principal: I64
    interest: I64
    amount: I64
    required: I64


def _bills(rng: np.random.Generator, specs: Sequence[ProductSpec], plan: _Plan) -> _Bills:
    """The bills in view and their amounts, in integer minor units."""
    accounts_n, count = len(plan.product), plan.count
    is_card = np.array([s.kind == "card" for s in specs], dtype=np.bool_)[plan.product]

    def per_account(field: str) -> I64:
        return np.array([getattr(s, field) for s in specs], dtype=np.int64)[plan.product]

    def spread(values: npt.NDArray[Any], accounts: Bools | None = None) -> npt.NDArray[Any]:
        """A per-account column repeated over the account's bills (of the selected accounts)."""
        if accounts is None:
            return np.repeat(values, count)
        return np.repeat(values[accounts], count[accounts])

    # A loan's principal and rate, a card's typical balance (a squared draw: most are small).
    lo, hi = per_account("amount_lo_minor"), per_account("amount_hi_minor")
    u = _ints(rng, 0, 1000, accounts_n)
    level = lo + (hi - lo) * u * u // 1_000_000
    step = per_account("principal_step_minor")
    granted = np.maximum(step, level // step * step)
    rate_ppm = _ints(rng, per_account("monthly_rate_ppm_lo"), per_account("monthly_rate_ppm_hi"), accounts_n)

    bills_n = int(count.sum())
    acct = spread(np.arange(accounts_n, dtype=np.int32))
    j = np.arange(bills_n, dtype=np.int32) - spread((np.cumsum(count) - count).astype(np.int32))
    k = spread(plan.k_lo.astype(np.int32)) + j
    month = spread(plan.first_month.astype(np.int32)) + k - 1
    posted = _date_of(month, spread(plan.day.astype(np.int32)))
    due = posted + spread(plan.grace.astype(np.int32))
    card_bill = spread(is_card)
    cards, loans = np.flatnonzero(card_bill), np.flatnonzero(~card_bill)

    statement = np.maximum(1_000, spread(level, is_card) * _ints(rng, 40, 160, len(cards)) // 100)
    floor = spread(per_account("minimum_floor_minor"), is_card)
    minimum = np.minimum(statement, np.maximum((statement + 5) // 10, floor))  # 10 %, half up
    fee = np.where(_ints(rng, 0, 99, len(cards)) < 3, spread(per_account("fee_minor"), is_card), 0)

    # Equal principal instalments (等额本金), the last one taking the remainder; interest on the balance.
    is_loan = ~is_card
    l_k = k[loans].astype(np.int64)
    term, total = spread(plan.term, is_loan), spread(granted, is_loan)
    base = total // term
    principal = np.where(l_k == term, total - base * (term - 1), base)
    balance = total - base * (l_k - 1)
    interest = np.maximum(1, (balance * spread(rate_ppm, is_loan) + 500_000) // 1_000_000)  # half up

    amount = np.empty(bills_n, dtype=np.int64)
    amount[cards] = statement + fee
    amount[loans] = principal + interest
    required = amount.copy()
    required[cards] = minimum + fee
    return _Bills(
        acct=acct,
        j=j,
        k=k,
        due=due,
        cards=cards,
        loans=loans,
        posted=posted[cards],
        statement=statement,
        minimum=minimum,
        fee=fee,
        principal=principal,
        interest=interest,
        amount=amount,
        required=required,
    )


# By row kind: a loan's principal and interest dues, a statement, a statement's fee.
_ROW_COMPONENTS = ("principal", "interest", "principal", "fee")
_ROW_SUFFIXES = ("-I{:02d}-P", "-I{:02d}-I", "-S{:02d}", "-S{:02d}-F")


def _dues_frame(account_ids: pl.Series, b: _Bills) -> pl.DataFrame:
    """A loan instalment is two dues (principal, interest); a statement one, and its fee a second."""
    with_fee = b.fee > 0
    rows = np.full(len(b.acct), 2, dtype=np.int32)
    rows[b.cards] = 1 + with_fee
    first = np.cumsum(rows, dtype=np.int64) - rows  # each bill's first row
    kind = np.empty(int(first[-1] + rows[-1]) if len(rows) else 0, dtype=np.int32)
    amount = np.empty(len(kind), dtype=np.int64)
    for positions, row_kind, values in (
        (first[b.loans], 0, b.principal),
        (first[b.loans] + 1, 1, b.interest),
        (first[b.cards], 2, b.statement),
        (first[b.cards[with_fee]] + 1, 3, b.fee[with_fee]),
    ):
        kind[positions] = row_kind
        amount[positions] = values
    statements = pl.Series(values=first[b.cards], dtype=pl.Int64)
    # The due id is the account id and a suffix from a small table, by row kind and bill number.
    numbers = int(b.k.max(initial=0)) + 1
    suffixes = [f.format(n) for f in _ROW_SUFFIXES for n in range(numbers)]
    suffix = np.repeat(b.k, rows) + kind * np.int32(numbers)
    return _frame(
        {
            "account_id": account_ids.gather(np.repeat(b.acct, rows)),
            "due_id": pl.col("account_id") + pl.lit(_take(suffixes, suffix)),
            "due_date": _dates(np.repeat(b.due, rows)),
            "amount_minor": pl.Series(values=amount),
            "component": _take(_ROW_COMPONENTS, kind),
            "minimum_minor": pl.Series(values=[None] * 0, dtype=pl.Int64)
            .extend_constant(None, len(kind))
            .scatter(statements, b.minimum),
            "posted_on": pl.Series(values=[None] * 0, dtype=pl.Date)
            .extend_constant(None, len(kind))
            .scatter(statements, _dates(b.posted)),
        },
        DUES,
    )


def _payments_frame(
    rng: np.random.Generator,
    account_ids: pl.Series,
    plan: _Plan,
    b: _Bills,
    *,
    pay_until: int,
    focus_from: int,
) -> pl.DataFrame:
    """At most one payment per bill, by the account's behaviour; none after ``pay_until``.

    A self-cure's missed bills fall on or after ``focus_from`` where the account has such bills (the
    simulated days of the demo), so that the cure is seen happening.
    """
    accounts_n, bills_n = len(plan.count), len(b.acct)
    behaviour = np.repeat(plan.behaviour.astype(np.int8), plan.count)

    def rows_of(code: int) -> I64:
        return np.flatnonzero(behaviour == code)

    date = b.due - _ints(rng, 0, 5, bills_n).astype(np.int32)
    pay = b.amount.copy()
    late = rows_of(_LATE)
    date[late] = b.due[late] + _ints(rng, 5, 40, len(late))
    partial = rows_of(_PARTIAL)
    pay[partial] = b.required[partial] * _ints(rng, 30, 80, len(partial)) // 100
    minimum = rows_of(_MINIMUM)
    pay[minimum] = b.required[minimum]
    pay[rows_of(_NOT_MINE)] = 0
    # Never-pays: each bill in full until some bill, then nothing.
    never = rows_of(_NEVER)
    stop_at = _ints(rng, 1, np.maximum(1, plan.count - 1), accounts_n)
    pay[never[b.j[never] >= stop_at[b.acct[never]]]] = 0
    # A self-cure or an overpayment is placed among the bills dated by pay_until.
    seen = np.bincount(b.acct[b.due <= pay_until], minlength=accounts_n).astype(np.int64)
    over = rows_of(_OVER)
    big_at = _ints(rng, 0, np.maximum(0, seen - 1), accounts_n)
    big_times = _ints(rng, 3, 10, accounts_n)
    big = over[b.j[over] == big_at[b.acct[over]]]
    pay[big] = b.amount[big] * big_times[b.acct[big]]
    # Self-cure: nothing for one or two bills, then all of them with the next one.
    cure = rows_of(_SELF_CURE)
    missed = _ints(rng, 1, 2, accounts_n)
    last_start = np.maximum(0, seen - missed - 1)
    before_focus = np.bincount(b.acct[b.due < focus_from], minlength=accounts_n).astype(np.int64)
    miss_from = _ints(rng, np.minimum(before_focus, last_start), last_start, accounts_n)
    c_acct, c_j = b.acct[cure], b.j[cure]
    start, catch_up = miss_from[c_acct], miss_from[c_acct] + missed[c_acct]
    running = np.cumsum(b.amount[cure])
    first = np.searchsorted(c_acct, c_acct) + start  # the first missed bill, among the self-cure rows
    owed = running - running[first] + b.amount[cure][first]
    pay[cure] = np.where((c_j >= start) & (c_j < catch_up), 0, np.where(c_j == catch_up, owed, pay[cure]))

    # In account order, then by the bill paid (a late payment may fall after the next bill's payment).
    keep = np.flatnonzero((pay > 0) & (date <= pay_until))
    return _frame(
        {
            "payment_id": _ids("P", len(keep), 8),
            "account_id": account_ids.gather(b.acct[keep]),
            "paid_on": _dates(date[keep]),
            "amount_minor": pl.Series(values=pay[keep]),
        },
        PAYMENTS,
    )


# --- the two generators ----------------------------------------------------------------------------


def _specs(products: Sequence[str]) -> tuple[ProductSpec, ...]:
    unknown = [p for p in products if p not in PRODUCTS]
    if unknown or not products:
        raise ValueError(f"unknown products {unknown}; known: {', '.join(PRODUCTS)}")
    return tuple(PRODUCTS[p] for p in dict.fromkeys(products))


def _window(months_day: tuple[I64, I64], first_month: I64, day: I64) -> I64:
    """The number ``k`` of the first monthly bill dated on or after a date given as (month, day)."""
    month, of_day = months_day
    out: I64 = month - first_month + 1 + (day < of_day)
    return out


def generate_portfolio(
    *,
    customers: int,
    start: dt.date,
    days: int,
    seed: int,
    products: Sequence[str] = ("card_cn", "loan_cn", "card_us", "loan_uk"),
) -> SynthPortfolio:
    """A demo portfolio: dues over ``[start - 300 days, start + days]``, payments up to ``start + days``."""
    if customers < 1 or days < 0:
        raise ValueError(f"need customers >= 1 and days >= 0, got {customers} and {days}")
    specs = _specs(products)
    rng = np.random.default_rng(seed)
    first_day, last_day = _days(start), _days(start) + days

    jurisdictions = [j for j in _JURISDICTION_WEIGHTS if any(s.jurisdiction == j for s in specs)]
    jurisdiction = _pick(rng, [_JURISDICTION_WEIGHTS[j] for j in jurisdictions], customers)
    # Each customer's first product, and a second one for CN customers who hold both a card and a loan.
    first = np.zeros(customers, dtype=np.int64)
    second = np.full(customers, -1, dtype=np.int64)
    for j, code in enumerate(jurisdictions):
        mine = [i for i, s in enumerate(specs) if s.jurisdiction == code]
        rows = jurisdiction == j
        if len(mine) == 1:
            first[rows] = mine[0]
            continue
        held = _pick(rng, [55, 30, 15], customers)  # card only, loan only, both
        cards = [i for i in mine if specs[i].kind == "card"] or mine
        loans = [i for i in mine if specs[i].kind != "card"] or mine
        first[rows] = np.where(held == 1, loans[0], cards[0])[rows]
        second[rows & (held == 2)] = loans[0] if loans[0] != cards[0] else -1
    holdings = 1 + (second >= 0)
    customer = np.repeat(np.arange(customers, dtype=np.int64), holdings)
    is_second = np.arange(len(customer)) - (np.cumsum(holdings) - holdings)[customer] == 1
    product = np.where(is_second, second[customer], first[customer])
    accounts_n = len(product)
    is_card = np.array([s.kind == "card" for s in specs], dtype=np.bool_)[product]
    behaviour = _behaviours(rng, is_card)

    # Cards opened up to four years ago; loans up to 20 months ago; a 'not mine' account is recent.
    age = np.where(is_card, _ints(rng, 60, 1500, accounts_n), _ints(rng, 30, 600, accounts_n))
    age = np.where(behaviour == _NOT_MINE, _ints(rng, 45, 200, accounts_n), age)
    opened = first_day - age
    opened_month, opened_day = _month_and_day(opened)
    first_month = opened_month + 1
    day = np.where(is_card, _ints(rng, 1, 28, accounts_n), np.minimum(opened_day, 28))
    grace = np.where(is_card, _ints(rng, 20, 25, accounts_n), 0)
    term = np.where(
        is_card, _NO_TERM, np.array([12, 24, 36], dtype=np.int64)[_pick(rng, [3, 4, 3], accounts_n)]
    )
    k_lo = np.maximum(1, _window(_month_and_day(first_day - HISTORY_DAYS - grace), first_month, day))
    k_hi = np.minimum(term, _window(_month_and_day(last_day - grace + 1), first_month, day) - 1)
    plan = _Plan(
        customer=customer,
        product=product,
        behaviour=behaviour,
        opened=opened,
        first_month=first_month,
        day=day,
        grace=grace,
        term=term,
        k_lo=k_lo,
        count=np.maximum(0, k_hi - k_lo + 1),
    )
    people = _customers(rng, jurisdictions, jurisdiction)
    return _assemble(rng, specs, people, plan, pay_until=last_day, focus_from=first_day)


def generate_bench_portfolio(*, accounts: int, seed: int, as_of: dt.date) -> SynthPortfolio:
    """A benchmark portfolio: one account per customer, ~12 dues and ~8 payments per account around as_of."""
    if accounts < 1:
        raise ValueError(f"need accounts >= 1, got {accounts}")
    specs = _specs(list(BENCH_MIX))
    rng = np.random.default_rng(seed)
    product = _pick(rng, list(BENCH_MIX.values()), accounts)
    is_card = np.array([s.kind == "card" for s in specs], dtype=np.bool_)[product]
    behaviour = _behaviours(rng, is_card)
    count = np.where(is_card, _CARD_BILLS_BENCH, _LOAN_BILLS_BENCH).astype(np.int64)
    term = np.where(
        is_card, _NO_TERM, np.array([12, 24, 36], dtype=np.int64)[_pick(rng, [3, 4, 3], accounts)]
    )
    k_lo = np.where(is_card, _ints(rng, 1, 36, accounts), _ints(rng, 1, term - count + 1, accounts))
    day = _ints(rng, 1, 28, accounts)
    grace = np.where(is_card, _ints(rng, 20, 25, accounts), 0)
    # The last bill in view, number k_lo + count - 1, is posted (cards) or due (loans) in the month
    # before as_of's: bill 1 is that many months earlier.
    as_of_month, _ = _month_and_day(np.array([_days(as_of)], dtype=np.int64))
    first_month = as_of_month[0] - (k_lo + count - 1)
    opening_day = _ints(rng, 1, 28, accounts).astype(np.int32)
    opened = _date_of((first_month - 1).astype(np.int32), opening_day).astype(np.int64)
    plan = _Plan(
        customer=np.arange(accounts, dtype=np.int64),
        product=product,
        behaviour=behaviour,
        opened=opened,
        first_month=first_month,
        day=day,
        grace=grace,
        term=term,
        k_lo=k_lo,
        count=count,
    )
    jurisdictions = list(_JURISDICTION_WEIGHTS)
    jurisdiction = np.array([jurisdictions.index(s.jurisdiction) for s in specs], dtype=np.int64)[product]
    people = _customers(rng, jurisdictions, jurisdiction)
    return _assemble(rng, specs, people, plan, pay_until=_days(as_of), focus_from=_days(as_of) - 90)


# --- CSV -------------------------------------------------------------------------------------------

# The import files' columns: the frames' columns, with amounts as decimals and without the _minor suffix.
CSV_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": tuple(CUSTOMERS),
    "accounts": tuple(ACCOUNTS),
    "dues": ("account_id", "due_id", "due_date", "amount", "component", "minimum_amount", "posted_on"),
    "payments": ("payment_id", "account_id", "paid_on", "amount"),
}


def _decimal(minor: pl.Expr, digits: int) -> pl.Expr:
    """Integer minor units as an exact decimal with the currency's digits (12345 -> 123.45).

    An exact Decimal product, not a division: the CSV writer prints it with exactly ``digits`` places.
    """
    return minor.cast(pl.Decimal(38, 0)) * pl.lit(Decimal(1).scaleb(-digits))


def _amounts(frame: pl.DataFrame, accounts: pl.DataFrame, columns: dict[str, str]) -> pl.DataFrame:
    """Replace the minor-unit ``columns`` (old -> new name) with decimals in each account's currency."""
    codes = accounts.get_column("product_code").unique().to_list()
    unknown = sorted(set(codes) - set(PRODUCTS))
    if unknown:
        raise ValueError(f"unknown products in the portfolio: {unknown}")
    digit_of = {c: currency_spec(PRODUCTS[c].currency).minor_digits for c in codes}
    if len(set(digit_of.values())) <= 1:  # one number of digits (always, with the default products)
        digits = next(iter(digit_of.values()), 2)
        return frame.with_columns(_decimal(pl.col(old), digits).alias(new) for old, new in columns.items())
    by_account = accounts.select(
        "account_id", pl.col("product_code").replace_strict(digit_of, return_dtype=pl.Int64).alias("_digits")
    )
    text: dict[str, pl.Expr] = {}
    for old, new in columns.items():
        expr: pl.Expr = pl.lit(None, dtype=pl.String)
        for d in sorted(set(digit_of.values())):
            expr = (
                pl.when(pl.col("_digits") == d).then(_decimal(pl.col(old), d).cast(pl.String)).otherwise(expr)
            )
        text[new] = expr
    joined = frame.join(by_account, on="account_id", how="left", maintain_order="left")
    return joined.with_columns(**text).drop("_digits")


def write_csvs(p: SynthPortfolio, out_dir: Path) -> dict[str, Path]:
    """customers.csv, accounts.csv, dues.csv and payments.csv in the import format; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = {
        "customers": p.customers,
        "accounts": p.accounts,
        "dues": _amounts(p.dues, p.accounts, {"amount_minor": "amount", "minimum_minor": "minimum_amount"}),
        "payments": _amounts(p.payments, p.accounts, {"amount_minor": "amount"}),
    }
    paths: dict[str, Path] = {}
    for name, frame in frames.items():
        path = out_dir / f"{name}.csv"
        frame.select(CSV_COLUMNS[name]).write_csv(path)
        paths[name] = path
    return paths
