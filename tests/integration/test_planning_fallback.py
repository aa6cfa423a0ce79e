"""A channel closed to the customer at planning (an opt-out of e-mail) does not leave the customer without
the action: the run plans it on the action's next channel the same day, and the e-mail's decision says
where it went; on SQLite and PostgreSQL, through the command line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cli_support import cli_with
from sqlalchemy import insert, select

from duecourse.config import default_config_text
from duecourse.store.db import make_engine
from duecourse.store.tables import decisions, holds, outbox

ACTION = """
  [[strategy.stages.actions]]
  name = "mail"
  channel = "email"
  kind = "overdue_reminder"
  repeat_every_days = 1
  max_times = 30
  at = "10:00"
  fallback = ["sms", "letter"]

"""


def test_an_opted_out_channel_falls_back_to_the_next_at_planning(db_url: str, tmp_path: Path) -> None:
    text = default_config_text()
    marker = '[[strategy.stages]]\nname = "M2"'
    text = text.replace(marker, ACTION + marker) + (
        f'\n[channels.email]\ntransport = "files"\ndir = "{tmp_path / "email"}"\n'
        'from = "示例消费金融 <collect@example.cn>"\n'
        f'\n[channels.sms]\ngateway = "files"\ndir = "{tmp_path / "sms"}"\n'
        f'\n[channels.post]\ndir = "{tmp_path / "print"}"\n'
    )
    cli, _ = cli_with(db_url, tmp_path, text)
    engine = make_engine(db_url)
    try:
        with engine.begin() as connection:  # C1 opted out of e-mail and of texts
            for channel in ("email", "sms"):
                connection.execute(
                    insert(holds).values(
                        scope="channel",
                        customer_id="C1",
                        account_id=None,
                        channel=channel,
                        kind="opt_out",
                        starts_on=dt.date(2025, 5, 1),
                        ends_on=None,
                        reason=f"opted out of {channel}",
                        created_at=dt.datetime(2025, 5, 1, tzinfo=dt.UTC),
                    )
                )
        assert cli("run", "--as-of", "2025-05-05") == 0
        assert cli("run", "--as-of", "2025-05-05") == 0  # a re-run plans nothing twice
        with engine.connect() as connection:
            planned = sorted(
                (r.account_id, r.channel)
                for r in connection.execute(select(outbox.c.account_id, outbox.c.channel, outbox.c.action))
                if r.action == "mail"
            )
            decided = {
                (r.account_id, r.channel): (r.verdict, r.reason)
                for r in connection.execute(
                    select(
                        decisions.c.account_id, decisions.c.channel, decisions.c.verdict, decisions.c.reason
                    ).where(decisions.c.action == "mail")
                )
            }
    finally:
        engine.dispose()
    # A1 and A2 (C1's card and loan) get letters; the e-mail and the text say where the action went.
    assert planned == [("A1", "letter"), ("A2", "letter")]
    verdict, reason = decided[("A1", "email")]
    assert verdict == "suppressed" and "opted out of email" in reason
    assert reason.endswith("the action falls back to sms")
    verdict, reason = decided[("A1", "sms")]
    assert verdict == "suppressed" and reason.endswith("the action falls back to letter")
    assert decided[("A1", "letter")][0] == "planned"
