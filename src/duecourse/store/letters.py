"""Stored letters and print batches: each rendered letter once, by the sha256 of its PDF."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Row, insert, select

from duecourse.store.tables import letter_batch_items, letter_batches, letters


@dataclass(frozen=True, slots=True)
class StoredLetter:
    """A letter as stored: the PDF, the data it was made from and the templates' version."""

    sha256: str
    reference: str
    account_id: str
    customer_id: str
    kind: str
    locale: str
    letter_date: dt.date
    template_version: str
    pages: int
    data_json: str
    pdf: bytes


def save_letter(engine: Engine, letter: StoredLetter, created_at: dt.datetime) -> bool:
    """Store a letter unless the same PDF is stored already; True when it was added."""
    with engine.begin() as connection:
        found = connection.execute(select(letters.c.sha256).where(letters.c.sha256 == letter.sha256)).first()
        if found is not None:
            return False
        connection.execute(insert(letters).values(**_row(letter), created_at=created_at))
    return True


def save_letters(engine: Engine, items: Sequence[StoredLetter], created_at: dt.datetime) -> int:
    """Store many letters in one transaction, skipping those already stored; the number added."""
    if not items:
        return 0
    with engine.begin() as connection:
        return save_letters_in(connection, items, created_at)


def save_letters_in(connection: Connection, items: Sequence[StoredLetter], created_at: dt.datetime) -> int:
    """:func:`save_letters` within the caller's transaction."""
    shas = list({item.sha256 for item in items})
    have: set[str] = set()
    for start in range(0, len(shas), 500):
        chunk = shas[start : start + 500]
        have |= set(connection.execute(select(letters.c.sha256).where(letters.c.sha256.in_(chunk))).scalars())
    rows = []
    for item in items:
        if item.sha256 not in have:
            have.add(item.sha256)
            rows.append({**_row(item), "created_at": created_at})
    if rows:
        connection.execute(insert(letters), rows)
    return len(rows)


def _row(letter: StoredLetter) -> dict[str, object]:
    return {
        "sha256": letter.sha256,
        "reference": letter.reference,
        "account_id": letter.account_id,
        "customer_id": letter.customer_id,
        "kind": letter.kind,
        "locale": letter.locale,
        "letter_date": letter.letter_date,
        "template_version": letter.template_version,
        "pages": letter.pages,
        "data_json": letter.data_json,
        "pdf": letter.pdf,
    }


def _letter(row: Row[Any]) -> StoredLetter:
    m = row._mapping
    return StoredLetter(**{k: m[k] for k in StoredLetter.__slots__})


def letter_by_sha(engine: Engine, sha256: str) -> StoredLetter | None:
    with engine.connect() as connection:
        row = connection.execute(select(letters).where(letters.c.sha256 == sha256)).first()
    return None if row is None else _letter(row)


def letters_for(engine: Engine, account_id: str) -> list[StoredLetter]:
    """Every stored letter of an account, oldest first."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(letters)
            .where(letters.c.account_id == account_id)
            .order_by(letters.c.letter_date, letters.c.kind)
        ).all()
    return [_letter(r) for r in rows]


def batch_listing(
    engine: Engine, batch_date: dt.date, after: int = 0, limit: int = 500
) -> list[tuple[int, str, str, str, str, str, int, str]]:
    """The letters of the print batch of a date after sequence number ``after`` (at most ``limit``), in
    sequence, without their PDFs: (sequence, sha256, account, customer, kind, locale, pages, data)."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                letter_batch_items.c.sequence,
                letters.c.sha256,
                letters.c.account_id,
                letters.c.customer_id,
                letters.c.kind,
                letters.c.locale,
                letters.c.pages,
                letters.c.data_json,
            )
            .join(letter_batch_items, letter_batch_items.c.letter_sha256 == letters.c.sha256)
            .where(letter_batch_items.c.batch_date == batch_date, letter_batch_items.c.sequence > after)
            .order_by(letter_batch_items.c.sequence)
            .limit(limit)
        ).all()
    return [tuple(r) for r in rows]


def pdfs_of(engine: Engine, shas: Sequence[str]) -> dict[str, bytes]:
    """The stored PDFs of the letters with these sha256 (those stored)."""
    found: dict[str, bytes] = {}
    with engine.connect() as connection:
        for start in range(0, len(shas), 500):
            chunk = list(shas[start : start + 500])
            rows = connection.execute(
                select(letters.c.sha256, letters.c.pdf).where(letters.c.sha256.in_(chunk))
            )
            found.update((str(sha), bytes(pdf)) for sha, pdf in rows)
    return found


def batch_sha256(engine: Engine, batch_date: dt.date) -> str | None:
    """The sha256 recorded for the merged PDF of the batch of a date; None when there is no batch."""
    with engine.connect() as connection:
        found = connection.execute(
            select(letter_batches.c.sha256).where(letter_batches.c.batch_date == batch_date)
        ).first()
    return None if found is None else str(found[0])


def save_batch(
    engine: Engine,
    batch_date: dt.date,
    shas: Sequence[str],
    pages: int,
    sha256: str,
    manifest_sha256: str,
    created_at: dt.datetime,
) -> None:
    """Record the batch of a date and its letters in sequence (the letters are stored already)."""
    with engine.begin() as connection:
        connection.execute(
            insert(letter_batches).values(
                batch_date=batch_date,
                letters=len(shas),
                pages=pages,
                sha256=sha256,
                manifest_sha256=manifest_sha256,
                created_at=created_at,
            )
        )
        if shas:
            connection.execute(
                insert(letter_batch_items),
                [
                    {"batch_date": batch_date, "sequence": n, "letter_sha256": s}
                    for n, s in enumerate(shas, 1)
                ],
            )
