"""The synthetic portfolio: deterministic, in the engine's schemas, with every behaviour the demo shows."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from duecourse.engine.schema import ACCOUNTS, CUSTOMERS, DUES, PAYMENTS
from duecourse.services.synth import (
    BEHAVIOURS,
    CSV_COLUMNS,
    SynthPortfolio,
    generate_bench_portfolio,
    generate_portfolio,
    write_csvs,
)

START = dt.date(2025, 3, 1)
DAYS = 120
END = START + dt.timedelta(days=DAYS)


@pytest.fixture(scope="module")
def portfolio() -> SynthPortfolio:
    return generate_portfolio(customers=2_000, start=START, days=DAYS, seed=11)


def frames(p: SynthPortfolio) -> dict[str, pl.DataFrame]:
    return {
        "customers": p.customers,
        "accounts": p.accounts,
        "dues": p.dues,
        "payments": p.payments,
        "behaviours": p.behaviours,
    }


def with_product(p: SynthPortfolio, frame: pl.DataFrame) -> pl.DataFrame:
    return frame.join(p.accounts.select("account_id", "product_code"), on="account_id", how="left")


def test_the_same_seed_gives_identical_frames(portfolio: SynthPortfolio) -> None:
    again = generate_portfolio(customers=2_000, start=START, days=DAYS, seed=11)
    for name, frame in frames(portfolio).items():
        assert_frame_equal(frame, frames(again)[name], check_exact=True)


def test_another_seed_gives_another_portfolio(portfolio: SynthPortfolio) -> None:
    other = generate_portfolio(customers=2_000, start=START, days=DAYS, seed=12)
    assert not other.dues.equals(portfolio.dues)
    assert not other.payments.equals(portfolio.payments)
    assert not other.customers.equals(portfolio.customers)


@pytest.mark.parametrize(
    ("name", "schema"),
    [
        pytest.param("customers", CUSTOMERS, id="customers"),
        pytest.param("accounts", ACCOUNTS, id="accounts"),
        pytest.param("dues", DUES, id="dues"),
        pytest.param("payments", PAYMENTS, id="payments"),
    ],
)
def test_frames_have_exactly_the_engine_schemas(
    portfolio: SynthPortfolio, name: str, schema: dict[str, pl.DataType]
) -> None:
    frame = frames(portfolio)[name]
    assert frame.schema == pl.Schema(schema)
    assert frame.height > 0
    text = [c for c, t in schema.items() if t == pl.String()]
    assert frame.select(pl.col(text).null_count()).row(0) == (0,) * len(text)  # text is "" when empty


def test_bench_frames_have_exactly_the_engine_schemas() -> None:
    p = generate_bench_portfolio(accounts=500, seed=1, as_of=END)
    for name, schema in (
        ("customers", CUSTOMERS),
        ("accounts", ACCOUNTS),
        ("dues", DUES),
        ("payments", PAYMENTS),
    ):
        assert frames(p)[name].schema == pl.Schema(schema), name


def test_every_behaviour_is_present(portfolio: SynthPortfolio) -> None:
    seen = set(portfolio.behaviours.get_column("behaviour").to_list())
    assert seen == set(BEHAVIOURS)
    assert portfolio.behaviours.get_column("account_id").to_list() == (
        portfolio.accounts.get_column("account_id").to_list()
    )


@pytest.mark.parametrize(
    ("frame", "column", "prefix"),
    [
        pytest.param("customers", "customer_id", "C", id="customers"),
        pytest.param("accounts", "account_id", "A", id="accounts"),
        pytest.param("dues", "due_id", "A", id="dues"),
        pytest.param("payments", "payment_id", "P", id="payments"),
    ],
)
def test_ids_are_unique_and_stable_strings(
    portfolio: SynthPortfolio, frame: str, column: str, prefix: str
) -> None:
    ids = frames(portfolio)[frame].get_column(column)
    assert ids.n_unique() == ids.len()
    assert ids.str.starts_with(prefix).all()
    assert ids.head(1).item() == {
        "customer_id": "C000001",
        "account_id": "A000001",
        "payment_id": "P00000001",
    }.get(column, ids.head(1).item())


def test_every_account_belongs_to_a_customer_and_every_due_and_payment_to_an_account(
    portfolio: SynthPortfolio,
) -> None:
    customers = set(portfolio.customers.get_column("customer_id"))
    accounts = set(portfolio.accounts.get_column("account_id"))
    assert set(portfolio.accounts.get_column("customer_id")) <= customers
    assert set(portfolio.dues.get_column("account_id")) <= accounts
    assert set(portfolio.payments.get_column("account_id")) <= accounts


def test_products_follow_the_jurisdiction_and_some_cn_customers_hold_a_card_and_a_loan(
    portfolio: SynthPortfolio,
) -> None:
    held = portfolio.accounts.join(portfolio.customers, on="customer_id").select(
        "jurisdiction", "product_code"
    )
    allowed = {"CN": {"card_cn", "loan_cn"}, "US": {"card_us"}, "UK": {"loan_uk"}}
    for jurisdiction, product in held.unique().iter_rows():
        assert product in allowed[jurisdiction]
    per_customer = portfolio.accounts.group_by("customer_id").agg(pl.col("product_code").sort())
    both = per_customer.filter(pl.col("product_code").list.len() == 2)
    assert both.height > 0
    assert set(both.get_column("product_code").list.join(",")) == {"card_cn,loan_cn"}
    assert (
        portfolio.customers.get_column("customer_id")
        .is_in(portfolio.accounts.get_column("customer_id"))
        .all()
    )


def test_customers_look_like_their_jurisdiction(portfolio: SynthPortfolio) -> None:
    c = portfolio.customers
    cn = c.filter(pl.col("jurisdiction") == "CN")
    assert set(cn.get_column("locale")) == {"zh-CN"} and set(cn.get_column("timezone")) == {"Asia/Shanghai"}
    assert cn.get_column("phone").str.contains(r"^\+861[3-9]\d{9}$").all()
    assert cn.get_column("postal_code").str.contains(r"^\d{6}$").all()
    assert cn.get_column("email").str.ends_with("@example.cn").all()
    assert cn.get_column("name").str.contains(r"^[\u4e00-\u9fff]{2,3}$").all()
    us = c.filter(pl.col("jurisdiction") == "US")
    assert set(us.get_column("locale")) == {"en-US"} and us.get_column("timezone").n_unique() >= 4
    assert us.get_column("phone").str.contains(r"^\+1\d{3}55501\d{2}$").all()
    assert us.get_column("postal_code").str.contains(r"^\d{5}$").all()
    uk = c.filter(pl.col("jurisdiction") == "UK")
    assert set(uk.get_column("timezone")) == {"Europe/London"} and set(uk.get_column("country")) == {"GB"}
    assert uk.get_column("phone").str.starts_with("+447700900").all()
    assert uk.get_column("postal_code").str.contains(r"^[A-Z]{1,2}\d[A-Z\d]? \d[A-Z]{2}$").all()
    assert c.filter(pl.col("jurisdiction") != "CN").get_column("email").str.ends_with("@example.com").all()
    assert c.get_column("email").n_unique() == c.height


def test_dues_cover_the_window_before_and_through_the_simulated_days(portfolio: SynthPortfolio) -> None:
    first, last = portfolio.dues.select(
        pl.col("due_date").min().alias("a"), pl.col("due_date").max().alias("b")
    ).row(0)
    assert START - dt.timedelta(days=300) <= first <= START - dt.timedelta(days=270)
    assert END - dt.timedelta(days=5) <= last <= END
    assert (portfolio.dues.get_column("amount_minor") > 0).all()


def test_loan_instalments_have_a_principal_and_an_interest_due_on_each_date(
    portfolio: SynthPortfolio,
) -> None:
    loans = with_product(portfolio, portfolio.dues).filter(pl.col("product_code").str.starts_with("loan"))
    per_date = loans.group_by("account_id", "due_date").agg(
        pl.col("component").sort(), pl.col("due_id").sort()
    )
    assert per_date.get_column("component").list.join(",").unique().to_list() == ["interest,principal"]
    first = per_date.get_column("due_id").list.first()
    assert first.str.contains(r"^A\d{6}-I\d{2}-I$").all()  # "-I" sorts before "-P"
    assert loans.filter(pl.col("minimum_minor").is_not_null() | pl.col("posted_on").is_not_null()).is_empty()


def test_card_statements_have_a_minimum_within_the_amount_and_a_posting_date_before_the_due(
    portfolio: SynthPortfolio,
) -> None:
    cards = with_product(portfolio, portfolio.dues).filter(pl.col("product_code").str.starts_with("card"))
    statements = cards.filter(pl.col("component") == "principal")
    assert statements.height > 0
    assert (statements.get_column("minimum_minor") <= statements.get_column("amount_minor")).all()
    assert (statements.get_column("posted_on") < statements.get_column("due_date")).all()
    gap = (statements.get_column("due_date") - statements.get_column("posted_on")).dt.total_days()
    assert gap.min() >= 20 and gap.max() <= 25  # type: ignore[operator]
    # 10 %, at least 100.00 or the whole balance.
    expected = pl.min_horizontal(
        pl.col("amount_minor"), pl.max_horizontal((pl.col("amount_minor") + 5) // 10, pl.lit(10_000))
    )
    assert statements.select((pl.col("minimum_minor") == expected).all()).item()
    fees = cards.filter(pl.col("component") == "fee")
    assert fees.height > 0 and fees.get_column("minimum_minor").is_null().all()
    assert fees.get_column("due_id").str.ends_with("-F").all()


def test_accounts_open_before_their_first_due(portfolio: SynthPortfolio) -> None:
    first = portfolio.dues.group_by("account_id").agg(pl.col("due_date").min().alias("first_due"))
    joined = portfolio.accounts.join(first, on="account_id")
    assert joined.height == portfolio.accounts.height  # every account has dues in the window
    assert (joined.get_column("opened_on") < joined.get_column("first_due")).all()


def test_no_payment_after_the_last_simulated_day(portfolio: SynthPortfolio) -> None:
    paid_on = portfolio.payments.get_column("paid_on")
    assert paid_on.max() <= END  # type: ignore[operator]
    assert (portfolio.payments.get_column("amount_minor") > 0).all()
    opened = portfolio.payments.join(portfolio.accounts, on="account_id")
    assert (opened.get_column("paid_on") > opened.get_column("opened_on")).all()


def test_behaviours_shape_the_payments(portfolio: SynthPortfolio) -> None:
    paid = portfolio.payments.group_by("account_id").agg(pl.col("amount_minor").sum().alias("paid"))
    billed = (
        portfolio.dues.filter(pl.col("due_date") <= END)
        .group_by("account_id")
        .agg(
            pl.col("amount_minor").sum().alias("billed"),
            pl.coalesce("minimum_minor", "amount_minor").sum().alias("required"),
        )
    )
    by = portfolio.behaviours.join(billed, on="account_id").join(paid, on="account_id", how="left")
    by = by.with_columns(pl.col("paid").fill_null(0))

    def of(behaviour: str) -> pl.DataFrame:
        return by.filter(pl.col("behaviour") == behaviour)

    assert of("not_mine").get_column("paid").max() == 0
    assert of("on_time").select((pl.col("paid") == pl.col("billed")).all()).item()
    assert of("minimum_payer").select((pl.col("paid") == pl.col("required")).all()).item()
    assert of("partial_payer").select((pl.col("paid") < pl.col("required")).all()).item()
    assert of("overpayer").select((pl.col("paid") > pl.col("billed")).all()).item()
    assert of("never_pays").select((pl.col("paid") < pl.col("billed")).all()).item()
    # ... and they stop: nothing is paid for their last bill.
    never = portfolio.behaviours.filter(pl.col("behaviour") == "never_pays").select("account_id")
    last_due = (
        portfolio.dues.filter(pl.col("due_date") <= END).group_by("account_id").agg(pl.col("due_date").max())
    )
    last_paid = portfolio.payments.group_by("account_id").agg(pl.col("paid_on").max())
    stopped = never.join(last_due, on="account_id").join(last_paid, on="account_id", how="left")
    assert stopped.select(
        (pl.col("paid_on").is_null() | (pl.col("paid_on") < pl.col("due_date"))).all()
    ).item()
    cure = of("self_cure")
    assert cure.select((pl.col("paid") == pl.col("billed")).mean()).item() > 0.9  # caught up by the end


def test_minimum_payers_hold_cards_only(portfolio: SynthPortfolio) -> None:
    products = with_product(portfolio, portfolio.behaviours).filter(pl.col("behaviour") == "minimum_payer")
    assert products.get_column("product_code").str.starts_with("card").all()


def test_products_argument_limits_the_portfolio() -> None:
    p = generate_portfolio(customers=200, start=START, days=30, seed=3, products=("card_cn",))
    assert set(p.accounts.get_column("product_code")) == {"card_cn"}
    assert set(p.customers.get_column("jurisdiction")) == {"CN"}
    assert p.accounts.height == p.customers.height


def test_unknown_products_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown products"):
        generate_portfolio(customers=10, start=START, days=30, seed=3, products=("card_xx",))


def test_write_csvs_reads_back_with_the_import_header(portfolio: SynthPortfolio, tmp_path: Path) -> None:
    paths = write_csvs(portfolio, tmp_path / "out")
    assert set(paths) == {"customers", "accounts", "dues", "payments"}
    for name, path in paths.items():
        assert path == tmp_path / "out" / f"{name}.csv"
        header = path.read_text(encoding="utf-8").splitlines()[0]
        assert header == ",".join(CSV_COLUMNS[name])
    dues = pl.read_csv(paths["dues"], infer_schema=False)
    assert dues.height == portfolio.dues.height
    assert dues.get_column("amount").str.contains(r"^\d+\.\d{2}$").all()
    minor = dues.get_column("amount").str.replace(".", "", literal=True).cast(pl.Int64)
    assert minor.to_list() == portfolio.dues.get_column("amount_minor").to_list()
    minimum = dues.get_column("minimum_amount")
    assert (minimum.is_null() == portfolio.dues.get_column("minimum_minor").is_null()).all()
    assert dues.get_column("due_date").str.contains(r"^\d{4}-\d{2}-\d{2}$").all()
    payments = pl.read_csv(paths["payments"], infer_schema=False)
    assert payments.get_column("amount").str.replace(".", "", literal=True).cast(pl.Int64).to_list() == (
        portfolio.payments.get_column("amount_minor").to_list()
    )
    customers = pl.read_csv(paths["customers"], infer_schema=False)
    assert customers.fill_null("").equals(portfolio.customers)


def test_write_csvs_formats_small_amounts_with_two_digits(tmp_path: Path) -> None:
    p = generate_portfolio(customers=5, start=START, days=10, seed=1)
    tiny = SynthPortfolio(
        p.customers,
        p.accounts,
        p.dues.head(2).with_columns(amount_minor=pl.Series([5, 1234], dtype=pl.Int64)),
        p.payments.head(1).with_columns(amount_minor=pl.Series([70], dtype=pl.Int64)),
        p.behaviours,
    )
    paths = write_csvs(tiny, tmp_path)
    dues = pl.read_csv(paths["dues"], infer_schema=False)
    assert dues.get_column("amount").to_list() == ["0.05", "12.34"]
    assert pl.read_csv(paths["payments"], infer_schema=False).get_column("amount").to_list() == ["0.70"]


def test_bench_portfolio_averages_twelve_dues_and_eight_payments_per_account() -> None:
    p = generate_bench_portfolio(accounts=10_000, seed=5, as_of=END)
    assert p.accounts.height == 10_000
    assert 12 * 0.85 <= p.dues.height / 10_000 <= 12 * 1.15
    assert 8 * 0.85 <= p.payments.height / 10_000 <= 8 * 1.15
    assert p.payments.get_column("paid_on").max() <= END  # type: ignore[operator]
    assert set(p.behaviours.get_column("behaviour")) == set(BEHAVIOURS)
    assert p.accounts.get_column("product_code").n_unique() == 4


def test_bench_portfolio_is_deterministic() -> None:
    a = generate_bench_portfolio(accounts=2_000, seed=9, as_of=END)
    b = generate_bench_portfolio(accounts=2_000, seed=9, as_of=END)
    for name, frame in frames(a).items():
        assert_frame_equal(frame, frames(b)[name], check_exact=True)
