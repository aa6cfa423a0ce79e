"""A hold's end: the first run after it plans what the hold kept back (the latest occurrence, once), on
SQLite and PostgreSQL, through the command line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from test_governed_run import _rows, _setup

from duecourse.store.db import make_engine
from duecourse.store.tables import holds, outbox

# Sent once, on the day an account enters M1: C1's card (A1) and loan (A2) entered it in April.
ONCE = """
  [[strategy.stages.actions]]
  name = "first-mail"
  channel = "email"
  kind = "overdue_reminder"
  at = "10:00"

"""


def _decisions(cli, tmp_path: Path, day: str) -> dict[tuple[str, str], dict[str, str]]:  # type: ignore[no-untyped-def]
    out = tmp_path / f"decisions-{day}.csv"
    assert cli("export", "decisions", "--from", day, "--to", day, "--out", str(out)) == 0
    return {(r["account_id"], r["action"]): r for r in _rows(out)}


@pytest.mark.parametrize("held", [pytest.param(True, id="held"), pytest.param(False, id="not-held")])
def test_the_first_run_after_a_promise_ends_sends_the_message_it_held_back(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], held: bool
) -> None:
    cli = _setup(db_url, tmp_path, actions=ONCE)
    if held:  # C1 promised to pay; the promise lapsed on 05-04
        engine = make_engine(db_url)
        try:
            with engine.begin() as connection:
                connection.execute(
                    insert(holds).values(
                        scope="customer",
                        customer_id="C1",
                        account_id=None,
                        channel=None,
                        kind="promise",
                        starts_on=dt.date(2025, 4, 1),
                        ends_on=dt.date(2025, 5, 4),
                        reason="promised to pay by 05-04",
                        created_at=dt.datetime(2025, 4, 1, tzinfo=dt.UTC),
                    )
                )
        finally:
            engine.dispose()
    for day in ("2025-05-04", "2025-05-05", "2025-05-06"):
        assert cli("run", "--as-of", day) == 0
    capsys.readouterr()
    on_5th = _decisions(cli, tmp_path, "2025-05-05")
    if not held:  # both entered M1 before the first run: never due from this system
        assert on_5th == {}
        return
    assert sorted(on_5th) == [("A1", "first-mail"), ("A2", "first-mail")]
    # One contact a day for C1: one goes, the other waits a day.
    assert sorted(row["verdict"] for row in on_5th.values()) == ["deferred", "planned"]
    assert _decisions(cli, tmp_path, "2025-05-06") == {}  # once, not again
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            reasons = connection.execute(select(outbox.c.account_id, outbox.c.reason)).all()
    finally:
        engine.dispose()
    assert len(reasons) == 2
    assert all("a hold from 2025-04-01 kept back; the hold has ended" in reason for _, reason in reasons)
