"""The portfolio engine on Apache Spark: the same ``compute_snapshots``, applied per partition through Arrow.

Accounts are independent of each other, so the snapshot of a portfolio is the union of the snapshots of
any split of it that keeps each account whole (its row, its dues, its payments, its holds). This module
makes such a split on Spark and runs the very kernel the single-machine run uses on each piece:

1. The inputs (accounts, dues, payments with ``paid_on <= as_of``, and holds) are tagged by kind
   (``_kind``) and put in one frame: ``account_id`` and a few typed slots that each kind fills with its
   own columns (``_layout``: dues put due_id in ``text0``, payments put payment_id there).
2. That frame is hash-partitioned on ``account_id`` into N partitions (``repartition(N, account_id)``:
   partition = ``pmod(hash(account_id), N)``, Spark's Murmur3 hash, the same on every run and cluster), so
   the rows of one account always meet in one partition.
3. ``mapInArrow`` hands each partition to Python as Arrow record batches; they become the four Polars frames
   in the schemas of ``engine/schema.py``, each sorted by its key as ``store.repo.load_portfolio`` gives
   them, and ``compute_snapshots`` runs on them as it is. Its rows go back to Spark as Arrow.

Why ``repartition`` + ``mapInArrow`` rather than ``groupBy(bucket).applyInArrow`` or a cogroup: a cogroup
takes two inputs, not three or four; ``groupBy(...).applyInArrow`` needs the same shuffle plus a sort of
every row by the group key on the executors (the ``repartition`` needs none), and its groups are hashed a
second time onto the shuffle partitions, so some tasks get two groups and others none. Measured in local
mode on 2 cores (100,000 accounts, 1.2 M dues, 0.8 M payments, 2 partitions, five interleaved runs each on
a machine busy with other work): median 19.1 s with ``mapInArrow``, 21.1 s with ``applyInArrow``, and
``mapInArrow`` faster in every warm pair. ``bench/spark_run.py`` times the runner against one machine.
Each partition is held whole in the Python worker's memory, as the single-machine run holds the whole
portfolio: choose N so that one partition (about accounts / N) fits an executor's Python memory.

A payment dated after ``as_of`` cannot change the state as of ``as_of``: such payments are dropped before
the shuffle instead of after it. Nothing else differs from the single-machine run: the same function, the
same terms (pickled to the executors: frozen dataclasses), the same inputs per account, so the same rows.

PySpark is imported here and only here (and in ``services/spark_run.py`` when it runs); importing
``duecourse`` does not import it.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import polars as pl
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as sf
from pyspark.sql.types import (
    BooleanType,
    ByteType,
    DataType,
    DateType,
    IntegerType,
    LongType,
    ShortType,
    StringType,
    StructField,
    StructType,
)

from duecourse.domain.errors import Problem, ProblemsError
from duecourse.domain.terms import Terms
from duecourse.engine.schema import ACCOUNTS, ATTRIBUTE_PREFIX, DUES, JURISDICTION, PAYMENTS, SNAPSHOTS
from duecourse.engine.snapshot import compute_snapshots

__all__ = ["HOLDS", "conform", "quiet_pandas_check", "schema_problems", "spark_schema", "spark_snapshots"]

# The holds input: the accounts under a hold on the day (``store.repo.accounts_on_hold``).
HOLDS: dict[str, pl.DataType] = {"account_id": pl.String(), "on_hold": pl.Boolean()}

_KIND = "_kind"
_ACCOUNT, _DUE, _PAYMENT, _HOLD = range(4)
_INPUTS: tuple[tuple[int, Mapping[str, pl.DataType], tuple[str, ...]], ...] = (
    (_ACCOUNT, ACCOUNTS, ("account_id",)),
    (_DUE, DUES, ("account_id", "due_id")),
    (_PAYMENT, PAYMENTS, ("payment_id",)),
    (_HOLD, HOLDS, ("account_id",)),
)


# The optional columns of the accounts input (``compute_snapshots``).
_ACCOUNT_EXTRAS: dict[str, pl.DataType] = {"as_of": pl.Date(), JURISDICTION: pl.String()}


def _attribute_columns(accounts: DataFrame) -> dict[str, pl.DataType]:
    """The accounts' attribute columns (``engine/schema.attribute_column``): a number as a long, a text
    as a string."""
    return {
        field.name: pl.Int64() if isinstance(field.dataType, LongType | IntegerType) else pl.String()
        for field in accounts.schema.fields
        if field.name.startswith(ATTRIBUTE_PREFIX)
    }


def _layout(schema: Mapping[str, pl.DataType]) -> dict[str, str]:
    """Where each column of a kind travels: its slot, named by type and rank (``text0``, ``date1``, ...).

    The kinds share slots rather than each having its own columns: the shuffled rows are narrower (a
    quarter less time in the shuffle and the hand-over to Python, measured at 100,000 accounts).
    """
    seen: dict[str, int] = {}
    layout: dict[str, str] = {}
    for name, dtype in schema.items():
        if name == "account_id":
            continue
        family = _SLOT_FAMILY[type(dtype)]
        layout[name] = f"{family}{seen.get(family, 0)}"
        seen[family] = seen.get(family, 0) + 1
    return layout


def _slots(schemas: Iterable[Mapping[str, pl.DataType]]) -> dict[str, pl.DataType]:
    """Every slot the kinds use, with its type, in a fixed order."""
    slots: dict[str, pl.DataType] = {}
    for schema in schemas:
        for name, slot in _layout(schema).items():
            slots.setdefault(slot, schema[name])
    return dict(sorted(slots.items()))


_SLOT_FAMILY: dict[type[pl.DataType], str] = {
    pl.String: "text",
    pl.Date: "date",
    pl.Int64: "int",
    pl.Boolean: "flag",
}


# --- types -------------------------------------------------------------------------------------------


def _spark_type(dtype: pl.DataType) -> DataType:
    if dtype == pl.String:
        return StringType()
    if dtype == pl.Date:
        return DateType()
    if dtype == pl.Int64:
        return LongType()
    if dtype == pl.Int32:
        return IntegerType()
    if dtype == pl.Boolean:
        return BooleanType()
    raise TypeError(f"no Spark type for {dtype}")


def _arrow_type(dtype: pl.DataType) -> pa.DataType:
    if dtype == pl.String:
        return pa.string()
    if dtype == pl.Date:
        return pa.date32()
    if dtype == pl.Int64:
        return pa.int64()
    if dtype == pl.Int32:
        return pa.int32()
    if dtype == pl.Boolean:
        return pa.bool_()
    raise TypeError(f"no Arrow type for {dtype}")


def spark_schema(schema: Mapping[str, pl.DataType]) -> StructType:
    """The Spark schema of one of the frame schemas of ``engine/schema.py``."""
    return StructType([StructField(name, _spark_type(dtype), True) for name, dtype in schema.items()])


_SNAPSHOTS_SPARK = spark_schema(SNAPSHOTS)
_SNAPSHOTS_ARROW = pa.schema([pa.field(name, _arrow_type(dtype)) for name, dtype in SNAPSHOTS.items()])
_WIDENS_TO_LONG = (IntegerType, ShortType, ByteType)


def _fits(actual: DataType, expected: DataType) -> bool:
    """Whether a column of type ``actual`` can be read as ``expected`` without losing anything."""
    if isinstance(expected, StringType):
        return isinstance(actual, StringType)
    if isinstance(expected, LongType):
        return isinstance(actual, (LongType, *_WIDENS_TO_LONG))
    return type(actual) is type(expected)


def schema_problems(
    frame: DataFrame, schema: Mapping[str, pl.DataType], source: str, optional: tuple[str, ...] = ()
) -> list[Problem]:
    """Every column of ``schema`` that ``frame`` lacks or holds with another type, as ``source:column``.

    Extra columns are allowed (and ignored); whole numbers narrower than a long are read as longs.
    """
    have = {field.name: field.dataType for field in frame.schema.fields}
    problems: list[Problem] = []
    for name, dtype in schema.items():
        expected = _spark_type(dtype)
        if name not in have:
            if name not in optional:
                problems.append(
                    Problem(
                        "spark.missing_column",
                        f"column {name} is missing (expected {expected.simpleString()})",
                        f"{source}:{name}",
                    )
                )
        elif not _fits(have[name], expected):
            problems.append(
                Problem(
                    "spark.column_type",
                    f"column {name} is {have[name].simpleString()}; expected {expected.simpleString()}",
                    f"{source}:{name}",
                )
            )
    return problems


def conform(frame: DataFrame, schema: Mapping[str, pl.DataType]) -> DataFrame:
    """The columns of ``schema`` in its order and types (check ``schema_problems`` first)."""
    return frame.select([sf.col(name).cast(_spark_type(dtype)).alias(name) for name, dtype in schema.items()])


# --- the run -----------------------------------------------------------------------------------------


def _tagged(
    frame: DataFrame, kind: int, schema: Mapping[str, pl.DataType], slots: Mapping[str, pl.DataType]
) -> DataFrame:
    """``frame`` as rows of the shuffled frame: its kind, account_id, its columns in their slots, nulls."""
    by_slot = {slot: name for name, slot in _layout(schema).items()}
    columns = [sf.lit(kind).cast(ByteType()).alias(_KIND), sf.col("account_id").cast(StringType())]
    for slot, dtype in slots.items():
        value = sf.col(by_slot[slot]) if slot in by_slot else sf.lit(None)
        columns.append(value.cast(_spark_type(dtype)).alias(slot))
    return frame.select(columns)


def spark_snapshots(
    spark: SparkSession,
    accounts: DataFrame,
    dues: DataFrame,
    payments: DataFrame,
    terms: Terms,
    as_of: dt.date,
    on_hold: DataFrame | None = None,
    *,
    partitions: int | None = None,
) -> DataFrame:
    """``compute_snapshots`` of the same inputs as a Spark DataFrame (schema ``SNAPSHOTS``), row for row.

    The inputs are Spark DataFrames with the columns of ``ACCOUNTS``, ``DUES``, ``PAYMENTS`` (and ``HOLDS``:
    ``account_id`` with an optional ``on_hold``, true when absent). As for ``compute_snapshots``, an
    optional Date column ``as_of`` in ``accounts`` takes each account as of its own date (null: ``as_of``),
    and an optional ``jurisdiction`` (the customer's) and attribute columns (``attribute_column``) are what
    strategy segments may choose by. ``partitions`` (N) defaults to the session's default parallelism.
    Nothing runs until the result is written or collected.
    """
    n = partitions if partitions is not None else spark.sparkContext.defaultParallelism
    if n < 1:
        raise ValueError(f"partitions must be at least 1, got {n}")
    accounts_schema = (
        dict(ACCOUNTS)
        | {name: dtype for name, dtype in _ACCOUNT_EXTRAS.items() if name in accounts.columns}
        | _attribute_columns(accounts)
    )
    inputs = [(accounts, accounts_schema, "accounts"), (dues, DUES, "dues"), (payments, PAYMENTS, "payments")]
    if on_hold is not None and "on_hold" not in on_hold.columns:
        on_hold = on_hold.withColumn("on_hold", sf.lit(True))
    if on_hold is not None:
        inputs.append((on_hold, HOLDS, "on_hold"))
    problems = [p for frame, schema, name in inputs for p in schema_problems(frame, schema, name)]
    if problems:
        raise ProblemsError(problems)

    slots = _slots([accounts_schema, DUES, PAYMENTS] + ([HOLDS] if on_hold is not None else []))
    if "as_of" not in accounts_schema:
        # A payment after as_of cannot change the state as of as_of: leave it out of the shuffle.
        payments = payments.where(sf.col("paid_on") <= sf.lit(as_of))
    tagged = _tagged(accounts, _ACCOUNT, accounts_schema, slots)
    for frame, kind, schema in ((dues, _DUE, DUES), (payments, _PAYMENT, PAYMENTS), (on_hold, _HOLD, HOLDS)):
        if frame is not None:
            tagged = tagged.unionByName(_tagged(frame, kind, schema, slots))
    kernel = _PartitionKernel(
        terms=terms,
        as_of=as_of,
        accounts=accounts_schema,
        with_holds=on_hold is not None,
    )
    with quiet_pandas_check():
        return tagged.repartition(n, sf.col("account_id")).mapInArrow(kernel, _SNAPSHOTS_SPARK)


@contextmanager
def quiet_pandas_check() -> Iterator[None]:
    """Without PySpark 4.3's warning that it does not fully support pandas 3.

    ``mapInArrow`` checks that pandas is installed but never uses it (the batches are Arrow), so the
    warning is about nothing this module does; only that warning is silenced.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="PySpark does not yet fully support pandas >= 3", category=FutureWarning
        )
        yield


@dataclass(frozen=True, slots=True)
class _PartitionKernel:
    """What runs on an executor for one partition: Arrow in, ``compute_snapshots``, Arrow out.

    Attributes:
        terms: the configuration's terms, pickled with this object to every executor.
        as_of: the date of the run.
        accounts: the accounts' columns (``ACCOUNTS``, and ``as_of`` when each account has its own date).
        with_holds: whether holds were given (``on_hold=None`` and no hold are the same; kept exact).
    """

    terms: Terms
    as_of: dt.date
    accounts: Mapping[str, pl.DataType]
    with_holds: bool

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        received = list(batches)
        if not received:
            return
        rows = pl.from_arrow(pa.Table.from_batches(received))
        if not isinstance(rows, pl.DataFrame):  # from_arrow of a Table is a frame; narrow it for mypy
            raise TypeError("expected a frame from Arrow")
        frames = {
            kind: _frame_of(rows, kind, self.accounts if kind == _ACCOUNT else schema, key)
            for kind, schema, key in _INPUTS
            if kind != _HOLD or self.with_holds
        }
        snapshots = compute_snapshots(
            frames[_ACCOUNT],
            frames[_DUE],
            frames[_PAYMENT],
            self.terms,
            self.as_of,
            frames[_HOLD] if self.with_holds else None,
        )
        yield from snapshots.to_arrow().cast(_SNAPSHOTS_ARROW).to_batches()


def _frame_of(
    rows: pl.DataFrame, kind: int, schema: Mapping[str, pl.DataType], key: tuple[str, ...]
) -> pl.DataFrame:
    """The rows of one kind in its frame schema, sorted by its key as the store loads them."""
    layout = _layout(schema)
    return (
        rows.filter(pl.col(_KIND) == kind)
        .select([pl.col(layout.get(name, name)).cast(dtype).alias(name) for name, dtype in schema.items()])
        .sort(list(key))
    )
