"""Escalation tasks through the run, on SQLite and PostgreSQL, through the command line: the card of C1
(A1, due 04-23, nothing paid) gets a final demand on the first day it is late; placing it with an agency
at M1 waits for the final demand to be sent and for the deadline it gave (CN-COL-06)."""

from __future__ import annotations

import csv
import datetime as dt
import re
from pathlib import Path

import pytest
from sqlalchemy import select, update
from test_governed_run import _rows, _setup

from duecourse.config import load_config
from duecourse.letters.data import deadline_for
from duecourse.letters.settings import DEFAULT_DEADLINES
from duecourse.services.policy import check_policy
from duecourse.store.db import make_engine
from duecourse.store.tables import outbox, tasks

STAGES = """
  [[strategy.stages.actions]]
  name = "place"
  channel = "task"
  kind = "agency_placement"

"""
EARLY = """
[[strategy.stages]]
name = "early"
min_days_past_due = 1

  [[strategy.stages.actions]]
  name = "demand"
  channel = "letter"
  kind = "final_demand"
"""


def _config(tmp_path: Path, db_url: str):  # type: ignore[no-untyped-def]
    cli = _setup(db_url, tmp_path, actions=STAGES)
    # The "early" stage of the default configuration gets the final demand.
    path = tmp_path / "duecourse.toml"
    text = path.read_text(encoding="utf-8")
    early = re.search(r'\[\[strategy\.stages\]\]\nname = "early".*\nmin_days_past_due = 1\n', text)
    assert early is not None
    path.write_text(text.replace(early[0], EARLY.lstrip("\n")), encoding="utf-8")
    return cli, path


def _tasks(db_url: str) -> list[dict[str, object]]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            return [dict(r._mapping) for r in connection.execute(select(tasks).order_by(tasks.c.key))]
    finally:
        engine.dispose()


def test_placement_waits_for_the_final_demand_and_its_deadline(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli, config = _config(tmp_path, db_url)
    # The M1 stage had "mail" and "notice" actions in the shared set-up; here only the task.
    assert cli("run", "--as-of", "2025-04-24") == 0  # A1 one day late: the final demand
    engine = make_engine(db_url)
    try:
        with engine.begin() as connection:  # the print run took it, as the dispatcher records it
            changed = connection.execute(
                update(outbox)
                .where((outbox.c.account_id == "A1") & (outbox.c.kind == "final_demand"))
                .values(state="sent", sent_at=dt.datetime(2025, 4, 24, 12, tzinfo=dt.UTC))
            ).rowcount
        assert changed == 1
    finally:
        engine.dispose()
    assert cli("run", "--as-of", "2025-04-27") == 0  # A1 enters M1 (3 days of grace): the task falls
    deadline = deadline_for(DEFAULT_DEADLINES["final_demand"], dt.date(2025, 4, 24), "CN")
    assert deadline is not None
    ready = deadline + dt.timedelta(days=1)
    (task,) = _tasks(db_url)
    assert (task["account_id"], task["kind"], task["state"], task["ready_on"]) == (
        "A1",
        "agency_placement",
        "waiting",
        ready,
    )
    assert task["rule_id"] == "CN-COL-06"
    assert f"final_demand sent on 2025-04-24 gives the customer until {deadline}" in str(task["reason"])

    assert cli("run", "--as-of", (ready - dt.timedelta(days=1)).isoformat()) == 0
    assert [t["state"] for t in _tasks(db_url)] == ["waiting"]
    assert cli("run", "--as-of", ready.isoformat()) == 0
    (task,) = _tasks(db_url)
    assert (task["state"], task["ready_on"]) == ("open", ready)

    out = tmp_path / "tasks.csv"
    capsys.readouterr()
    assert cli("export", "tasks", "--from", "2025-04-01", "--to", "2025-06-30", "--out", str(out)) == 0
    assert "1 tasks from 2025-04-01 to 2025-06-30" in capsys.readouterr().out
    with out.open(encoding="utf-8", newline="") as file:
        (row,) = list(csv.DictReader(file))
    assert (row["account_id"], row["kind"], row["state"], row["planned_on"], row["ready_on"]) == (
        "A1",
        "agency_placement",
        "open",
        "2025-04-27",
        ready.isoformat(),
    )
    decisions = tmp_path / "decisions.csv"
    assert (
        cli("export", "decisions", "--from", "2025-04-27", "--to", "2025-04-27", "--out", str(decisions)) == 0
    )
    by = {(r["account_id"], r["action"]): r for r in _rows(decisions)}
    assert by["A1", "place"]["channel"] == "task"
    assert by["A1", "place"]["verdict"] == "deferred"
    assert by["A1", "place"]["rule_id"] == "CN-COL-06"
    # policy check is content: the strategy sends the final demand the placement waits for.
    assert not [f for f in check_policy(load_config(config)) if f.code == "policy.task_waits"]


def test_a_task_is_not_a_message_and_a_hold_stops_it(db_url: str, tmp_path: Path) -> None:
    """A dispute on the customer suppresses the task like any collection step; nothing reaches the
    outbox for it."""
    cli, _ = _config(tmp_path, db_url)
    engine = make_engine(db_url)
    try:
        from sqlalchemy import insert

        from duecourse.store.tables import holds

        with engine.begin() as connection:
            connection.execute(
                insert(holds).values(
                    scope="customer",
                    customer_id="C1",
                    account_id=None,
                    channel=None,
                    kind="dispute",
                    starts_on=dt.date(2025, 4, 25),
                    ends_on=None,
                    reason="disputes the card's balance",
                    created_at=dt.datetime(2025, 4, 25, tzinfo=dt.UTC),
                )
            )
        assert cli("run", "--as-of", "2025-04-24") == 0
        assert cli("run", "--as-of", "2025-04-27") == 0
        with engine.connect() as connection:
            channels = set(connection.execute(select(outbox.c.channel)).scalars())
    finally:
        engine.dispose()
    assert channels == {"letter"}  # the final demand of 04-24, before the dispute
    assert _tasks(db_url) == []
    out = tmp_path / "decisions.csv"
    assert cli("export", "decisions", "--from", "2025-04-27", "--to", "2025-04-27", "--out", str(out)) == 0
    place = {(r["account_id"], r["action"]): r for r in _rows(out)}["A1", "place"]
    assert (place["verdict"], place["rule_id"]) == ("suppressed", "COMMON-HOLD-DISPUTE")
