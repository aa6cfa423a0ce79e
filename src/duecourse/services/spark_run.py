"""The snapshots of a date computed on Apache Spark from Parquet files, and those files from the store.

``export_portfolio`` writes the stored portfolio as Parquet datasets (``accounts/``, ``dues/``,
``payments/``, and ``on_hold/`` for a date); ``run_parquet`` reads such datasets (from a local folder or any
URL Spark reads, e.g. ``hdfs://`` or ``s3a://``), runs ``engine.spark.spark_snapshots`` and writes the
snapshots as a Parquet dataset partitioned by ``as_of`` (``OUT/as_of=YYYY-MM-DD/``; running a date again
replaces that date's partition and nothing else).

PySpark is imported inside ``run_parquet`` only: exporting needs no Spark.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from duecourse.bootstrap import App
from duecourse.config import Config
from duecourse.domain.errors import DuecourseError, Problem, ProblemsError
from duecourse.engine.schema import ACCOUNTS, ATTRIBUTE_PREFIX, DUES, JURISDICTION, PAYMENTS, attribute_column
from duecourse.services import attributes
from duecourse.store import repo

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["SparkRunFailed", "SparkRunResult", "export_portfolio", "run_parquet", "write_portfolio"]

INPUTS: dict[str, dict[str, pl.DataType]] = {"accounts": ACCOUNTS, "dues": DUES, "payments": PAYMENTS}
HOLDS_FILE = "holds.parquet"
HOLDS_DIR = "on_hold"
_PART = "part-00000.parquet"


class SparkRunFailed(DuecourseError):
    """Spark could not run or a task failed; the message names the cause."""


# ---------------------------------------------------------------- export


def write_portfolio(
    out_dir: Path,
    accounts: pl.DataFrame,
    dues: pl.DataFrame,
    payments: pl.DataFrame,
    on_hold: pl.DataFrame | None = None,
) -> dict[str, int]:
    """Write the frames as the Parquet datasets ``run_parquet`` reads; returns the rows written per dataset.

    Each dataset is one file, ``DIR/<name>/part-00000.parquet``, replaced if it is there; a dataset folder
    holding other Parquet files is refused (Spark would read them too).
    """
    frames: dict[str, tuple[pl.DataFrame, Mapping[str, pl.DataType]]] = {
        name: (frame, INPUTS[name])
        for name, frame in (("accounts", accounts), ("dues", dues), ("payments", payments))
    }
    if on_hold is not None:
        frames[HOLDS_DIR] = (on_hold, {"account_id": pl.String(), "on_hold": pl.Boolean()})
    problems = [
        Problem(
            "export.not_empty",
            f"{out_dir / name} holds other Parquet files ({', '.join(sorted(others)[:3])}); "
            "choose an empty --out folder",
            str(out_dir / name),
        )
        for name in frames
        if (others := [p.name for p in (out_dir / name).glob("*.parquet") if p.name != _PART])
    ]
    if problems:
        raise ProblemsError(problems)
    written: dict[str, int] = {}
    for name, (frame, schema) in frames.items():
        folder = out_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        columns = dict(schema)
        if name == "accounts" and JURISDICTION in frame.columns:
            columns[JURISDICTION] = pl.String()
        if name == "accounts":
            columns |= {c: frame.schema[c] for c in frame.columns if c.startswith(ATTRIBUTE_PREFIX)}
            if ATTRIBUTES_AS_OF in frame.columns:
                columns[ATTRIBUTES_AS_OF] = pl.Date()
        frame.select([pl.col(c).cast(t) for c, t in columns.items()]).write_parquet(folder / _PART)
        written[name] = frame.height
    return written


# The day whose attribute values an exported accounts dataset carries (a column of its own).
ATTRIBUTES_AS_OF = "attributes_as_of"


def export_portfolio(app: App, out_dir: Path, as_of: dt.date | None = None) -> dict[str, int]:
    """The stored accounts, dues and payments as Parquet datasets (and the holds of ``as_of`` when given);
    the accounts carry the customer's jurisdiction and, when the strategy's segments choose by account
    attributes, their values in force on ``as_of`` (which is then required)."""
    needed = app.config.terms.needed_attributes
    if needed and as_of is None:
        raise ProblemsError(
            [
                Problem(
                    "export.as_of_needed",
                    f"the strategy's segments choose by the attributes {', '.join(needed)}: give --as-of D "
                    "to export the values in force on D",
                    str(out_dir),
                )
            ]
        )
    portfolio = repo.load_portfolio(app.engine)
    on_hold = repo.accounts_on_hold(app.engine, as_of) if as_of is not None else None
    accounts = repo.with_jurisdiction(portfolio.accounts, portfolio.customers)
    if needed and as_of is not None:
        accounts = attributes.with_attributes(
            accounts, attributes.values_as_of(app.engine, as_of, needed)
        ).with_columns(pl.lit(as_of, pl.Date()).alias(ATTRIBUTES_AS_OF))
    return write_portfolio(out_dir, accounts, portfolio.dues, portfolio.payments, on_hold)


# ---------------------------------------------------------------- the run


@dataclass(frozen=True)
class SparkRunResult:
    """What a Spark run read and wrote.

    Attributes:
        rows: input rows per dataset (accounts, dues, payments, and on_hold when a holds input was given).
        snapshots: rows written, one per account.
        partitions: the N of the hash partitioning.
        out: the folder of this date's snapshots.
        stages: accounts per stage.
        seconds: start (the Spark session), read (schemas and counts), compute (the run and the write),
            count (reading the written rows back).
    """

    as_of: dt.date
    rows: dict[str, int]
    snapshots: int
    partitions: int
    out: str
    stages: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _join(base: str, name: str) -> str:
    return f"{base.rstrip('/')}/{name}"


def _is_local(location: str) -> bool:
    return "://" not in location and not location.startswith("file:")


def _master(master: str | None) -> str | None:
    """``master`` as given; None: spark-submit's master, or ``local[2]`` when not launched by spark-submit."""
    if master is None and "PYSPARK_GATEWAY_PORT" not in os.environ:
        return "local[2]"
    return master


def _missing_inputs(input_dir: str) -> list[Problem]:
    """The input folders that are not there (a local run on local paths; Spark reports the others)."""
    if not Path(input_dir).is_dir():
        return [Problem("spark.input_missing", f"input folder {input_dir} does not exist", input_dir)]
    problems = [
        Problem(
            "spark.input_missing",
            f"{name}/ is missing: expected a Parquet dataset folder with the columns {', '.join(schema)}",
            _join(input_dir, name),
        )
        for name, schema in INPUTS.items()
        if not Path(input_dir, name).exists()
    ]
    if Path(input_dir, HOLDS_FILE).exists() and Path(input_dir, HOLDS_DIR).exists():
        problems.append(
            Problem(
                "spark.holds_twice",
                f"both {HOLDS_FILE} and {HOLDS_DIR}/ are there; keep one",
                _join(input_dir, HOLDS_FILE),
            )
        )
    return problems


def _holds_locations(input_dir: str, checked: bool) -> list[str]:
    """Where the holds may be: the one that is there (``checked``: a local folder), else both to try."""
    locations = [_join(input_dir, name) for name in (HOLDS_DIR, HOLDS_FILE)]
    return [loc for loc in locations if Path(loc).exists()] if checked else locations


def _task_error(exc: Exception) -> str:
    """The Python error a Spark task raised (its last line), else the exception's first line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    python = [line for line in lines if line.split(":", 1)[0].endswith(("Error", "Exception"))]
    return (python or lines or [type(exc).__name__])[-1]


@contextmanager
def _session(master: str | None) -> Iterator[SparkSession]:
    """The active Spark session if there is one (kept running), else a new one (stopped at the end).

    ``master`` None: the master spark-submit was given. In local mode the Python workers run this
    interpreter (``PYSPARK_PYTHON``, unless set), the one that has duecourse installed.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        yield active
        return
    if master is not None and master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # Spark's own log from errors up, and no progress bar on stderr, where the problems are printed.
    builder = (
        SparkSession.builder.appName("duecourse spark-run")
        .config("spark.log.level", "ERROR")
        .config("spark.ui.showConsoleProgress", "false")
    )
    if master is not None:
        builder = builder.master(master)
    from duecourse.engine.spark import quiet_pandas_check

    with quiet_pandas_check():  # PySpark checks pandas once more while it starts
        spark = builder.getOrCreate()
    try:
        yield spark
    finally:
        spark.stop()


def _read(spark: SparkSession, location: str, name: str, optional: bool) -> DataFrame | Problem | None:
    """The dataset at ``location``; None when it is ``optional`` and not there."""
    from pyspark.errors import AnalysisException

    try:
        return spark.read.parquet(location)
    except AnalysisException as exc:
        if optional and exc.getCondition() == "PATH_NOT_FOUND":
            return None
        if exc.getCondition() == "UNABLE_TO_INFER_SCHEMA":
            return Problem("spark.no_files", f"{name} has no Parquet files", location)
        return Problem("spark.unreadable", f"{name} cannot be read as Parquet: {_task_error(exc)}", location)


def run_parquet(
    config: Config,
    as_of: dt.date,
    input_dir: str | Path,
    out_dir: str | Path,
    master: str | None = "local[2]",
    partitions: int | None = None,
) -> SparkRunResult:
    """Read the Parquet inputs, compute the snapshots of ``as_of`` on Spark, write them; counts and timings.

    Every missing folder and every missing or mistyped column is reported at once (``ProblemsError``,
    each with its file and column); a failed Spark task raises ``SparkRunFailed`` with its error.
    """
    source, target = str(input_dir), str(out_dir)
    master = _master(master)
    # Local folders of a local run are checked before Spark starts; Spark finds the others.
    checked = master is not None and master.startswith("local") and _is_local(source)
    problems = _missing_inputs(source) if checked else []
    if problems:
        raise ProblemsError(problems)
    try:
        from pyspark.errors import PySparkException
        from pyspark.sql.pandas.utils import require_minimum_pandas_version, require_minimum_pyarrow_version

        from duecourse.engine.spark import quiet_pandas_check

        # mapInArrow checks these when the run is planned: check them before Spark starts.
        with quiet_pandas_check():
            require_minimum_pandas_version()
            require_minimum_pyarrow_version()
    except ImportError as exc:
        raise SparkRunFailed(
            f"spark-run needs PySpark with pandas and pyarrow (the 'spark' extra): {exc}"
        ) from None

    t0 = time.perf_counter()
    with _session(master) as spark:
        t1 = time.perf_counter()
        try:
            return _run(
                spark,
                config,
                as_of,
                source=source,
                checked=checked,
                target=target,
                partitions=partitions,
                start_seconds=t1 - t0,
            )
        except PySparkException as exc:
            raise SparkRunFailed(f"the Spark run failed: {_task_error(exc)}") from exc


def _run(
    spark: SparkSession,
    config: Config,
    as_of: dt.date,
    *,
    source: str,
    checked: bool,
    target: str,
    partitions: int | None,
    start_seconds: float,
) -> SparkRunResult:
    from pyspark.sql import functions as sf

    from duecourse.engine.spark import HOLDS, conform, schema_problems, spark_snapshots

    t1 = time.perf_counter()
    frames: dict[str, DataFrame] = {}
    problems: list[Problem] = []
    locations = [(name, _join(source, name)) for name in INPUTS]
    locations += [(HOLDS_DIR, location) for location in _holds_locations(source, checked)]
    for name, location in locations:
        if name in frames:
            continue  # the holds were found at the first place tried
        read = _read(spark, location, name, optional=name == HOLDS_DIR)
        if read is None:
            continue
        if isinstance(read, Problem):
            problems.append(read)
            continue
        if name == HOLDS_DIR and "on_hold" not in read.columns:
            read = read.withColumn("on_hold", sf.lit(True))
        schema = HOLDS if name == HOLDS_DIR else INPUTS[name]
        if name == "accounts" and config.terms.needed_attributes:
            columns = {f.name for f in read.schema.fields}
            missing = [n for n in config.terms.needed_attributes if attribute_column(n) not in columns]
            if missing:
                message = (
                    f"the accounts have no value columns for the attributes {', '.join(missing)}, which the "
                    "strategy's segments choose by; export them again with `duecourse export portfolio "
                    "--as-of D` (the values in force on D)"
                )
                problems.append(Problem("spark.missing_column", message, location))
                continue
            dated = (
                [r[0] for r in read.select(ATTRIBUTES_AS_OF).distinct().collect()]
                if ATTRIBUTES_AS_OF in columns
                else []
            )
            if dated != [as_of]:
                shown = ", ".join(str(d) for d in dated) or "no date"
                message = (
                    f"the accounts carry the attribute values in force on {shown}, not on {as_of}: the "
                    f"segments would be chosen by values of another day; export them again with `duecourse "
                    f"export portfolio --as-of {as_of}`"
                )
                problems.append(Problem("spark.stale_attributes", message, location))
                continue
            schema = {
                **schema,
                **{
                    attribute_column(n): pl.Int64() if kind == "number" else pl.String()
                    for n, kind in config.terms.needed_attributes.items()
                },
            }
        if name == "accounts" and JURISDICTION in read.columns:
            schema = {**schema, JURISDICTION: pl.String()}
        elif name == "accounts" and config.terms.needs_jurisdiction:
            message = (
                "the accounts have no jurisdiction column, which the strategy's segments choose by; "
                "export them again (duecourse export portfolio) to add it"
            )
            problems.append(Problem("spark.missing_column", message, location))
            continue
        found = schema_problems(read, schema, location)
        problems.extend(found)
        if not found:
            frames[name] = conform(read, schema)
    if problems:
        raise ProblemsError(problems)
    rows = {name: frame.count() for name, frame in frames.items()}
    n = partitions if partitions is not None else spark.sparkContext.defaultParallelism
    t2 = time.perf_counter()

    snapshots = spark_snapshots(
        spark,
        frames["accounts"],
        frames["dues"],
        frames["payments"],
        config.terms,
        as_of,
        frames.get(HOLDS_DIR),
        partitions=n,
    )
    (
        snapshots.write.mode("overwrite")
        .option("partitionOverwriteMode", "dynamic")
        .partitionBy("as_of")
        .parquet(target)
    )
    t3 = time.perf_counter()
    written = _join(target, f"as_of={as_of.isoformat()}")
    counts = spark.read.parquet(written).groupBy("stage").count().collect()
    stages = {str(row["stage"]): int(row["count"]) for row in sorted(counts, key=lambda r: str(r["stage"]))}
    t4 = time.perf_counter()
    return SparkRunResult(
        as_of=as_of,
        rows=rows,
        snapshots=sum(stages.values()),
        partitions=n,
        out=written,
        stages=stages,
        seconds={"start": start_seconds, "read": t2 - t1, "compute": t3 - t2, "count": t4 - t3},
    )
