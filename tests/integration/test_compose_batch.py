"""The dispatcher's composer renders a batch's letters together (many to a typst document) and each letter
is the same bytes as rendered alone; a letter that cannot be rendered fails its own message only."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cli_support import cli_with

from duecourse.bootstrap import bootstrap
from duecourse.channels.compose import LetterComposer
from duecourse.channels.dispatch import Composed, NotComposed
from duecourse.config import default_config_text
from duecourse.letters import TemplateError
from duecourse.letters import render as render_module
from duecourse.letters.data import masked
from duecourse.services import letters as letter_service
from duecourse.store import outbox as store

ACTIONS = """
  [[strategy.stages.actions]]
  channel = "letter"
  kind = "overdue_reminder"
  repeat_every_days = 1
  max_times = 30
  at = "10:00"

  [[strategy.stages.actions]]
  channel = "email"
  kind = "overdue_reminder"
  repeat_every_days = 1
  max_times = 30
  at = "10:00"

"""


@pytest.fixture
def planned(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    text = default_config_text()
    marker = '[[strategy.stages]]\nname = "M2"'
    assert marker in text
    text = text.replace(marker, ACTIONS + marker)
    text += (
        '\n[channels.email]\nhost = "127.0.0.1"\nport = 25\nstarttls = false\n'
        'from = "示例消费金融 <collect@example.cn>"\n'
        f'\n[channels.post]\ndir = "{tmp_path / "print"}"\n'
    )
    monkeypatch.setenv("DUECOURSE_PORTAL_SECRET", "x" * 32)
    cli, config = cli_with(db_url, tmp_path, text)
    assert cli("run", "--as-of", "2025-05-05") == 0
    return db_url, config


def _compose(db_url: str, config: Path) -> tuple[list[store.Message], dict[int, Composed | NotComposed]]:
    app = bootstrap(db_url, config)
    now = dt.datetime(2025, 5, 5, 2, tzinfo=dt.UTC)
    with store.write_transaction(app.engine) as connection:
        rows = store.lock_due(connection, now, ("planned",), 100)
        made = LetterComposer(app).compose(rows, now, connection)
    app.engine.dispose()
    return rows, made


def test_a_batch_composes_each_letter_as_the_same_bytes_as_alone(planned: tuple[str, Path]) -> None:
    rows, made = _compose(*planned)
    letters = [r for r in rows if r.channel == "letter"]
    assert len(letters) >= 2 and any(r.channel == "email" for r in rows)
    app = bootstrap(*planned)
    records = letter_service.records_for(app, sorted({r.account_id for r in letters}))
    for row in letters:
        composed = made[row.id]
        assert isinstance(composed, Composed), composed
        account, customer, dues, payments = records[row.account_id]
        data = letter_service.build_data(app, account, customer, dues, payments, row.kind, row.planned_on)
        alone = letter_service.render_data(
            data, letter_service.shipped_templates(), row.planned_on, row.account_id, customer.customer_id
        )
        assert composed.content == alone.pdf
        assert composed.meta["letter_sha256"] == alone.sha256
    app.engine.dispose()
    for row in rows:
        if row.channel == "email":
            assert isinstance(made[row.id], Composed)


def test_a_letter_that_cannot_be_rendered_fails_its_own_message_only(
    planned: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = render_module.compile_letters
    bad = masked("A2")  # the account number as its letters show it: they cannot be rendered

    def failing(markups: list[str], when: dt.date) -> list[bytes]:
        if any(bad in markup for markup in markups):
            raise TemplateError("typst: a broken template (the test's)")
        return real(markups, when)

    monkeypatch.setattr(letter_service, "compile_letters", failing)
    rows, made = _compose(*planned)
    mailed = [r for r in rows if r.channel in {"letter", "email"}]
    assert {r.account_id for r in mailed} >= {"A1", "A2"}
    for row in mailed:
        outcome = made[row.id]
        if row.account_id == "A2":
            assert isinstance(outcome, NotComposed) and not outcome.fallback
            assert "a broken template (the test's)" in outcome.reason
        else:
            assert isinstance(outcome, Composed), outcome
