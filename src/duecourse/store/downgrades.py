"""What a downgrade of the schema checks before it changes anything.

A downgrade runs the newest migration's steps first. On SQLite, Python's driver runs DDL outside a
transaction until the first write, so a step that has dropped an index or copied a table stays done even
when a later migration then refuses: the refusal must come before the first step. So each check lives
here, and every migration newer than the one that needs it runs it first when the downgrade goes below
that one (``needed``).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import Connection

FINAL = ("delivered", "bounced", "failed", "cancelled")


class ContactMessagesPending(RuntimeError):
    """The downgrade would turn messages to contacts that are still under way into customer messages."""


def needed(destination: str | tuple[str, ...] | None, below: str) -> bool:
    """Whether a downgrade to ``destination`` (Alembic's revision argument) goes below revision ``below``
    (a relative, several or unknown destination counts as going below it: the check is then made, to be
    safe)."""
    if not isinstance(destination, str) or not destination.isdigit():
        return True
    return destination < below


def refuse_contact_messages_pending(bind: Connection) -> None:
    """Below 0012, the older code takes a message to a contact for one to the customer (it would render
    the customer's letter for it, or count it as the customer's): refuse while any such message is not
    final, rather than cancel what the institution planned."""
    final = ", ".join(f"'{state}'" for state in FINAL)
    pending = bind.execute(
        sa.text(
            f"SELECT state, COUNT(*) FROM outbox WHERE contact_id <> '' AND state NOT IN ({final}) "
            "GROUP BY state ORDER BY state"
        )
    ).all()
    if pending:
        states = ", ".join(f"{count} {state}" for state, count in pending)
        raise ContactMessagesPending(
            f"cannot downgrade below 0012: messages to contacts are not final in the outbox ({states}); "
            "older code would take them for messages to the customer. Let them reach a final state "
            f"({', '.join(FINAL)}) or cancel them first"
        )
