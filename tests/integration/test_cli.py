"""The command-line contract end to end, on SQLite and PostgreSQL, with the user's files written inline."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from textwrap import dedent

import pytest

from duecourse.cli import main

CUSTOMERS = """\
customer_id,name,locale,timezone,jurisdiction,phone,email,address_line1,address_line2,city,region,postal_code,country
C1,王芳,zh-CN,Asia/Shanghai,CN,+8613800138000,wang@example.cn,朝阳区建国路88号,,北京,北京,100022,CN
C2,Jane Roe,en-US,America/New_York,US,+12125550100,jane@example.com,1 Main St,,Albany,NY,12207,US
"""
ACCOUNTS = """\
account_id,customer_id,product_code,opened_on
A1,C1,card_cn,2024-01-10
A2,C1,loan_cn,2024-06-01
A3,C2,card_us,2024-02-01
"""
DUES = """\
account_id,due_id,due_date,amount,component,minimum_amount,posted_on
A1,S1,2025-04-23,3000.00,principal,300.00,2025-03-30
A2,I1,2025-03-10,500.00,principal,,
A2,I1i,2025-03-10,50.00,interest,,
A2,I2,2025-04-10,500.00,principal,,
A2,I2i,2025-04-10,50.00,interest,,
A2,I3,2025-05-10,500.00,principal,,
A2,I3i,2025-05-10,50.00,interest,,
A3,S1,2025-04-25,800.00,principal,40.00,2025-03-28
"""
PAYMENTS = """\
payment_id,account_id,paid_on,amount
P1,A2,2025-03-09,550.00
P2,A2,2025-04-20,300.00
P3,A3,2025-04-24,40.00
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(dedent(text), encoding="utf-8")
    return path


def cli(db_url: str, *args: str) -> int:
    return main(["--db", db_url, *args])


FILES = (("customers", CUSTOMERS), ("accounts", ACCOUNTS), ("dues", DUES), ("payments", PAYMENTS))


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def loaded_template(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_databases: Callable[..., AbstractContextManager[str]],
) -> Iterator[str]:
    """A database of each kind made by ``init`` and holding the four files, imported by the command
    once for the module; the tests change copies of it (``loaded``)."""
    folder = tmp_path_factory.mktemp("loaded")
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{folder / 'template.db'}"
        else:
            url = stack.enter_context(postgres_databases())
        assert cli(url, "init") == 0
        for kind, text in FILES:
            assert cli(url, "import", kind, str(write(folder, f"{kind}.csv", text))) == 0
        yield url


@pytest.fixture
def loaded(
    loaded_template: str,
    tmp_path: Path,
    database_copy: Callable[[str, Path], AbstractContextManager[str]],
) -> Iterator[str]:
    """A database of its own made by ``init`` and holding the four files, which are in ``tmp_path``."""
    for kind, text in FILES:
        write(tmp_path, f"{kind}.csv", text)
    with database_copy(loaded_template, tmp_path) as url:
        yield url


def read_state(path: Path) -> dict[str, dict[str, str]]:
    with path.open(encoding="utf-8") as f:
        return {row["account_id"]: row for row in csv.DictReader(f)}


def test_import_run_export_gives_each_accounts_state(loaded: str, tmp_path: Path) -> None:
    assert cli(loaded, "run", "--as-of", "2025-05-05") == 0
    out = tmp_path / "state.csv"
    assert cli(loaded, "export", "state", "--as-of", "2025-05-05", "--out", str(out)) == 0
    header = out.read_text(encoding="utf-8").splitlines()[0]
    assert header == (
        "account_id,as_of,days_past_due,delinquency_days,bucket,amount_past_due,principal_past_due,"
        "interest_past_due,fee_past_due,penalty_past_due,oldest_unpaid_due_date,missed_dues,stage,on_hold"
    )
    state = read_state(out)
    # E-CN-4: ¥3,000 statement, minimum ¥300 unpaid; 违约金 5 % = 15.00; grace 3 days (容时).
    assert state["A1"] == {
        "account_id": "A1",
        "as_of": "2025-05-05",
        "days_past_due": "12",
        "delinquency_days": "9",
        "bucket": "M1",
        "amount_past_due": "315.00",
        "principal_past_due": "300.00",
        "interest_past_due": "0.00",
        "fee_past_due": "15.00",
        "penalty_past_due": "0.00",
        "oldest_unpaid_due_date": "2025-04-23",
        "missed_dues": "1",
        "stage": "M1",
        "on_hold": "false",
    }
    # The loan: I1 paid on time; 300 paid on I2 (interest 50 then principal 250); I2 is the anchor.
    loan = state["A2"]
    assert loan["oldest_unpaid_due_date"] == "2025-04-10"
    assert loan["days_past_due"] == "25" and loan["missed_dues"] == "1"
    assert loan["principal_past_due"] == "250.00" and loan["interest_past_due"] == "0.00"
    # 罚息 0.00075/day on 500 for 04-11..04-19 (9 days) and on 250 for 04-20..05-05 (16 days) = 6.375 → 6.38.
    assert loan["penalty_past_due"] == "6.38"
    assert state["A3"]["days_past_due"] == "0" and state["A3"]["stage"] == "current"


def test_running_the_same_date_twice_changes_nothing(loaded: str, tmp_path: Path) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    assert cli(loaded, "run", "--as-of", "2025-05-05") == 0
    assert cli(loaded, "export", "state", "--as-of", "2025-05-05", "--out", str(first)) == 0
    assert cli(loaded, "run", "--as-of", "2025-05-05") == 0
    assert cli(loaded, "export", "state", "--as-of", "2025-05-05", "--out", str(second)) == 0
    assert first.read_bytes() == second.read_bytes()


def test_a_run_after_a_gap_gives_the_true_state_and_records_stage_entries(
    loaded: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(loaded, "run", "--as-of", "2025-04-15") == 0
    assert cli(loaded, "run", "--as-of", "2025-06-15") == 0  # a gap of two months
    capsys.readouterr()
    assert cli(loaded, "explain", "A2", "--as-of", "2025-06-15", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["days_past_due"] == 66 and data["stage"] == "M3"
    # The run searched the days it did not see: I2 (due 04-10) has been unpaid since 04-11, so the loan
    # reached 61 delinquency days, M3, on 06-10, and 31 days, M2, on 05-11; the first run found M1 on 04-11.
    assert data["stage_entered_on"] == "2025-06-10"
    for day, stage, entered in [("2025-05-20", "M2", "2025-05-11"), ("2025-04-15", "M1", "2025-04-11")]:
        assert cli(loaded, "explain", "A2", "--as-of", day, "--json") == 0
        earlier = json.loads(capsys.readouterr().out)
        assert (earlier["stage"], earlier["stage_entered_on"]) == (stage, entered), day


def test_an_account_imported_late_gets_its_true_stage_history_in_a_gap_and_in_a_daily_run(
    loaded: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def entered(account: str, day: str) -> tuple[str, str]:
        capsys.readouterr()
        assert cli(loaded, "explain", account, "--as-of", day, "--json") == 0
        data = json.loads(capsys.readouterr().out)
        return data["stage"], data["stage_entered_on"]

    def add_loan(account: str, due_date: str) -> None:
        accounts = write(
            tmp_path,
            f"{account}.csv",
            f"account_id,customer_id,product_code,opened_on\n{account},C1,loan_cn,2025-01-01\n",
        )
        dues = write(
            tmp_path,
            f"{account}-dues.csv",
            f"account_id,due_id,due_date,amount,component\n{account},{account}-1,{due_date},100.00,principal\n",
        )
        assert cli(loaded, "import", "accounts", str(accounts)) == 0
        assert cli(loaded, "import", "dues", str(dues)) == 0

    assert cli(loaded, "run", "--as-of", "2025-02-20") == 0
    add_loan("A4", "2025-01-10")  # opened before the previous run, unpaid since 01-11
    assert cli(loaded, "run", "--as-of", "2025-03-01") == 0  # a gap
    # Delinquent from 01-11 (M1), 31 days from 02-10 (M2).
    assert entered("A4", "2025-03-01") == ("M2", "2025-02-10")
    assert entered("A4", "2025-02-01") == ("M1", "2025-01-11")
    assert cli(loaded, "run", "--as-of", "2025-03-01") == 0  # a re-run replaces the same rows
    assert entered("A4", "2025-03-01") == ("M2", "2025-02-10")
    add_loan("A5", "2025-02-01")
    assert cli(loaded, "run", "--as-of", "2025-03-02") == 0  # the next day
    assert entered("A5", "2025-03-02") == ("M1", "2025-02-02")
    assert entered("A4", "2025-03-02") == ("M2", "2025-02-10")


def test_explain_tells_allocation_charges_days_bucket_and_stage(
    loaded: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(loaded, "run", "--as-of", "2025-05-05") == 0
    capsys.readouterr()
    assert cli(loaded, "explain", "A1", "--as-of", "2025-05-05") == 0
    text = capsys.readouterr().out
    assert "Customer C1 王芳" in text
    assert "card interest on S1: 55.5 (exact) = 0.0005 per day × 111000.00" in text
    assert "late fee on S1: 15.00 = 0.05 × unpaid minimum 300.00" in text
    assert "days past due 12 = 2025-05-05 − 2025-04-23" in text
    assert "Delinquency days 9 = max(0, 12 − grace 3)" in text
    assert "Bucket M1 (set cn_m: 1–30 days)" in text
    # The first run found the day: due 04-23, 3 grace days, delinquent from 04-27.
    assert "Stage M1 (entered 2025-04-27): delinquency days 9 ≥ 1" in text


def test_reimporting_the_same_rows_is_a_no_op(
    loaded: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert cli(loaded, "import", "payments", str(tmp_path / "payments.csv")) == 0
    assert "0 payments added, 3 already there" in capsys.readouterr().out


def test_the_same_id_with_other_content_is_rejected_and_nothing_is_written(
    loaded: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    changed = write(
        tmp_path,
        "changed.csv",
        """\
        payment_id,account_id,paid_on,amount
        P4,A2,2025-04-30,10.00
        P2,A2,2025-04-20,350.00
        """,
    )
    capsys.readouterr()
    assert cli(loaded, "import", "payments", str(changed)) == 1
    err = capsys.readouterr().err
    assert (
        f"{changed}:3:amount: payment P2 is already imported with amount 300.00; this file says 350.00" in err
    )
    assert cli(loaded, "import", "payments", str(tmp_path / "payments.csv"), "--json") == 0
    assert json.loads(capsys.readouterr().out)["rows_unchanged"] == 3  # P4 was not written either


def test_a_changed_row_is_named_by_the_line_the_user_sees(
    loaded: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A blank line and an address written on two lines (in quotes) push C2's record down to line 6.
    header = CUSTOMERS.splitlines()[0]
    changed = tmp_path / "customers.csv"
    changed.write_text(
        f"{header}\n"
        "C1,王芳,zh-CN,Asia/Shanghai,CN,+8613800138000,wang@example.cn,朝阳区建国路88号,,北京,北京,100022,CN\n"
        "\n"
        "C3,Ann Lee,en-GB,Europe/London,UK,+447700900123,ann@example.co.uk,"
        '"Flat 2\n10 High St",,Leeds,,LS1 1AA,GB\n'
        "C2,Jane Roe,en-US,America/New_York,US,+12125550100,jane@example.com,2 Main St,,Albany,NY,12207,US\n",
        encoding="utf-8",
    )
    capsys.readouterr()
    assert cli(loaded, "import", "customers", str(changed)) == 1
    err = capsys.readouterr().err
    assert (
        f"{changed}:6:address_line1: customer C2 is already imported with address_line1 1 Main St" in err
    ), err


def test_an_id_with_a_line_break_is_refused(
    loaded: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "payments.csv"
    bad.write_text('payment_id,account_id,paid_on,amount\n"P5\nP6",A2,2025-04-30,10.00\n', encoding="utf-8")
    capsys.readouterr()
    assert cli(loaded, "import", "payments", str(bad)) == 1
    assert (
        f"{bad}:2:payment_id: 'P5\\nP6' holds a line break or another control character"
        in capsys.readouterr().err
    )


def test_a_bad_file_reports_every_problem_and_writes_nothing(
    loaded: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(
        tmp_path,
        "bad.csv",
        """\
        account_id,due_id,due_date,amount,component
        A2,X1,2025-02-30,100.00,principal
        A9,X2,2025-06-10,"1,000.00",principal
        A2,X3,2025-06-10,12.345,capital
        """,
    )
    capsys.readouterr()
    assert cli(loaded, "import", "dues", str(bad)) == 1
    err = capsys.readouterr().err
    assert f"{bad}:2:due_date:" in err
    assert f"{bad}:3:account_id: account 'A9' is not imported" in err
    assert f"{bad}:3:amount:" in err
    assert f"{bad}:4:amount:" in err and f"{bad}:4:component:" in err
    assert "nothing was changed" in err


def test_export_before_any_run_says_what_to_do(
    loaded: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(loaded, "export", "state", "--as-of", "2025-05-05", "--out", str(tmp_path / "x.csv")) == 1
    assert "run `duecourse run --as-of 2025-05-05` first" in capsys.readouterr().err


def test_explain_an_unknown_account(loaded: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(loaded, "explain", "NOPE", "--as-of", "2025-05-05") == 1
    assert "account 'NOPE' is not imported" in capsys.readouterr().err
