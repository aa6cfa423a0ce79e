"""The input file readers: each rule, worded as the user sees it, on small files written as a user would."""

from __future__ import annotations

import datetime as dt
import re
import textwrap
from decimal import Decimal, localcontext
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from duecourse.domain.errors import ProblemsError
from duecourse.engine.schema import ACCOUNTS, CUSTOMERS, DUES, PAYMENTS
from duecourse.io.readers import MAX_PROBLEMS, ROW, Refs, open_table, read_table

NO_REFS = Refs()
CNY_A1 = Refs(account_digits=pl.DataFrame({"account_id": ["A1"], "minor_digits": [2]}))

DUES_HEADER = "account_id,due_id,due_date,amount,component,minimum_amount,posted_on\n"
CUSTOMERS_HEADER = (
    "customer_id,name,locale,timezone,jurisdiction,phone,email,"
    "address_line1,address_line2,city,region,postal_code,country\n"
)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Files are named relative to tmp_path, so sources read "dues.csv:3:amount" as the user sees them.
    monkeypatch.chdir(tmp_path)


def write(name: str, text: str) -> Path:
    path = Path(name)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems(kind: str, path: Path, refs: Refs = NO_REFS) -> list[str]:
    with pytest.raises(ProblemsError) as caught:
        read_table(kind, path, refs)
    return [str(p) for p in caught.value.problems]


def codes(kind: str, path: Path, refs: Refs = NO_REFS) -> list[str]:
    with pytest.raises(ProblemsError) as caught:
        read_table(kind, path, refs)
    return [p.code for p in caught.value.problems]


def one_due(amount: str = "100.00", **cells: str) -> Path:
    row = {
        "account_id": "A1",
        "due_id": "D1",
        "due_date": "2025-01-31",
        "amount": amount,
        "component": "principal",
        "minimum_amount": "",
        "posted_on": "",
    }
    row.update(cells)
    quoted = ",".join(f'"{v}"' if "," in v else v for v in row.values())
    return write("dues.csv", DUES_HEADER + quoted + "\n")


# --- customers -------------------------------------------------------------------------------------


def test_customers_are_read_as_text_so_leading_zeros_survive_and_empty_cells_stay_empty() -> None:
    path = write(
        "customers.csv",
        CUSTOMERS_HEADER
        + "007,Li Wei,zh-CN,Asia/Shanghai,CN,+8613800138000,li@example.cn,1 Road,,Shanghai,SH,200000,CN\n"
        + "C2,Ann Smith,en-GB,Europe/London,UK,,,,,,,,\n",
    )
    frame = read_table("customers", path, NO_REFS)
    assert dict(frame.schema) == CUSTOMERS
    assert frame.row(0, named=True)["customer_id"] == "007"
    assert frame.row(1, named=True)["phone"] == ""
    assert frame.null_count().sum_horizontal().item() == 0


def test_customer_id_name_locale_timezone_and_jurisdiction_are_required() -> None:
    path = write("customers.csv", CUSTOMERS_HEADER + " ,  ,,,,,,,,,,,\n")
    assert problems("customers", path) == [
        "customers.csv:2:customer_id: customer_id is empty",
        "customers.csv:2:name: name is empty",
        "customers.csv:2:locale: locale is empty (expected: zh-CN, en-US, en-GB)",
        "customers.csv:2:timezone: timezone is empty",
        "customers.csv:2:jurisdiction: jurisdiction is empty (expected: CN, US, UK)",
    ]


def test_customer_locale_timezone_and_jurisdiction_must_be_known() -> None:
    path = write("customers.csv", CUSTOMERS_HEADER + "C1,Li,fr-FR,Mars/Olympus,DE,,,,,,,,\n")
    assert problems("customers", path) == [
        "customers.csv:2:locale: unknown locale 'fr-FR' (expected: zh-CN, en-US, en-GB)",
        "customers.csv:2:timezone: unknown time zone 'Mars/Olympus' "
        "(expected an IANA name like Asia/Shanghai)",
        "customers.csv:2:jurisdiction: unknown jurisdiction 'DE' (expected: CN, US, UK)",
    ]


@pytest.mark.parametrize(
    "phone",
    [
        pytest.param("+86 138 0013 8000", id="spaces"),
        pytest.param("13800138000", id="no-plus"),
        pytest.param("+0123456789", id="country-code-0"),
        pytest.param("+12345", id="too-short"),
        pytest.param("+1234567890123456", id="too-long"),
    ],
)
def test_customer_phone_must_be_e164(phone: str) -> None:
    path = write("customers.csv", CUSTOMERS_HEADER + f"C1,Li,zh-CN,Asia/Shanghai,CN,{phone},,,,,,,\n")
    assert problems("customers", path) == [
        f"customers.csv:2:phone: {phone!r} is not an E.164 phone number "
        "('+', country code and number, digits only, like +8613800138000)"
    ]


def test_customer_email_and_country_are_shape_checked() -> None:
    path = write(
        "customers.csv",
        CUSTOMERS_HEADER
        + "C1,Li,zh-CN,Asia/Shanghai,CN,,li@example,,,,,,cn\n"
        + "C2,Al,en-US,America/New_York,US,+12125550100,al@example.com,,,,,,USA\n",
    )
    assert problems("customers", path) == [
        "customers.csv:2:email: 'li@example' does not look like an email address",
        "customers.csv:2:country: 'cn' is not an ISO 3166 alpha-2 country code "
        "(two capital letters, like CN)",
        "customers.csv:3:country: 'USA' is not an ISO 3166 alpha-2 country code "
        "(two capital letters, like CN)",
    ]


def test_customer_ids_are_unique_and_the_repeat_names_the_first_row() -> None:
    path = write(
        "customers.csv",
        CUSTOMERS_HEADER
        + "C1,Li,zh-CN,Asia/Shanghai,CN,,,,,,,,\n"
        + "C2,Al,en-US,America/New_York,US,,,,,,,,\n"
        + "C1,Wei,zh-CN,Asia/Shanghai,CN,,,,,,,,\n",
    )
    assert problems("customers", path) == [
        "customers.csv:4:customer_id: duplicate customer_id 'C1' (first on row 2)"
    ]


# --- accounts --------------------------------------------------------------------------------------

ACCOUNT_REFS = Refs(customer_ids=pl.Series(["C1", "C2"]), product_digits={"card": 2, "loan": 2})


def test_accounts_are_read_with_their_opening_date() -> None:
    path = write(
        "accounts.csv",
        """
        account_id,customer_id,product_code,opened_on
        A1,C1,loan,2024-03-01
        """,
    )
    frame = read_table("accounts", path, ACCOUNT_REFS)
    assert dict(frame.schema) == ACCOUNTS
    assert frame.to_dicts() == [
        {"account_id": "A1", "customer_id": "C1", "product_code": "loan", "opened_on": dt.date(2024, 3, 1)}
    ]


def test_account_customer_and_product_must_be_known() -> None:
    path = write(
        "accounts.csv",
        """
        account_id,customer_id,product_code,opened_on
        A1,C9,mortgage,2024-03-01
        """,
    )
    assert problems("accounts", path, ACCOUNT_REFS) == [
        "accounts.csv:2:customer_id: customer 'C9' is not imported",
        "accounts.csv:2:product_code: unknown product 'mortgage' (configured: card, loan)",
    ]


def test_account_references_are_not_checked_without_refs() -> None:
    path = write(
        "accounts.csv",
        """
        account_id,customer_id,product_code,opened_on
        A1,C9,mortgage,2024-03-01
        """,
    )
    assert read_table("accounts", path, NO_REFS).height == 1


def test_account_ids_have_no_surrounding_spaces_and_are_unique() -> None:
    path = write(
        "accounts.csv",
        """
        account_id,customer_id,product_code,opened_on
        A1,C1,loan,2024-03-01
        A1 ,C1,loan,2024-03-01
        A1,C2,card,2024-04-01
        """,
    )
    assert problems("accounts", path, ACCOUNT_REFS) == [
        "accounts.csv:3:account_id: 'A1 ' has leading or trailing spaces",
        "accounts.csv:4:account_id: duplicate account_id 'A1' (first on row 2)",
    ]


# --- dues: amounts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "digits", "minor"),
    [
        pytest.param("0.05", 2, 5, id="cents"),
        pytest.param("10", 2, 1000, id="no-decimals"),
        pytest.param("100000.10", 2, 10000010, id="trailing-zero-decimal"),
        pytest.param("0.5", 2, 50, id="one-decimal"),
        pytest.param("007.50", 2, 750, id="leading-zeros"),
        pytest.param("1000", 0, 1000, id="jpy"),
        pytest.param("1000.00", 0, 1000, id="jpy-trailing-zeros"),
        pytest.param("1.234", 3, 1234, id="three-digits"),
        pytest.param("9999999999999999.99", 2, 999999999999999999, id="largest"),
        pytest.param("0000000000000000000001.50", 2, 150, id="more-leading-zeros-than-an-int64-holds"),
        pytest.param("1.500000000000000000000", 2, 150, id="more-trailing-zeros-than-an-int64-holds"),
        pytest.param("5.000000000000000000000", 0, 5, id="jpy-with-many-trailing-zeros"),
    ],
)
def test_amounts_become_exact_integer_minor_units(amount: str, digits: int, minor: int) -> None:
    refs = Refs(account_digits=pl.DataFrame({"account_id": ["A1"], "minor_digits": [digits]}))
    frame = read_table("dues", one_due(amount), refs)
    assert frame.get_column("amount_minor").to_list() == [minor]


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        pytest.param(
            "1,000.00",
            "'1,000.00' has a comma; write the amount without thousands separators, like 1000.00",
            id="thousands",
        ),
        pytest.param("-5", "'-5' is negative; amount must be greater than 0", id="negative"),
        pytest.param(" 5", "' 5' has leading or trailing spaces", id="space"),
        pytest.param(
            "1e3", "'1e3' is in exponent notation; write the plain number, like 1000.00", id="exponent"
        ),
        pytest.param("+5", "'+5' has a sign; write the plain number, like 1000.00", id="plus"),
        pytest.param(".5", "'.5' needs a digit before the decimal point, like 0.5", id="bare-point"),
        pytest.param(
            "abc",
            "'abc' is not an amount; write digits with an optional decimal point, like 1000.00",
            id="text",
        ),
        pytest.param(
            "5.",
            "'5.' is not an amount; write digits with an optional decimal point, like 1000.00",
            id="point",
        ),
        pytest.param("", "amount is empty", id="empty"),
    ],
)
def test_amounts_must_be_plain_decimals(amount: str, message: str) -> None:
    assert problems("dues", one_due(amount), CNY_A1) == [f"dues.csv:2:amount: {message}"]


def test_amount_must_be_greater_than_zero() -> None:
    assert problems("dues", one_due("0.00"), CNY_A1) == [
        "dues.csv:2:amount: amount must be greater than 0 (got 0.00)"
    ]


def test_amount_may_not_have_more_decimals_than_the_currency() -> None:
    assert problems("dues", one_due("12.345"), CNY_A1) == [
        "dues.csv:2:amount: 12.345 has more than 2 decimal places"
    ]


def test_amount_with_decimals_in_a_currency_without_minor_unit() -> None:
    jpy = Refs(account_digits=pl.DataFrame({"account_id": ["A1"], "minor_digits": [0]}))
    assert problems("dues", one_due("100.5"), jpy) == [
        "dues.csv:2:amount: 100.5 has decimal places; the account's currency has no minor unit"
    ]


def test_amount_too_large_for_minor_units() -> None:
    assert problems("dues", one_due("12345678901234567"), CNY_A1) == [
        "dues.csv:2:amount: 12345678901234567 is too large for an amount"
    ]


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        pytest.param(
            "99999999999999999999", "99999999999999999999 is too large for an amount", id="20-digits"
        ),
        pytest.param(
            "1.0000000000000000000001",
            "1.0000000000000000000001 has more than 2 decimal places",
            id="a-last-decimal-far-out",
        ),
    ],
)
def test_amounts_longer_than_an_int64_are_judged_on_their_text(amount: str, message: str) -> None:
    assert problems("dues", one_due(amount), CNY_A1) == [f"dues.csv:2:amount: {message}"]


def _expected_minor(amount: str, digits: int, *, positive: bool) -> int | str:
    """The rule for an amount, written out with Decimal: minor units, or the code of its problem."""
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", amount):
        return "import.bad_amount"
    whole, _, decimals = amount.partition(".")
    if len(decimals.rstrip("0")) > digits:
        return "import.too_many_decimals"
    if len(whole.lstrip("0")) + digits > 18:
        return "import.amount_too_large"
    with localcontext() as exact:
        exact.prec = 100
        minor = int(Decimal(amount).scaleb(digits))
    if positive and minor == 0:
        return "import.amount_not_positive"
    return minor


_ZEROS_AND_DIGITS = st.text(alphabet=st.sampled_from("000001123456789"), min_size=1, max_size=24)
_AMOUNTS = st.one_of(
    st.builds(lambda whole, decimals: f"{whole}.{decimals}", _ZEROS_AND_DIGITS, _ZEROS_AND_DIGITS),
    _ZEROS_AND_DIGITS,
    st.sampled_from(["", "5.", ".5", "-1", "1e3", " 1", "+1", "0", "0.00"]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(_AMOUNTS, st.integers(0, 4)), min_size=1, max_size=40))
def test_amounts_are_converted_as_decimal_arithmetic_would(rows: list[tuple[str, int]]) -> None:
    refs = Refs(
        account_digits=pl.DataFrame(
            {"account_id": [f"A{i}" for i in range(len(rows))], "minor_digits": [d for _, d in rows]}
        )
    )
    lines = "".join(f"A{i},D{i},2025-01-31,{a},principal,{a},\n" for i, (a, _) in enumerate(rows))
    path = Path("dues.csv")
    path.write_text(DUES_HEADER + lines, encoding="utf-8")
    amount = [_expected_minor(a, d, positive=True) for a, d in rows]
    minimum = [_expected_minor(a, d, positive=False) for a, d in rows]
    wanted = [
        (f"dues.csv:{i + 2}:{column}", code)
        for i in range(len(rows))
        for column, code in (("amount", amount[i]), ("minimum_amount", minimum[i]))
        if isinstance(code, str) and not (column == "minimum_amount" and rows[i][0] == "")
    ]
    if not wanted:
        frame = read_table("dues", path, refs)
        assert frame.get_column("amount_minor").to_list() == amount
        assert frame.get_column("minimum_minor").to_list() == minimum
        return
    with pytest.raises(ProblemsError) as caught:
        read_table("dues", path, refs)
    found = [(p.source, p.code) for p in caught.value.problems if p.code != "import.minimum_above_amount"]
    assert found == wanted


# --- dues: other rules -----------------------------------------------------------------------------


def test_dues_are_read_into_the_dues_frame() -> None:
    path = write(
        "dues.csv",
        DUES_HEADER
        + "A1,D1,2025-01-31,1000.00,principal,,\n"
        + "A1,D2,2025-02-28,2500.50,principal,125.00,2025-01-05\n",
    )
    frame = read_table("dues", path, CNY_A1)
    assert dict(frame.schema) == DUES
    assert frame.to_dicts() == [
        {
            "account_id": "A1",
            "due_id": "D1",
            "due_date": dt.date(2025, 1, 31),
            "amount_minor": 100000,
            "component": "principal",
            "minimum_minor": None,
            "posted_on": None,
        },
        {
            "account_id": "A1",
            "due_id": "D2",
            "due_date": dt.date(2025, 2, 28),
            "amount_minor": 250050,
            "component": "principal",
            "minimum_minor": 12500,
            "posted_on": dt.date(2025, 1, 5),
        },
    ]


def test_dues_optional_columns_may_be_absent() -> None:
    path = write(
        "dues.csv",
        """
        account_id,due_id,due_date,amount,component
        A1,D1,2025-01-31,1000.00,interest
        """,
    )
    frame = read_table("dues", path, CNY_A1)
    assert dict(frame.schema) == DUES
    assert frame.select("minimum_minor", "posted_on").row(0) == (None, None)


@pytest.mark.parametrize(
    ("date", "message"),
    [
        pytest.param("2025-02-30", "'2025-02-30' is not a real date", id="feb-30"),
        pytest.param("2025-13-01", "'2025-13-01' is not a real date", id="month-13"),
        pytest.param("0000-01-01", "'0000-01-01' is not a real date", id="year-0"),
        pytest.param("2025/01/31", "'2025/01/31' is not a date in YYYY-MM-DD form", id="slashes"),
        pytest.param("2025-1-31", "'2025-1-31' is not a date in YYYY-MM-DD form", id="unpadded"),
        pytest.param("31.01.2025", "'31.01.2025' is not a date in YYYY-MM-DD form", id="european"),
        pytest.param("", "due_date is empty", id="empty"),
    ],
)
def test_due_date_must_be_a_real_iso_date(date: str, message: str) -> None:
    assert problems("dues", one_due(due_date=date), CNY_A1) == [f"dues.csv:2:due_date: {message}"]


def test_component_must_be_known() -> None:
    assert problems("dues", one_due(component="tax"), CNY_A1) == [
        "dues.csv:2:component: unknown component 'tax' (expected: principal, interest, fee, penalty)"
    ]


def test_minimum_amount_may_be_zero_but_not_above_the_amount() -> None:
    assert read_table("dues", one_due("100.00", minimum_amount="0"), CNY_A1).item(0, "minimum_minor") == 0
    assert problems("dues", one_due("100.00", minimum_amount="100.01"), CNY_A1) == [
        "dues.csv:2:minimum_amount: minimum_amount 100.01 is more than amount 100.00"
    ]


def test_minimum_amount_follows_the_amount_format() -> None:
    assert problems("dues", one_due("100.00", minimum_amount="-1"), CNY_A1) == [
        "dues.csv:2:minimum_amount: '-1' is negative; minimum_amount must be 0 or more"
    ]


def test_posted_on_may_not_be_after_the_due_date() -> None:
    assert read_table("dues", one_due(posted_on="2025-01-31"), CNY_A1).item(0, "posted_on") == dt.date(
        2025, 1, 31
    )
    assert problems("dues", one_due(posted_on="2025-02-01"), CNY_A1) == [
        "dues.csv:2:posted_on: posted_on 2025-02-01 is after due_date 2025-01-31"
    ]


def test_dues_account_must_be_imported() -> None:
    assert problems("dues", one_due(account_id="A9"), CNY_A1) == [
        "dues.csv:2:account_id: account 'A9' is not imported"
    ]


def test_dues_are_unique_per_account_and_due_id() -> None:
    refs = Refs(account_digits=pl.DataFrame({"account_id": ["A1", "A2"], "minor_digits": [2, 2]}))
    path = write(
        "dues.csv",
        DUES_HEADER
        + "A1,D1,2025-01-31,100.00,principal,,\n"
        + "A2,D1,2025-01-31,100.00,principal,,\n"
        + "A1,D2,2025-02-28,100.00,principal,,\n"
        + "A1,D1,2025-03-31,100.00,interest,,\n",
    )
    assert problems("dues", path, refs) == [
        "dues.csv:5:due_id: duplicate due 'D1' of account 'A1' (first on row 2)"
    ]


def test_every_problem_in_a_file_is_reported_at_once_in_row_then_column_order() -> None:
    path = write(
        "dues.csv",
        DUES_HEADER
        + "A1,D1,2025-01-31,1000.00,principal,,\n"
        + 'A1,D2,2025-02-30,"1,000.00",interest,,\n'
        + "A9,D3,2025-03-31,12.5,tax,,\n"
        + "A1,D1,2025-04-30,0,fee,,2025-05-01\n",
    )
    assert problems("dues", path, CNY_A1) == [
        "dues.csv:3:due_date: '2025-02-30' is not a real date",
        "dues.csv:3:amount: '1,000.00' has a comma; "
        "write the amount without thousands separators, like 1000.00",
        "dues.csv:4:account_id: account 'A9' is not imported",
        "dues.csv:4:component: unknown component 'tax' (expected: principal, interest, fee, penalty)",
        "dues.csv:5:due_id: duplicate due 'D1' of account 'A1' (first on row 2)",
        "dues.csv:5:amount: amount must be greater than 0 (got 0)",
        "dues.csv:5:posted_on: posted_on 2025-05-01 is after due_date 2025-04-30",
    ]


def test_problems_are_capped_with_a_count_of_the_rest() -> None:
    rows = "".join(f"A1,D{i},2025-01-31,abc,principal,,\n" for i in range(MAX_PROBLEMS + 500))
    path = write("dues.csv", DUES_HEADER + rows)
    with pytest.raises(ProblemsError) as caught:
        read_table("dues", path, CNY_A1)
    found = caught.value.problems
    assert len(found) == MAX_PROBLEMS + 1
    assert found[MAX_PROBLEMS - 1].source == f"dues.csv:{MAX_PROBLEMS + 1}:amount"
    assert str(found[-1]) == "dues.csv: 500 more problems found and not listed"
    assert found[-1].code == "import.too_many_problems"


def test_rows_are_the_csv_line_numbers_across_blank_lines_and_multiline_cells() -> None:
    path = write(
        "dues.csv",
        DUES_HEADER
        + "A1,D1,2025-01-31,100.00,principal,,\n"
        + "\n"
        + 'A1,"D\n2",2025-01-31,100.00,principal,,\n'
        + "A1,D3,2025-01-31,-1,principal,,\n",
    )
    assert problems("dues", path, CNY_A1) == [
        "dues.csv:4:due_id: 'D\\n2' holds a line break or another control character",
        "dues.csv:6:amount: '-1' is negative; amount must be greater than 0",
    ]


# --- payments --------------------------------------------------------------------------------------


def test_payments_are_read_into_the_payments_frame() -> None:
    path = write(
        "payments.csv",
        """
        payment_id,account_id,paid_on,amount
        P1,A1,2025-02-01,500.25
        """,
    )
    frame = read_table("payments", path, CNY_A1)
    assert dict(frame.schema) == PAYMENTS
    assert frame.to_dicts() == [
        {"payment_id": "P1", "account_id": "A1", "paid_on": dt.date(2025, 2, 1), "amount_minor": 50025}
    ]


def test_payment_rules() -> None:
    path = write(
        "payments.csv",
        """
        payment_id,account_id,paid_on,amount
        P1,A1,2025-02-01,500.25
        P1,A1,2025-02-02,1.00
        P2,A9,2025-02-30,0.00
        ,A1,2025-02-03,1.001
        """,
    )
    assert problems("payments", path, CNY_A1) == [
        "payments.csv:3:payment_id: duplicate payment_id 'P1' (first on row 2)",
        "payments.csv:4:account_id: account 'A9' is not imported",
        "payments.csv:4:paid_on: '2025-02-30' is not a real date",
        "payments.csv:4:amount: amount must be greater than 0 (got 0.00)",
        "payments.csv:5:payment_id: payment_id is empty",
        "payments.csv:5:amount: 1.001 has more than 2 decimal places",
    ]


# --- the file as a whole ---------------------------------------------------------------------------


def test_missing_and_unexpected_columns_are_reported_together() -> None:
    path = write(
        "payments.csv",
        """
        payment_id,account_id,amount,note
        P1,A1,5.00,hello
        """,
    )
    assert problems("payments", path) == [
        "payments.csv:1:note: unexpected column 'note' (expected: payment_id, account_id, paid_on, amount)",
        "payments.csv:1:paid_on: missing column 'paid_on' "
        "(expected: payment_id, account_id, paid_on, amount)",
    ]


def test_a_repeated_header_column_is_reported() -> None:
    path = write("payments.csv", "payment_id,account_id,paid_on,amount,amount\n")
    assert problems("payments", path) == ["payments.csv:1:amount: column 'amount' appears twice"]


def test_a_file_that_is_not_utf8_is_rejected_with_its_line() -> None:
    path = Path("customers.csv")
    path.write_bytes(
        CUSTOMERS_HEADER.encode() + "C1,José,en-US,America/New_York,US,,,,,,,,\n".encode("latin-1")
    )
    assert problems("customers", path) == [
        "customers.csv: not UTF-8 text (byte 0xe9 on line 2); save the file as UTF-8"
    ]


def test_a_utf8_byte_order_mark_is_accepted() -> None:
    path = Path("payments.csv")
    path.write_bytes(b"\xef\xbb\xbfpayment_id,account_id,paid_on,amount\nP1,A1,2025-02-01,5\n")
    assert read_table("payments", path, NO_REFS).item(0, "payment_id") == "P1"


@pytest.mark.parametrize("text", [pytest.param("", id="zero-bytes"), pytest.param("\n \n", id="blank")])
def test_an_empty_file_is_rejected(text: str) -> None:
    path = write("payments.csv", text)
    assert codes("payments", path) == ["import.empty_file"]
    assert problems("payments", path) == [
        "payments.csv: the file is empty; expected a header row: payment_id, account_id, paid_on, amount"
    ]


def test_a_header_without_rows_is_an_empty_frame() -> None:
    frame = read_table("dues", write("dues.csv", DUES_HEADER), NO_REFS)
    assert frame.height == 0
    assert dict(frame.schema) == DUES


def test_an_unknown_extension_is_rejected() -> None:
    path = write("dues.xlsx", DUES_HEADER)
    assert problems("dues", path) == ["dues.xlsx: unknown file type '.xlsx' (expected: .csv, .parquet, .pq)"]


def test_a_missing_file_is_a_problem() -> None:
    assert codes("dues", Path("nowhere.csv")) == ["import.unreadable_file"]


def test_a_row_with_more_cells_than_the_header_is_reported() -> None:
    path = write(
        "payments.csv",
        """
        payment_id,account_id,paid_on,amount
        P1,A1,2025-02-01,1,000.00
        """,
    )
    assert problems("payments", path) == ["payments.csv:2: row has 5 cells; the header has 4"]


def test_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown kind 'loans'"):
        read_table("loans", write("loans.csv", "a\n"), NO_REFS)


def test_account_digits_must_name_each_account_once() -> None:
    refs = Refs(account_digits=pl.DataFrame({"account_id": ["A1", "A1"], "minor_digits": [2, 0]}))
    with pytest.raises(ValueError, match="more than once"):
        read_table("dues", one_due(), refs)


# --- parquet ---------------------------------------------------------------------------------------


def test_parquet_with_typed_columns_reads_the_same_as_the_csv() -> None:
    csv_path = write(
        "dues.csv",
        DUES_HEADER
        + "007,D1,2025-01-31,1000.00,principal,,\n"
        + "007,D2,2025-02-28,2500.50,principal,125.00,2025-01-05\n",
    )
    typed = pl.DataFrame(
        {
            "account_id": ["007", "007"],
            "due_id": ["D1", "D2"],
            "due_date": [dt.date(2025, 1, 31), dt.date(2025, 2, 28)],
            "amount": [Decimal("1000.00"), Decimal("2500.50")],
            "component": ["principal", "principal"],
            "minimum_amount": [None, Decimal("125.00")],
            "posted_on": [None, dt.date(2025, 1, 5)],
        },
        schema_overrides={"amount": pl.Decimal(12, 2), "minimum_amount": pl.Decimal(12, 2)},
    )
    typed.write_parquet("dues.parquet")
    refs = Refs(account_digits=pl.DataFrame({"account_id": ["007"], "minor_digits": [2]}))
    from_csv = read_table("dues", csv_path, refs)
    assert read_table("dues", Path("dues.parquet"), refs).equals(from_csv)


def test_parquet_round_trip_of_text_columns() -> None:
    written = pl.DataFrame(
        {"payment_id": ["P1"], "account_id": ["A1"], "paid_on": ["2025-02-01"], "amount": ["5"]}
    )
    written.write_parquet("payments.parquet")
    frame = read_table("payments", Path("payments.parquet"), CNY_A1)
    assert frame.to_dicts() == [
        {"payment_id": "P1", "account_id": "A1", "paid_on": dt.date(2025, 2, 1), "amount_minor": 500}
    ]


def test_parquet_rows_are_numbered_as_in_the_csv_it_came_from() -> None:
    written = pl.DataFrame(
        {
            "payment_id": ["P1", "P2"],
            "account_id": ["A1", "A1"],
            "paid_on": ["2025-02-01"] * 2,
            "amount": ["5", "-5"],
        }
    )
    written.write_parquet("payments.parquet")
    assert problems("payments", Path("payments.parquet"), CNY_A1) == [
        "payments.parquet:3:amount: '-5' is negative; amount must be greater than 0"
    ]


def test_parquet_float_amounts_are_refused() -> None:
    written = pl.DataFrame(
        {"payment_id": ["P1"], "account_id": ["A1"], "paid_on": ["2025-02-01"], "amount": [5.0]}
    )
    written.write_parquet("payments.parquet")
    assert problems("payments", Path("payments.parquet"), CNY_A1) == [
        "payments.parquet:1:amount: column 'amount' holds Float64 numbers; floats are not exact, "
        "so write amounts as text or decimals"
    ]


def test_a_file_that_is_not_parquet_is_a_problem() -> None:
    assert codes("payments", write("payments.parquet", "payment_id\n")) == ["import.unreadable_parquet"]


def test_a_file_not_utf8_is_reported_as_such_before_its_header_problems() -> None:
    path = Path("payments.csv")
    path.write_bytes(b"payment_id,account,paid_on,amount\nP1,A1,2025-02-01,5\nP2,A\xe9,2025-02-01,5\n")
    assert codes("payments", path) == ["import.not_utf8"]


# --- slices ----------------------------------------------------------------------------------------


def _slices(kind: str, path: Path, refs: Refs, rows: int) -> tuple[list[pl.DataFrame], list[str]]:
    """The slices yielded, and the problems raised after them (none: [])."""
    got: list[pl.DataFrame] = []
    try:
        for part in open_table(kind, path, refs).chunks(rows):
            got.append(part)
    except ProblemsError as exc:
        return got, [str(p) for p in exc.problems]
    return got, []


def _dues_file(*rows: str) -> Path:
    return write("dues.csv", DUES_HEADER + "".join(f"{row}\n" for row in rows))


def test_a_file_checked_in_slices_reads_as_the_whole_file() -> None:
    path = _dues_file(*(f"A1,D{i},2025-01-{i + 1:02d},{i + 1}.00,principal,,\n" for i in range(7)))
    parts, found = _slices("dues", path, CNY_A1, 2)
    assert found == []
    assert [part.height for part in parts] == [2, 2, 2, 1]
    assert pl.concat(parts).equals(read_table("dues", path, CNY_A1))


def test_no_slice_follows_a_problem_and_every_problem_is_raised_after_the_last_slice() -> None:
    good = "A1,D{},2025-01-31,1.00,principal,,"
    path = _dues_file(
        *(good.format(i) for i in range(4)),
        "A1,D4,2025-01-31,-1,principal,,",
        good.format(5),
        good.format(6),
        "A1,D7,2025-02-30,1.00,principal,,",
    )
    parts, found = _slices("dues", path, CNY_A1, 3)
    assert [part.height for part in parts] == [3]
    assert found == problems("dues", path, CNY_A1)
    assert found == [
        "dues.csv:6:amount: '-1' is negative; amount must be greater than 0",
        "dues.csv:9:due_date: '2025-02-30' is not a real date",
    ]


def test_a_repeat_in_a_later_slice_names_the_row_it_repeats() -> None:
    path = _dues_file(
        "A1,D1,2025-01-31,1.00,principal,,",
        "A1,D2,2025-01-31,1.00,principal,,",
        "A1,D3,2025-01-31,1.00,principal,,",
        "A1,D1,2025-02-28,1.00,interest,,",
    )
    _parts, found = _slices("dues", path, CNY_A1, 2)
    assert found == ["dues.csv:5:due_id: duplicate due 'D1' of account 'A1' (first on row 2)"]


def test_the_cap_on_problems_counts_the_problems_of_every_slice() -> None:
    path = _dues_file(*(f"A1,D{i},2025-01-31,abc,principal,," for i in range(MAX_PROBLEMS + 500)))
    _parts, found = _slices("dues", path, CNY_A1, 300)
    assert found == problems("dues", path, CNY_A1)
    assert len(found) == MAX_PROBLEMS + 1
    assert found[-1] == "dues.csv: 500 more problems found and not listed"


def test_the_keys_to_look_up_are_those_that_could_pass_the_checks() -> None:
    path = _dues_file(
        "A1,D1,2025-01-31,1.00,principal,,",
        ",D2,2025-01-31,1.00,principal,,",
        'A1,"D\n3",2025-01-31,1.00,principal,,',
        "A1, D4 ,2025-01-31,1.00,principal,,",
    )
    assert open_table("dues", path, CNY_A1).keys().rows() == [("A1", "D1"), ("A1", " D4 ")]


def test_keep_row_gives_the_line_each_record_starts_on() -> None:
    header = (
        "customer_id,name,locale,timezone,jurisdiction,phone,email,address_line1,address_line2,city,region,"
        "postal_code,country\n"
    )
    row = "{id},Ann Lee,en-GB,Europe/London,UK,,,{address},,Leeds,,LS1 1AA,GB\n"
    path = write(
        "customers.csv",
        header
        + "\n"
        + row.format(id="C1", address="1 High St")
        + row.format(id="C2", address='"Flat 2\n10 High St"')
        + row.format(id="C3", address="3 High St"),
    )
    frame = read_table("customers", path, NO_REFS, keep_row=True)
    assert frame.select("customer_id", ROW).rows() == [("C1", 3), ("C2", 4), ("C3", 6)]
    assert ROW not in read_table("customers", path, NO_REFS).columns
