"""Third parties the customers named (``duecourse import contacts``), on SQLite and PostgreSQL, through
the command line: the file checked row by row, all or nothing; the same file again changes nothing; a
stored contact with other content is refused."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from cli_support import cli_with
from sqlalchemy import select
from test_cli import write

from duecourse.config import default_config_text
from duecourse.store.db import make_engine
from duecourse.store.tables import third_parties

CONTACTS = (
    "contact_id,customer_id,relation,name,phone,email,locale,timezone,agreed_on\n"
    "K1,C1,emergency,李雷,+8613900139000,,,,2024-01-10\n"
    "K2,C2,family,John Roe,,john@example.com,en-US,America/Chicago,\n"
)


def _stored(db_url: str) -> list[tuple[str, str, str, str]]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            return [
                (r.contact_id, r.customer_id, r.timezone, str(r.agreed_on))
                for r in connection.execute(select(third_parties).order_by(third_parties.c.contact_id))
            ]
    finally:
        engine.dispose()


def test_contacts_are_imported_once_and_the_same_file_again_changes_nothing(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = cli_with(db_url, tmp_path, default_config_text())[0]
    path = write(tmp_path, "contacts.csv", CONTACTS)
    assert cli("import", "contacts", str(path)) == 0
    assert "2 contacts added, 0 already there" in capsys.readouterr().out
    assert cli("import", "contacts", str(path)) == 0
    assert "0 contacts added, 2 already there" in capsys.readouterr().out
    assert _stored(db_url) == [
        ("K1", "C1", "", "2024-01-10"),
        ("K2", "C2", "America/Chicago", "None"),
    ]


def test_a_parquet_contacts_file_is_read_like_a_csv(db_url: str, tmp_path: Path) -> None:
    cli = cli_with(db_url, tmp_path, default_config_text())[0]
    path = tmp_path / "contacts.parquet"
    pl.read_csv(write(tmp_path, "c.csv", CONTACTS), infer_schema=False).write_parquet(path)
    assert cli("import", "contacts", str(path)) == 0
    assert [r[0] for r in _stored(db_url)] == ["K1", "K2"]


def test_a_contacts_file_is_checked_row_by_row_and_nothing_is_written(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = cli_with(db_url, tmp_path, default_config_text())[0]
    bad = write(
        tmp_path,
        "bad.csv",
        "contact_id,customer_id,relation,name,phone,email,locale,timezone,agreed_on\n"
        "K1,C1,emergency,李雷,+8613900139000,,,,\n"
        "K2,C9,friend,,13900139000,,fr-FR,Mars/Base,2024-1-1\n"
        "K3,C1,family,Wu,,,,,\n"
        "K1,C1,family,Han,+8613900139001,,,,\n"
        "K|4,C1,family,Han,,han@example,,,\n",
    )
    assert cli("import", "contacts", str(bad)) == 1
    err = capsys.readouterr().err
    for line in (
        f"{bad}:3:customer_id: customer C9 is not in the store",
        f"{bad}:3:relation: relation must be one of emergency, family, employer, reference, not 'friend'",
        f"{bad}:3:name: name is empty",
        f"{bad}:3:phone: '13900139000' is not an E.164 phone number",
        f"{bad}:3:locale: locale must be one of zh-CN, en-US, en-GB or empty, not 'fr-FR'",
        f"{bad}:3:timezone: unknown time zone 'Mars/Base'",
        f"{bad}:3:agreed_on: agreed_on must be a date as YYYY-MM-DD or empty, not '2024-1-1'",
        f"{bad}:4:phone: a contact needs a phone or an e-mail (both are empty)",
        f"{bad}:5:contact_id: contact K1 is on row 2 already",
        f"{bad}:6:contact_id: contact_id must be printable ASCII without spaces or '|'",
        f"{bad}:6:email: 'han@example' does not look like an e-mail address",
    ):
        assert line in err, err
    assert _stored(db_url) == []  # all or nothing


def test_a_stored_contact_with_other_content_is_refused(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = cli_with(db_url, tmp_path, default_config_text())[0]
    assert cli("import", "contacts", str(write(tmp_path, "contacts.csv", CONTACTS))) == 0
    changed = write(
        tmp_path,
        "changed.csv",
        "contact_id,customer_id,relation,name,phone\nK1,C1,emergency,李雷,+8613900139999\n",
    )
    capsys.readouterr()
    assert cli("import", "contacts", str(changed)) == 1
    err = capsys.readouterr().err
    assert f"{changed}:2:phone: contact K1 is stored already with another phone ('+8613900139000')" in err
