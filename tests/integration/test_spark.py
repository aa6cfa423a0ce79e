"""The Spark runner gives, row for row, what ``compute_snapshots`` gives on one machine.

One local Spark session (``local[2]``) serves the module: a synthetic portfolio on several dates and
partition counts, small cases written inline, the checks of the inputs, and the command line end to end
(``export portfolio`` then ``spark-run`` against ``run`` and the stored snapshot).
"""

from __future__ import annotations

import datetime as dt
import io
import os
import pickle
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from textwrap import dedent

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from sqlalchemy import insert

# `make setup` installs the 'spark' extra (pyspark[sql], which brings the pandas its mapInArrow checks
# for): a missing PySpark fails here rather than skipping the module.
# PySpark 4.3 warns when it finds pandas 3 (mapInArrow does not use pandas; it only checks its version).
pytestmark = pytest.mark.filterwarnings(
    "ignore:PySpark does not yet fully support pandas >= 3.0.0:FutureWarning"
)

from pyspark.sql import DataFrame, SparkSession  # noqa: E402 - only once PySpark is known to be there

from duecourse.cli import main  # noqa: E402
from duecourse.config import load_config  # noqa: E402
from duecourse.domain.errors import ProblemsError  # noqa: E402
from duecourse.domain.terms import Terms  # noqa: E402
from duecourse.engine.schema import ACCOUNTS, DUES, PAYMENTS, SNAPSHOTS  # noqa: E402
from duecourse.engine.snapshot import compute_snapshots  # noqa: E402
from duecourse.engine.spark import HOLDS, spark_schema, spark_snapshots  # noqa: E402
from duecourse.services.spark_run import write_portfolio  # noqa: E402
from duecourse.services.synth import SynthPortfolio, generate_portfolio  # noqa: E402
from duecourse.store import repo  # noqa: E402
from duecourse.store.db import make_engine  # noqa: E402
from duecourse.store.tables import holds  # noqa: E402

START = dt.date(2026, 6, 1)


# The JIT's first tier only and the serial collector: the JVM starts and warms up in half the time (a
# session and its first job took 23 s, now 11 s; this module 47-60 s, now 33-39 s, on 2 cores) and these
# small jobs run no slower. What Spark computes is the same.
FAST_START_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYSPARK_PYTHON", os.environ.get("PYSPARK_PYTHON", sys.executable))
        session = (
            SparkSession.builder.master("local[2]")
            .appName("duecourse tests")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.driver.extraJavaOptions", FAST_START_JVM)
            .getOrCreate()
        )
        session.sparkContext.setLogLevel("ERROR")
        try:
            yield session
        finally:
            session.stop()


@pytest.fixture(scope="module")
def terms() -> Terms:
    return load_config(None).terms


def to_spark(spark: SparkSession, frame: pl.DataFrame, schema: Mapping[str, pl.DataType]) -> DataFrame:
    return spark.createDataFrame(frame.select(list(schema)).to_arrow(), schema=spark_schema(schema))


def collected(frame: DataFrame) -> pl.DataFrame:
    rows = pl.from_arrow(frame.toArrow())
    assert isinstance(rows, pl.DataFrame)
    return rows.select([pl.col(c).cast(t) for c, t in SNAPSHOTS.items()]).sort("account_id")


def frame(text: str, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    return pl.read_csv(io.StringIO(dedent(text)), schema=dict(schema))


# --------------------------------------------------------------------------- a synthetic portfolio


@pytest.fixture(scope="module")
def synthetic() -> SynthPortfolio:
    # About 3,000 accounts of the four products and every behaviour; dues from 300 days before START.
    return generate_portfolio(customers=2_500, start=START, days=90, seed=11)


def not_mine_on_hold(portfolio: SynthPortfolio) -> pl.DataFrame:
    """The 'not mine' accounts are on hold (a dispute), as the run would have them."""
    return portfolio.behaviours.filter(pl.col("behaviour") == "not_mine").select(
        "account_id", on_hold=pl.lit(True)
    )


@pytest.fixture(scope="module")
def synthetic_on_spark(
    spark: SparkSession, synthetic: SynthPortfolio
) -> tuple[DataFrame, DataFrame, DataFrame, DataFrame]:
    return (
        to_spark(spark, synthetic.accounts, ACCOUNTS).cache(),
        to_spark(spark, synthetic.dues, DUES).cache(),
        to_spark(spark, synthetic.payments, PAYMENTS).cache(),
        to_spark(spark, not_mine_on_hold(synthetic), HOLDS).cache(),
    )


@pytest.mark.parametrize(
    ("as_of", "partitions", "with_holds"),
    [
        pytest.param(START - dt.timedelta(days=120), 2, False, id="history-2-partitions"),
        pytest.param(START, 3, True, id="start-3-partitions-holds"),
        pytest.param(START + dt.timedelta(days=45), 7, True, id="mid-7-partitions-holds"),
        pytest.param(START + dt.timedelta(days=400), 2, True, id="after-everything"),
    ],
)
def test_spark_gives_the_single_machine_rows_on_a_synthetic_portfolio(
    spark: SparkSession,
    terms: Terms,
    synthetic: SynthPortfolio,
    synthetic_on_spark: tuple[DataFrame, DataFrame, DataFrame, DataFrame],
    as_of: dt.date,
    partitions: int,
    with_holds: bool,
) -> None:
    accounts, dues, payments, held = synthetic_on_spark
    on_hold = not_mine_on_hold(synthetic) if with_holds else None
    expected = compute_snapshots(
        synthetic.accounts, synthetic.dues, synthetic.payments, terms, as_of, on_hold
    )
    got = spark_snapshots(
        spark,
        accounts,
        dues,
        payments,
        terms,
        as_of,
        held if with_holds else None,
        partitions=partitions,
    )
    assert got.schema == spark_schema(SNAPSHOTS)
    assert_frame_equal(collected(got), expected)
    assert expected.height == synthetic.accounts.height
    assert expected.get_column("stage").n_unique() > 1  # a portfolio where something happens


def test_terms_travel_to_the_executors_by_pickle(terms: Terms) -> None:
    assert pickle.loads(pickle.dumps(terms)) == terms


# --------------------------------------------------------------------------- small cases, inline

ACCOUNTS_CSV = """\
account_id,customer_id,product_code,opened_on
L1,C1,loan_cn,2025-01-01
E1,C2,loan_cn,2025-01-01
P1,C3,card_us,2024-02-01
H1,C4,card_cn,2024-01-10
"""
# Minor units. X9 is no account of the portfolio: its due is ignored by both engines.
DUES_CSV = """\
account_id,due_id,due_date,amount_minor,component,minimum_minor,posted_on
L1,I1,2025-03-10,50000,principal,,
L1,I1i,2025-03-10,5000,interest,,
L1,I2,2025-04-10,50000,principal,,
L1,I2i,2025-04-10,5000,interest,,
L1,I3,2025-05-10,50000,principal,,
H1,S1,2025-04-23,300000,principal,30000,2025-03-30
X9,S1,2025-04-23,100000,principal,10000,2025-03-30
"""
# P1 has payments and no due (a credit); P4 comes after the date and changes nothing.
PAYMENTS_CSV = """\
payment_id,account_id,paid_on,amount_minor
P1,L1,2025-03-09,55000
P2,L1,2025-04-20,30000
P3,P1,2025-04-01,12345
P4,L1,2025-06-01,100000
"""
HOLDS_CSV = """\
account_id,on_hold
H1,true
E1,false
X9,true
"""


@pytest.mark.parametrize(
    ("partitions", "with_holds"),
    [
        pytest.param(1, False, id="1-partition"),
        pytest.param(2, True, id="2-partitions-holds"),
        pytest.param(8, True, id="8-partitions-some-empty-holds"),
    ],
)
def test_spark_gives_the_single_machine_rows_on_small_cases(
    spark: SparkSession, terms: Terms, partitions: int, with_holds: bool
) -> None:
    accounts, dues, payments = (
        frame(ACCOUNTS_CSV, ACCOUNTS),
        frame(DUES_CSV, DUES),
        frame(PAYMENTS_CSV, PAYMENTS),
    )
    holds = frame(HOLDS_CSV, HOLDS) if with_holds else None
    as_of = dt.date(2025, 5, 5)
    expected = compute_snapshots(accounts, dues, payments, terms, as_of, holds)
    got = collected(
        spark_snapshots(
            spark,
            to_spark(spark, accounts, ACCOUNTS),
            to_spark(spark, dues, DUES),
            to_spark(spark, payments, PAYMENTS),
            terms,
            as_of,
            to_spark(spark, holds, HOLDS) if holds is not None else None,
            partitions=partitions,
        )
    )
    assert_frame_equal(got, expected)
    by_id = {row["account_id"]: row for row in got.iter_rows(named=True)}
    assert set(by_id) == {"L1", "E1", "P1", "H1"}
    assert by_id["E1"]["outstanding_minor"] == 0 and by_id["E1"]["stage"] == "current"
    assert by_id["P1"]["credit_minor"] == 12345
    assert by_id["H1"]["on_hold"] is with_holds and by_id["E1"]["on_hold"] is False


def test_each_account_may_be_taken_as_of_its_own_date(spark: SparkSession, terms: Terms) -> None:
    accounts, dues, payments = (
        frame(ACCOUNTS_CSV, ACCOUNTS),
        frame(DUES_CSV, DUES),
        frame(PAYMENTS_CSV, PAYMENTS),
    )
    # L1 a month later (its payment P4 of 2025-06-01 now counts), H1 earlier, the others on the run's date.
    dated = accounts.with_columns(
        as_of=pl.col("account_id").replace_strict(
            {"L1": dt.date(2025, 6, 5), "H1": dt.date(2025, 4, 25)}, default=None, return_dtype=pl.Date
        )
    )
    as_of = dt.date(2025, 5, 5)
    expected = compute_snapshots(dated, dues, payments, terms, as_of)
    got = collected(
        spark_snapshots(
            spark,
            to_spark(spark, dated, dict(ACCOUNTS) | {"as_of": pl.Date()}),
            to_spark(spark, dues, DUES),
            to_spark(spark, payments, PAYMENTS),
            terms,
            as_of,
            partitions=2,
        )
    )
    assert_frame_equal(got, expected)
    assert dict(got.select("account_id", "as_of").iter_rows()) == {
        "E1": as_of,
        "H1": dt.date(2025, 4, 25),
        "L1": dt.date(2025, 6, 5),
        "P1": as_of,
    }


def test_holds_without_an_on_hold_column_hold_every_account_listed(spark: SparkSession, terms: Terms) -> None:
    accounts, dues, payments = (
        frame(ACCOUNTS_CSV, ACCOUNTS),
        frame(DUES_CSV, DUES),
        frame(PAYMENTS_CSV, PAYMENTS),
    )
    listed = to_spark(spark, pl.DataFrame({"account_id": ["H1", "L1"]}), {"account_id": pl.String()})
    got = collected(
        spark_snapshots(
            spark,
            to_spark(spark, accounts, ACCOUNTS),
            to_spark(spark, dues, DUES),
            to_spark(spark, payments, PAYMENTS),
            terms,
            dt.date(2025, 5, 5),
            listed,
        )
    )
    assert got.filter("on_hold").get_column("account_id").to_list() == ["H1", "L1"]


def test_inputs_with_missing_or_mistyped_columns_are_refused_naming_each(
    spark: SparkSession, terms: Terms
) -> None:
    accounts = to_spark(spark, frame(ACCOUNTS_CSV, ACCOUNTS), ACCOUNTS)
    payments = to_spark(spark, frame(PAYMENTS_CSV, PAYMENTS), PAYMENTS)
    dues = spark.createDataFrame(
        [("L1", "I1", "2025-03-10", "500.00", "principal", None)],
        "account_id string, due_id string, due_date string, amount_minor string, component string, "
        "minimum_minor long",
    )
    with pytest.raises(ProblemsError) as raised:
        spark_snapshots(spark, accounts, dues, payments, terms, dt.date(2025, 5, 5))
    assert [str(p) for p in raised.value.problems] == [
        "dues:due_date: column due_date is string; expected date",
        "dues:amount_minor: column amount_minor is string; expected bigint",
        "dues:posted_on: column posted_on is missing (expected date)",
    ]


# --------------------------------------------------------------------------- the command line

CUSTOMERS = """\
customer_id,name,locale,timezone,jurisdiction,phone,email,address_line1,address_line2,city,region,postal_code,country
C1,王芳,zh-CN,Asia/Shanghai,CN,+8613800138000,wang@example.cn,朝阳区建国路88号,,北京,北京,100022,CN
C2,Jane Roe,en-US,America/New_York,US,+12125550100,jane@example.com,1 Main St,,Albany,NY,12207,US
"""
ACCOUNTS_FILE = """\
account_id,customer_id,product_code,opened_on
A1,C1,card_cn,2024-01-10
A2,C1,loan_cn,2024-06-01
A3,C2,card_us,2024-02-01
A4,C2,card_us,2025-04-01
"""
DUES_FILE = """\
account_id,due_id,due_date,amount,component,minimum_amount,posted_on
A1,S1,2025-04-23,3000.00,principal,300.00,2025-03-30
A2,I1,2025-03-10,500.00,principal,,
A2,I1i,2025-03-10,50.00,interest,,
A2,I2,2025-04-10,500.00,principal,,
A2,I2i,2025-04-10,50.00,interest,,
A2,I3,2025-05-10,500.00,principal,,
A3,S1,2025-04-25,800.00,principal,40.00,2025-03-28
"""
PAYMENTS_FILE = """\
payment_id,account_id,paid_on,amount
P1,A2,2025-03-09,550.00
P2,A2,2025-04-20,300.00
P3,A3,2025-04-24,40.00
P4,A4,2025-04-30,25.00
"""


def written_snapshots(folder: Path) -> pl.DataFrame:
    rows = pl.read_parquet(folder / "*.parquet", hive_partitioning=False)
    as_of = dt.date.fromisoformat(folder.name.removeprefix("as_of="))
    return (
        rows.with_columns(as_of=pl.lit(as_of))
        .select([pl.col(c).cast(t) for c, t in SNAPSHOTS.items()])
        .sort("account_id")
    )


def test_export_portfolio_then_spark_run_gives_the_stored_run(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'duecourse.db'}"
    assert main(["--db", db, "init"]) == 0
    for kind, text in (
        ("customers", CUSTOMERS),
        ("accounts", ACCOUNTS_FILE),
        ("dues", DUES_FILE),
        ("payments", PAYMENTS_FILE),
    ):
        path = tmp_path / f"{kind}.csv"
        path.write_text(dedent(text), encoding="utf-8")
        assert main(["--db", db, "import", kind, str(path)]) == 0
    engine = make_engine(db)
    try:
        with engine.begin() as connection:  # C2 disputes: A3 and A4 are on hold
            connection.execute(
                insert(holds).values(
                    scope="customer",
                    customer_id="C2",
                    kind="dispute",
                    starts_on=dt.date(2025, 5, 1),
                    reason="not my account",
                    created_at=dt.datetime(2025, 5, 1, tzinfo=dt.UTC),
                )
            )
        as_of = "2025-06-15"
        assert main(["--db", db, "run", "--as-of", as_of]) == 0
        stored = repo.snapshot_for(engine, dt.date.fromisoformat(as_of))
    finally:
        engine.dispose()
    exported, out = tmp_path / "portfolio", tmp_path / "snapshots"
    assert main(["--db", db, "export", "portfolio", "--out", str(exported), "--as-of", as_of]) == 0
    assert sorted(p.name for p in exported.iterdir()) == ["accounts", "dues", "on_hold", "payments"]
    # What spark-run must replace (a stale file of the same date) and must leave (another date).
    (out / f"as_of={as_of}").mkdir(parents=True)
    (out / "as_of=2025-01-01").mkdir()
    stale = pl.DataFrame({"account_id": ["ZZ"]})
    stale.write_parquet(out / f"as_of={as_of}" / "part-stale.parquet")
    stale.write_parquet(out / "as_of=2025-01-01" / "part-other.parquet")
    capsys.readouterr()

    args = ["spark-run", "--as-of", as_of, "--input", str(exported), "--out", str(out)]
    assert main([*args, "--partitions", "3"]) == 0
    printed = capsys.readouterr().out
    assert f"spark-run {as_of}: 4 accounts, 7 dues, 4 payments, 2 on_hold in 3 partitions" in printed
    assert f"as_of={as_of}: 4 snapshots" in printed
    stored = stored.select([pl.col(c).cast(t) for c, t in SNAPSHOTS.items()]).sort("account_id")
    assert stored.get_column("on_hold").to_list() == [False, False, True, True]
    assert_frame_equal(written_snapshots(out / f"as_of={as_of}"), stored)
    assert (out / "as_of=2025-01-01" / "part-other.parquet").exists()


def test_spark_run_names_every_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in" / "accounts").mkdir(parents=True)
    assert main(["spark-run", "--as-of", "2025-05-05", "--input", str(tmp_path / "in"), "--out", "x"]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path}/in/dues: dues/ is missing" in err
    assert f"{tmp_path}/in/payments: payments/ is missing" in err
    assert "2 problems found" in err
    assert (
        main(["spark-run", "--as-of", "2025-05-05", "--input", str(tmp_path / "nowhere"), "--out", "x"]) == 1
    )
    assert f"input folder {tmp_path}/nowhere does not exist" in capsys.readouterr().err


def test_spark_run_names_every_wrong_column_with_its_file(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in"
    for name, text, schema in (
        ("accounts", ACCOUNTS_CSV, ACCOUNTS),
        ("dues", DUES_CSV, DUES),
        ("payments", PAYMENTS_CSV, PAYMENTS),
    ):
        (source / name).mkdir(parents=True)
        rows = frame(text, schema)
        if name == "dues":  # amounts written as text, and no posted_on
            rows = rows.drop("posted_on").with_columns(pl.col("amount_minor").cast(pl.String))
        rows.write_parquet(source / name / "part-0.parquet")
    pl.DataFrame({"account": ["H1"]}).write_parquet(source / "holds.parquet")
    (source / "payments" / "part-0.parquet").unlink()  # an empty folder
    args = ["spark-run", "--as-of", "2025-05-05", "--input", str(source), "--out", str(tmp_path / "out")]
    assert main(args) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{source}/dues:amount_minor: column amount_minor is string; expected bigint",
        f"{source}/dues:posted_on: column posted_on is missing (expected date)",
        f"{source}/payments: payments has no Parquet files",
        f"{source}/holds.parquet:account_id: column account_id is missing (expected string)",
        "4 problems found; nothing was changed.",
    ]
    assert not (tmp_path / "out").exists()


def test_a_failing_task_fails_the_run_with_its_error(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in"
    accounts = frame(ACCOUNTS_CSV, ACCOUNTS)
    # The same account twice: the single-machine engine refuses it, and so does each partition.
    write_portfolio(
        source, pl.concat([accounts, accounts.head(1)]), frame(DUES_CSV, DUES), frame(PAYMENTS_CSV, PAYMENTS)
    )
    args = ["spark-run", "--as-of", "2025-05-05", "--input", str(source), "--out", str(tmp_path / "out")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("duecourse: the Spark run failed: ValueError: duplicate account_id: L1")


def test_spark_chooses_segments_by_jurisdiction_and_balance_as_one_machine_does(
    spark: SparkSession, terms: Terms, synthetic: SynthPortfolio
) -> None:
    """A segmented strategy: the accounts carry their customer's jurisdiction through the shuffle."""
    from decimal import Decimal

    from duecourse.domain.terms import Segment, SegmentWhen, Stage

    segmented = Terms(
        terms.products,
        terms.bucket_sets,
        terms.stages,
        (
            Segment(
                "large",
                SegmentWhen(jurisdictions=("CN",), min_balance=Decimal("20000.00")),
                (Stage("L1", min_days_past_due=1), Stage("L2", min_delinquency_days=30)),
            ),
            Segment("us", SegmentWhen(jurisdictions=("US",)), (Stage("US1", min_days_past_due=1),)),
        ),
    )
    accounts = repo.with_jurisdiction(synthetic.accounts, synthetic.customers)
    with_jurisdiction = dict(ACCOUNTS) | {"jurisdiction": pl.String()}
    as_of = START + dt.timedelta(days=45)
    expected = compute_snapshots(accounts, synthetic.dues, synthetic.payments, segmented, as_of)
    got = spark_snapshots(
        spark,
        to_spark(spark, accounts, with_jurisdiction),
        to_spark(spark, synthetic.dues, DUES),
        to_spark(spark, synthetic.payments, PAYMENTS),
        segmented,
        as_of,
        partitions=3,
    )
    assert_frame_equal(collected(got), expected)
    assert {"L1", "L2", "US1"} <= set(expected.get_column("stage"))


def test_spark_chooses_segments_by_account_attributes_as_one_machine_does(
    spark: SparkSession, terms: Terms, synthetic: SynthPortfolio
) -> None:
    """The accounts' attribute columns (a number in exact units, a text) travel through the shuffle."""
    from decimal import Decimal

    from duecourse.domain.terms import AttributeCondition, Segment, SegmentWhen, Stage
    from duecourse.engine.schema import attribute_column
    from duecourse.engine.snapshot import scaled_attribute

    scored = Terms(
        terms.products,
        terms.bucket_sets,
        terms.stages,
        (
            Segment(
                "risky-north",
                SegmentWhen(
                    attributes=(
                        AttributeCondition("risk_score", "number", min=Decimal("700.5")),
                        AttributeCondition("branch", "text", values=("north",)),
                    )
                ),
                (Stage("RN1", min_days_past_due=1),),
            ),
        ),
    )
    ids = synthetic.accounts.get_column("account_id")
    scores = [
        None if i % 7 == 0 else scaled_attribute(Decimal(600 + (i * 37) % 300) + Decimal("0.5"))
        for i in range(len(ids))
    ]
    branches = [None if i % 5 == 0 else ("north", "south")[i % 2] for i in range(len(ids))]
    accounts = synthetic.accounts.with_columns(
        pl.Series(attribute_column("risk_score"), scores, dtype=pl.Int64),
        pl.Series(attribute_column("branch"), branches, dtype=pl.String),
    )
    schema = dict(ACCOUNTS) | {
        attribute_column("risk_score"): pl.Int64(),
        attribute_column("branch"): pl.String(),
    }
    as_of = START + dt.timedelta(days=45)
    expected = compute_snapshots(accounts, synthetic.dues, synthetic.payments, scored, as_of)
    got = spark_snapshots(
        spark,
        to_spark(spark, accounts, schema),
        to_spark(spark, synthetic.dues, DUES),
        to_spark(spark, synthetic.payments, PAYMENTS),
        scored,
        as_of,
        partitions=3,
    )
    assert_frame_equal(collected(got), expected)
    assert "RN1" in set(expected.get_column("stage"))


def test_a_strategy_by_attributes_runs_on_spark_from_the_exported_values(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``export portfolio --as-of D`` writes the attribute values in force on D beside the accounts (and
    refuses without a date); spark-run then gives the stored run's rows."""
    from test_attributes_run import SCORES, SEGMENT
    from test_cli import ACCOUNTS as ACCOUNTS_CSV
    from test_cli import CUSTOMERS as CUSTOMERS_CSV
    from test_cli import DUES as DUES_CSV
    from test_cli import PAYMENTS as PAYMENTS_CSV

    from duecourse.config import default_config_text

    db = f"sqlite:///{tmp_path / 'duecourse.db'}"
    config = tmp_path / "duecourse.toml"
    config.write_text(
        default_config_text().replace("[[strategy.stages]]", SEGMENT + "[[strategy.stages]]", 1),
        encoding="utf-8",
    )

    def cli(*args: str) -> int:
        return main(["--db", db, "--config", str(config), *args])

    assert cli("init") == 0
    for kind, text in (
        ("customers", CUSTOMERS_CSV),
        ("accounts", ACCOUNTS_CSV),
        ("dues", DUES_CSV),
        ("payments", PAYMENTS_CSV),
        ("attributes", SCORES),
    ):
        path = tmp_path / f"{kind}.csv"
        path.write_text(dedent(text), encoding="utf-8")
        assert cli("import", kind, str(path)) == 0
    as_of = "2025-05-05"
    assert cli("run", "--as-of", as_of) == 0
    engine = make_engine(db)
    try:
        stored = repo.snapshot_for(engine, dt.date.fromisoformat(as_of))
    finally:
        engine.dispose()
    assert "HR-1" in stored.get_column("stage").to_list()
    exported, out = tmp_path / "portfolio", tmp_path / "snapshots"
    capsys.readouterr()
    assert cli("export", "portfolio", "--out", str(exported)) == 1
    assert "give --as-of D to export the values in force on D" in capsys.readouterr().err
    assert cli("export", "portfolio", "--out", str(exported), "--as-of", as_of) == 0
    accounts = pl.read_parquet(exported / "accounts")
    assert dict(accounts.select("account_id", "attribute:risk_score").iter_rows()) == {
        "A1": 720_000_000,
        "A2": 310_500_000,
        "A3": None,
    }
    capsys.readouterr()
    assert cli("spark-run", "--as-of", "2025-05-06", "--input", str(exported), "--out", str(out)) == 1
    assert "attribute values in force on 2025-05-05, not on 2025-05-06" in capsys.readouterr().err
    assert (
        cli("spark-run", "--as-of", as_of, "--input", str(exported), "--out", str(out), "--partitions", "2")
        == 0
    )
    stored = stored.select([pl.col(c).cast(t) for c, t in SNAPSHOTS.items()]).sort("account_id")
    assert_frame_equal(written_snapshots(out / f"as_of={as_of}"), stored)
