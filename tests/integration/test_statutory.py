"""The notices the law requires are planned by the daily run whatever the strategy says
(``services/statutory.py``): the UK notice of sums in arrears (s86B for loans, E-UK-1; s86C for cards) and
the US validation notice of a third-party account (12 CFR 1006.34(a)(1)). On SQLite and PostgreSQL,
through the command line, over one portfolio run on the days that matter."""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, and_, func, select, update
from test_cli import write

from duecourse.cli import main
from duecourse.config import default_config_text
from duecourse.services.contacts import DECISION_COLUMNS
from duecourse.store import outbox as store
from duecourse.store.db import make_engine
from duecourse.store.tables import decisions, outbox

D = dt.date

# One customer per account. UK: L1 is E-UK-1 (£200 due on the 1st, January paid, February and March
# missed); L2 the same until it pays February and March on 03-10, then misses April and May; S1 the same
# as L1 on a product whose strategy segment writes its own uk_nosia on 03-01; W1 and W2 pay £50 weekly
# from 02-01 (W1 paid the first, W2 the first two); K1 is a card whose £25 minimums (due the 28th, the
# statement posted on the 3rd) are never paid. X1 is a loan in China, U1 and U3 US loans placed with us
# as a third party (U3 already has a validation notice), U2 a US card of our own.
CUSTOMERS = """\
customer_id,name,locale,timezone,jurisdiction,phone,email,address_line1,address_line2,city,region,postal_code,country
G1,Ann Smith 1,en-GB,Europe/London,UK,+447700900001,g1@example.co.uk,1 High St,,Leeds,,LS1 1AA,GB
G2,Ann Smith 2,en-GB,Europe/London,UK,+447700900002,g2@example.co.uk,1 High St,,Leeds,,LS1 1AA,GB
G3,Ann Smith 3,en-GB,Europe/London,UK,+447700900003,g3@example.co.uk,1 High St,,Leeds,,LS1 1AA,GB
G4,Ann Smith 4,en-GB,Europe/London,UK,+447700900004,g4@example.co.uk,1 High St,,Leeds,,LS1 1AA,GB
G5,Ann Smith 5,en-GB,Europe/London,UK,+447700900005,g5@example.co.uk,1 High St,,Leeds,,LS1 1AA,GB
G6,Ann Smith 6,en-GB,Europe/London,UK,+447700900006,g6@example.co.uk,1 High St,,Leeds,,LS1 1AA,GB
X1,王芳,zh-CN,Asia/Shanghai,CN,+8613800138000,x1@example.cn,朝阳区建国路88号,,北京,北京,100022,CN
U1,Jane Roe 1,en-US,America/New_York,US,+12125550101,u1@example.com,1 Main St,,Albany,NY,12207,US
U2,Jane Roe 2,en-US,America/New_York,US,+12125550102,u2@example.com,1 Main St,,Albany,NY,12207,US
U3,Jane Roe 3,en-US,America/New_York,US,+12125550103,u3@example.com,1 Main St,,Albany,NY,12207,US
"""
ACCOUNTS = """\
account_id,customer_id,product_code,opened_on
L1,G1,loan_gb,2024-12-01
L2,G2,loan_gb,2024-12-01
W1,G3,loan_gb,2025-01-25
W2,G4,loan_gb,2025-01-25
K1,G5,card_gb,2024-12-01
S1,G6,loan_gb_legacy,2024-12-01
X1,X1,loan_cn,2024-12-01
U1,U1,loan_us_placed,2025-06-01
U2,U2,card_us,2025-06-01
U3,U3,loan_us_placed,2025-06-01
"""


def _monthly(account: str, first: dt.date, count: int, amount: str) -> list[str]:
    days = [
        D(first.year + (first.month - 1 + n) // 12, (first.month - 1 + n) % 12 + 1, first.day)
        for n in range(count)
    ]
    return [f"{account},I{n},{day},{amount},principal,," for n, day in enumerate(days)]


def _statements(account: str, first_due: dt.date, count: int, posted_day: int) -> list[str]:
    rows = []
    for n in range(count):
        month = first_due.month - 1 + n
        due = D(first_due.year + month // 12, month % 12 + 1, first_due.day)
        posted = D(due.year, due.month, posted_day) if posted_day < due.day else None
        if posted is None:
            back = D(due.year, due.month, 1) - dt.timedelta(days=1)
            posted = D(back.year, back.month, posted_day)
        rows.append(f"{account},S{n},{due},100.00,principal,25.00,{posted}")
    return rows


DUES = (
    "account_id,due_id,due_date,amount,component,minimum_amount,posted_on\n"
    + "\n".join(
        [
            *(row for a in ("L1", "L2", "S1", "X1") for row in _monthly(a, D(2025, 1, 1), 12, "200.00")),
            *(
                f"{a},K{n},{D(2025, 2, 1) + dt.timedelta(days=7 * n)},50.00,principal,,"
                for a in ("W1", "W2")
                for n in range(40)
            ),
            *_statements("K1", D(2025, 1, 28), 9, 3),
            *(row for a in ("U1", "U3") for row in _monthly(a, D(2025, 7, 1), 6, "100.00")),
            *_statements("U2", D(2025, 7, 1), 3, 5),
        ]
    )
    + "\n"
)
PAYMENTS = """\
payment_id,account_id,paid_on,amount
P1,L1,2025-01-01,200.00
P2,L2,2025-01-01,200.00
P3,L2,2025-03-10,400.00
P4,S1,2025-01-01,200.00
P5,X1,2025-01-01,200.00
P6,W1,2025-02-01,50.00
P7,W2,2025-02-01,50.00
P8,W2,2025-02-08,50.00
"""

PRODUCTS = """
[products.loan_gb]
kind = "instalment_loan"
currency = "GBP"
grace_days = 0
bucket_set = "fineract"
calendar = "UK"

[products.loan_gb_legacy]
kind = "instalment_loan"
currency = "GBP"
grace_days = 0
bucket_set = "fineract"
calendar = "UK"

[products.card_gb]
kind = "card"
currency = "GBP"
grace_days = 0
bucket_set = "fineract"
calendar = "UK"

[products.loan_us_placed]
kind = "instalment_loan"
currency = "USD"
grace_days = 0
bucket_set = "us_30"
calendar = "US"

[governor]
third_party_products = ["loan_us_placed"]
daily_contacts_per_customer = 2

[[strategy.segments]]
name = "gb-legacy"
when = { products = ["loan_gb_legacy"] }

  [[strategy.segments.stages]]
  name = "LEGACY"
  min_days_past_due = 1

    [[strategy.segments.stages.actions]]
    name = "legacy-nosia"
    channel = "letter"
    kind = "uk_nosia"
    offset_days = 27
"""
# The strategy's one message: an e-mail the day an account enters M1 (a US account's first communication).
EMAIL = """
  [[strategy.stages.actions]]
  name = "mail"
  channel = "email"
  kind = "overdue_reminder"
  at = "10:00"

"""


def _setup(db_url: str, tmp_path: Path) -> Callable[..., int]:
    text = default_config_text()
    marker = '[[strategy.stages]]\nname = "M2"'
    assert marker in text
    text = text.replace(marker, EMAIL + marker)
    text += (
        f'\n[channels.email]\ntransport = "files"\ndir = "{tmp_path / "email"}"\n'
        'from = "Example <collect@example.com>"\n'
        f'\n[channels.post]\ndir = "{tmp_path / "print"}"\n' + PRODUCTS
    )
    config = tmp_path / "duecourse.toml"
    config.write_text(text, encoding="utf-8")

    def cli(*args: str) -> int:
        return main(["--db", db_url, "--config", str(config), *args])

    assert cli("init") == 0
    for kind, body in (
        ("customers", CUSTOMERS),
        ("accounts", ACCOUNTS),
        ("dues", DUES),
        ("payments", PAYMENTS),
    ):
        assert cli("import", kind, str(write(tmp_path, f"{kind}.csv", body))) == 0
    return cli


Notice = tuple[str, str, str, str]  # account, planned_on, action, reason


def _notices(engine: Engine) -> list[Notice]:
    """The outbox's statutory kinds: account, day planned, action, the planning reason."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(outbox.c.account_id, outbox.c.planned_on, outbox.c.action, outbox.c.reason)
            .where(outbox.c.kind.in_(("uk_nosia", "us_validation_notice")))
            .order_by(outbox.c.planned_on, outbox.c.account_id)
        )
        return [(a, str(p), action, reason) for a, p, action, reason in rows]


def _new(engine: Engine, day: str) -> dict[str, Notice]:
    """The notices planned on ``day``, by account: never two of an account."""
    planned = [n for n in _notices(engine) if n[1] == day]
    by_account = {n[0]: n for n in planned}
    assert len(by_account) == len(planned), planned
    return by_account


def _day_decisions(engine: Engine, day: str) -> list[tuple[str, str, str, str]]:
    with engine.connect() as connection:
        return [
            (account, action, kind, verdict)
            for account, action, kind, verdict in connection.execute(
                select(decisions.c.account_id, decisions.c.action, decisions.c.kind, decisions.c.verdict)
                .where(decisions.c.day == D.fromisoformat(day))
                .order_by(decisions.c.key)
            )
        ]


def test_the_law_s_notices_are_planned_whatever_the_strategy_says(db_url: str, tmp_path: Path) -> None:
    cli = _setup(db_url, tmp_path)
    engine = make_engine(db_url)
    try:
        # U3 already has a validation notice (planned by hand in June)
        store.plan(
            engine,
            [
                store.Planned(
                    "U3",
                    "U3",
                    "current",
                    "manual",
                    "us_validation_notice",
                    "letter",
                    D(2025, 6, 20),
                    dt.datetime(2025, 6, 20, 12, tzinfo=dt.UTC),
                )
            ],
            dt.datetime(2025, 6, 20, 12, tzinfo=dt.UTC),
            "by hand",
        )

        def run(day: str) -> dict[str, Notice]:
            assert cli("run", "--as-of", day) == 0
            return _new(engine, day)

        # E-UK-1: one payment missed on 02-20, no notice
        assert run("2025-02-20") == {}
        assert not [d for d in _day_decisions(engine, "2025-02-20") if d[1].startswith("statutory-")]

        # 03-01: the second payment is missed; the first notice is due within 14 days (by 03-14)
        first = run("2025-03-01")
        assert sorted(first) == ["K1", "L1", "L2", "S1", "W1"]
        assert first["L1"][2:] == (
            "statutory-uk_nosia",
            "UK-NOSIA-01 (CCA 1974) s86B: 2 payments missed, shortfall 400.00 ≥ 400.00 since 2025-03-01; "
            "the first notice is due by 2025-03-14",
        )
        # weekly payments: four missed (W1) is the trigger, three (W2) is not
        assert first["W1"][3] == (
            "UK-NOSIA-01 (CCA 1974) s86B: 4 payments missed, shortfall 200.00 ≥ 200.00 (the last 4 weekly "
            "payments) since 2025-03-01; the first notice is due by 2025-03-14"
        )
        # a card: the last two minimum payments missed; due by the next statement (posted 03-03)
        assert first["K1"][3] == (
            "UK-NOSIA-02 (CCA 1974) s86C: the last 2 payments (due 2025-01-28 and 2025-02-28) missed since "
            "2025-03-01; the notice is due by 2025-03-03 (the next statement)"
        )
        # S1's strategy writes its own notice that day: it counts, never two
        assert first["S1"][2] == "legacy-nosia"
        decided = _day_decisions(engine, "2025-03-01")
        statutory = sorted(d for d in decided if d[1] == "statutory-uk_nosia")
        assert statutory == [
            (a, "statutory-uk_nosia", "uk_nosia", "planned") for a in ("K1", "L1", "L2", "W1")
        ]

        # A re-run of the day plans the same notices again under the same keys: nothing is added, and the
        # day's decisions are the same. Only W1's row is made to look planned in another stage (as if the
        # data had changed its stage since: the key has the stage): it counts as given, no second one.
        with engine.begin() as connection:
            connection.execute(
                update(outbox)
                .where(and_(outbox.c.account_id == "W1", outbox.c.kind == "uk_nosia"))
                .values(stage="early", key="W1|early|statutory-uk_nosia|2025-03-01|letter")
            )
        before = _notices(engine)
        assert run("2025-03-01").keys() == first.keys()
        assert _notices(engine) == before
        assert _day_decisions(engine, "2025-03-01") == [
            d for d in decided if d[:2] != ("W1", "statutory-uk_nosia")
        ]

        # later in the episode, none for those who have one (L1, W1, S1). W2's trigger (03-08) is seen late.
        # L2 paid up on 03-10 and missed April and May: a new episode, a new first notice. K1 missed the
        # minimums due 03-28 and 04-28, both after its notice: a new s86C notice.
        again = run("2025-05-01")
        assert sorted(again) == ["K1", "L2", "W2"]
        assert again["W2"][3].endswith(
            "since 2025-03-08; the first notice is due by 2025-03-21: late, planned today"
        )
        assert again["L2"][3] == (
            "UK-NOSIA-01 (CCA 1974) s86B: 2 payments missed, shortfall 400.00 ≥ 400.00 since 2025-05-01; "
            "the first notice is due by 2025-05-14"
        )
        assert "(due 2025-03-28 and 2025-04-28) missed since 2025-04-29" in again["K1"][3]

        # 07-02: the US accounts' first e-mail (no notice yet); K1's next pair (05-28, 06-28)
        assert sorted(run("2025-07-02")) == ["K1"]
        # 07-03: the third-party account U1 gets its validation notice, due 5 business days after the
        # e-mail of 07-02 (Friday 07-04 is Independence Day): 07-10. U2 is our own card; U3 has one.
        validation = run("2025-07-03")
        assert list(validation) == ["U1"]
        assert validation["U1"][2:] == (
            "statutory-us_validation_notice",
            "US-VAL-01 (12 CFR 1006.34(a)(1)): first communication on 2025-07-02; the validation notice is "
            "due by 2025-07-10 (5 days after it, weekends and federal legal holidays excluded)",
        )

        # about five and a half months after the first notices, the next ones (due by 09-01), 14 days ahead
        further = run("2025-08-18")
        assert sorted(further) == ["L1", "S1", "W1"]
        assert further["L1"][3] == (
            "UK-NOSIA-01 (CCA 1974) s86B(2)(b): in arrears since 2025-02-02 (trigger 2025-03-01); the last "
            "notice went on 2025-03-01, the next is due by 2025-09-01 (planned 14 days ahead)"
        )

        # never a NOSIA outside the UK, never a validation notice outside third-party US accounts
        every = _notices(engine)
        assert {n[0] for n in every if n[2] == "statutory-uk_nosia"} == {"K1", "L1", "L2", "S1", "W1", "W2"}
        assert {n[0] for n in every if n[2] == "statutory-us_validation_notice"} == {"U1"}
        assert len([n for n in every if n[0] == "L1"]) == 2
    finally:
        engine.dispose()

    out = tmp_path / "decisions.csv"
    assert cli("export", "decisions", "--from", "2025-02-20", "--to", "2025-08-18", "--out", str(out)) == 0
    with out.open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    assert tuple(rows[0]) == DECISION_COLUMNS
    shown = [r for r in rows if r["action"].startswith("statutory-")]
    assert len(shown) == 11
    for row in shown:
        assert row["channel"] == "letter"
        assert row["verdict"] == "planned"
        assert (
            row["reason"] == "allowed: no hold stops it, and letters are not limited by contact hours or caps"
        )
    u1 = next(r for r in shown if r["account_id"] == "U1")
    assert (u1["date"], u1["kind"], u1["scheduled_at"]) == (
        "2025-07-03",
        "us_validation_notice",
        "2025-07-03T08:00:00-04:00",
    )
    # Why the law wanted each one is kept with the decision, as in the outbox row's reason.
    assert all(row["planned_because"] for row in shown)
    assert "2025-07-10" in u1["planned_because"]


@pytest.mark.parametrize(
    ("first", "last", "day", "letters"),
    [
        ("2025-02-27", "2025-03-02", "2025-03-01", 5),  # K1, L1, L2, W1 by law; S1 by its own strategy
        ("2025-07-01", "2025-07-04", "2025-07-03", 2),  # U1, U3: validation notices after the first e-mail
    ],
)
def test_policy_simulate_plans_the_law_s_notices_as_the_runs_do(  # noqa: PLR0917 - the cases' columns
    db_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    first: str,
    last: str,
    day: str,
    letters: int,
) -> None:
    """Simulated first (it writes nothing), then run day by day: the letters (the law's notices, S1's own
    notice taking the place of the law's) are the same by day and verdict."""
    cli = _setup(db_url, tmp_path)
    capsys.readouterr()
    assert cli("policy", "simulate", "--from", first, "--to", last, "--json") == 0
    data = json.loads(capsys.readouterr().out)
    simulated = {(r["day"], r["verdict"]): r["count"] for r in data["messages"] if r["channel"] == "letter"}
    run = D.fromisoformat(first)
    while run <= D.fromisoformat(last):
        assert cli("run", "--as-of", run.isoformat()) == 0
        run += dt.timedelta(days=1)
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(decisions.c.day, decisions.c.verdict, func.count())
                .where(decisions.c.channel == "letter")
                .group_by(decisions.c.day, decisions.c.verdict)
            ).all()
    finally:
        engine.dispose()
    ran = {(str(d), v): n for d, v, n in rows}
    assert simulated == ran
    assert ran[(day, "planned")] == letters
