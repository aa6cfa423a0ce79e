"""Holds recorded in the institution's other systems: ``duecourse import holds FILE``.

A bankruptcy, a death, a lawsuit, a customer in a vulnerable situation, a dispute or a complaint taken by
a branch: the governor stops collection contact for each (``engine/governor.py``), but they are learnt
elsewhere (the legal team, the branch, a bankruptcy or deceased register). The file (.csv or .parquet):

- ``hold_id``: the hold's id in the system it comes from (the same id again is the same hold);
- ``customer_id``; ``account_id`` (optional: the hold is on that account only; else on the customer);
- ``channel`` (optional, with ``kind = opt_out`` only: the customer opted out of that channel; an opt-out
  without a channel stops every channel);
- ``kind``: ``dispute``, ``not_mine``, ``promise``, ``plan``, ``bankruptcy``, ``deceased``,
  ``litigation`` (a lawsuit under way), ``judgment`` (the court's judgment given, from ``starts_on``;
  ended when it is paid: collection follows the court's order, and the UK notices of sums in arrears end
  but for the first of an episode that triggered before it, CCA s86B(3)), ``vulnerability`` or
  ``opt_out``;
- ``starts_on``, ``ends_on`` (optional: until lifted), ISO dates; ``reason`` (what the people who look at
  the account will read).

All or nothing, every problem as ``FILE:ROW:COLUMN: reason``. A hold already imported with the same
content changes nothing. Its end may be set or moved by importing it again with another ``ends_on`` (a
hold is lifted so); any other change to a stored hold is refused (a different hold is a new ``hold_id``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert, select, update

from duecourse.bootstrap import App
from duecourse.channels.dispatch import STOPPING_HOLDS
from duecourse.domain.errors import Problem, ProblemsError
from duecourse.engine.governor import CHANNELS, OPT_OUT
from duecourse.io.rows import check_header, read_rows
from duecourse.store import outbox as store
from duecourse.store.tables import accounts, customers, holds

KINDS: tuple[str, ...] = (*sorted(STOPPING_HOLDS), OPT_OUT)
COLUMNS = ("hold_id", "customer_id", "kind", "starts_on", "reason")
OPTIONAL = ("account_id", "channel", "ends_on")
MAX_PROBLEMS = 1000
MAX_TEXT = 500
# What two imports of one hold must agree on (``ends_on`` may change: a hold is lifted so).
FIXED = ("scope", "customer_id", "account_id", "channel", "kind", "starts_on", "reason")


@dataclass(frozen=True, slots=True)
class HoldsImported:
    """What an import of holds did."""

    file: str
    rows: int
    added: int
    ended: int  # holds stored before whose end was set or moved
    unchanged: int


def _date(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        return None


def read_file(
    path: Path, known_customers: set[str], account_owner: Callable[[set[str]], dict[str, str]]
) -> list[tuple[int, dict[str, Any]]]:
    """The holds of a holds file, each with its row number, as the ``holds`` table stores them; every
    problem raised at once. ``account_owner``: the customer of each of the accounts asked for that is
    stored."""
    file = str(path)
    header, data = read_rows(path)
    check_header(header, COLUMNS, OPTIONAL, file, "holds")
    owners = account_owner(
        {row[header.index("account_id")].strip() for _, row in data if len(row) > header.index("account_id")}
        if "account_id" in header
        else set()
    )
    problems: list[Problem] = []
    at = {name: header.index(name) for name in header}
    out: list[tuple[int, dict[str, Any]]] = []
    seen: dict[str, int] = {}
    for number, row in data:
        cells = row + [""] * (len(header) - len(row))

        def cell(name: str, cells: list[str] = cells) -> str:
            return cells[at[name]].strip() if name in at else ""

        def bad(column: str, message: str, code: str = "import.bad_value", number: int = number) -> None:
            problems.append(Problem(code, message, f"{file}:{number}:{column}"))

        before = len(problems)
        hold_id, customer, account, channel = (
            cell(n) for n in ("hold_id", "customer_id", "account_id", "channel")
        )
        kind, reason = cell("kind"), cell("reason")
        if not hold_id:
            bad("hold_id", "hold_id is empty", "import.missing_value")
        elif hold_id in seen:
            bad("hold_id", f"hold {hold_id} is on row {seen[hold_id]} already", "import.repeated_key")
        elif len(hold_id) > MAX_TEXT:
            bad("hold_id", f"hold_id is longer than {MAX_TEXT} characters")
        if not customer:
            bad("customer_id", "customer_id is empty", "import.missing_value")
        elif customer not in known_customers:
            bad("customer_id", f"customer {customer} is not in the store", "import.unknown_customer")
        if account:
            owner = owners.get(account)
            if owner is None:
                bad("account_id", f"account {account} is not in the store", "import.unknown_account")
            elif customer and owner != customer:
                bad("account_id", f"account {account} belongs to customer {owner}, not {customer}")
        if kind not in KINDS:
            bad("kind", f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        if channel:
            if kind != OPT_OUT:
                bad("channel", f"a channel is for an opt_out hold only, not {kind or 'an empty kind'}")
            elif channel not in CHANNELS:
                bad("channel", f"channel must be one of {', '.join(CHANNELS)}, not {channel!r}")
            elif account:
                bad("channel", "an opt-out of a channel is the customer's, not one account's")
        starts_on, ends_on = _date(cell("starts_on")), _date(cell("ends_on"))
        if starts_on is None:
            bad(
                "starts_on",
                f"starts_on must be a date as YYYY-MM-DD, not {cell('starts_on')!r}",
                "import.bad_date",
            )
        if cell("ends_on") and ends_on is None:
            bad(
                "ends_on",
                f"ends_on must be a date as YYYY-MM-DD or empty, not {cell('ends_on')!r}",
                "import.bad_date",
            )
        elif ends_on is not None and starts_on is not None and ends_on < starts_on:
            bad("ends_on", f"ends_on {ends_on} is before starts_on {starts_on}")
        if not reason:
            bad(
                "reason",
                "reason is empty: say why, for the people who will look at the account",
                "import.missing_value",
            )
        elif len(reason) > MAX_TEXT:
            bad("reason", f"reason is longer than {MAX_TEXT} characters")
        if hold_id and hold_id not in seen:
            seen[hold_id] = number
        if len(problems) > before:
            continue
        scope = "channel" if channel else "account" if account else "customer"
        out.append(
            (
                number,
                {
                    "source_id": hold_id,
                    "scope": scope,
                    "customer_id": customer,
                    "account_id": account or None,
                    "channel": channel or None,
                    "kind": kind,
                    "starts_on": starts_on,
                    "ends_on": ends_on,
                    "reason": reason,
                },
            )
        )
    if problems:
        raise ProblemsError(problems[:MAX_PROBLEMS])
    return out


def import_holds(app: App, path: Path, now: dt.datetime) -> HoldsImported:
    """Import a holds file, all or nothing (see the module's text)."""
    with app.engine.connect() as connection:
        known = set(connection.execute(select(customers.c.customer_id)).scalars())

        def owners(ids: set[str]) -> dict[str, str]:
            found: dict[str, str] = {}
            wanted = sorted(ids - {""})
            for start in range(0, len(wanted), 500):
                query = select(accounts.c.account_id, accounts.c.customer_id).where(
                    accounts.c.account_id.in_(wanted[start : start + 500])
                )
                found.update((str(a), str(c)) for a, c in connection.execute(query))
            return found

        rows = read_file(path, known, owners)
    with store.write_transaction(app.engine) as connection:
        stored = _stored(connection, [row["source_id"] for _, row in rows])
        problems: list[Problem] = []
        new: list[dict[str, Any]] = []
        ends: list[tuple[str, dt.date | None]] = []
        for number, row in rows:
            before = stored.get(row["source_id"])
            if before is None:
                new.append({**row, "created_at": now})
                continue
            differ = [name for name in FIXED if before[name] != row[name]]
            if differ:
                problems += [
                    Problem(
                        "import.changed_value",
                        f"hold {row['source_id']} is stored with {name} {before[name]!r}, not {row[name]!r}; "
                        "only its end may change (a different hold needs a new hold_id)",
                        f"{path}:{number}:{'account_id' if name == 'scope' else name}",
                    )
                    for name in differ
                ]
            elif before["ends_on"] != row["ends_on"]:
                ends.append((row["source_id"], row["ends_on"]))
        if problems:
            raise ProblemsError(problems[:MAX_PROBLEMS])
        if new:
            connection.execute(insert(holds), new)
        for source_id, ends_on in ends:
            connection.execute(update(holds).where(holds.c.source_id == source_id).values(ends_on=ends_on))
    return HoldsImported(str(path), len(rows), len(new), len(ends), len(rows) - len(new) - len(ends))


def _stored(connection: Connection, source_ids: list[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    names = (*FIXED, "ends_on", "source_id")
    for start in range(0, len(source_ids), 500):
        chunk = source_ids[start : start + 500]
        query = select(*(holds.c[name] for name in names)).where(holds.c.source_id.in_(chunk))
        for r in connection.execute(query):
            found[str(r.source_id)] = dict(r._mapping)
    return found
