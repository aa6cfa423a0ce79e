"""The day's contact planning at portfolio scale: candidates, the governor, and the stored decisions and
outbox rows, on a database ``daily_run.py --keep`` left behind (its run day stored); print JSON figures.

    .venv/bin/python bench/planning_speed.py --db URL [--as-of 2026-06-30] [--cprofile OUT]

The strategy is the shipped configuration's stages with an e-mail every day in every stage and a letter on
entering M2 (so every account in collection gets a message each day: about 158,000 for the bench
portfolio of 1,000,000 accounts); messages go to files (nothing is sent: planning only). The first call
plans the day; a second call re-plans it (a re-run of the day replaces its decisions and adds no outbox
row). Reports wall and CPU seconds of each, the planned and decided counts, and the peak RSS.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import json
import os
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

from duecourse.bootstrap import bootstrap
from duecourse.config import default_config_text
from duecourse.services.contacts import plan_contacts
from duecourse.store.db import init_db

ACTIONS = """
  [[strategy.stages.actions]]
  name = "daily-mail"
  channel = "email"
  kind = "overdue_reminder"
  repeat_every_days = 1
  max_times = 400
  at = "10:00"
"""


def _config(folder: Path) -> Path:
    """The shipped configuration with an e-mail a day in every stage and a letter on entering M2."""
    text = default_config_text()
    body = re.sub(r"(\[\[strategy\.stages\]\]\n(?:[^\n]+\n)+)", lambda m: m[1] + ACTIONS, text)
    body = re.sub(
        r'(name = "M2"\n(?:[^\n]+\n)+)',
        lambda m: (
            m[1] + '\n  [[strategy.stages.actions]]\n  name = "letter"\n  channel = "letter"\n'
            '  kind = "overdue_reminder"\n'
        ),
        body,
        count=1,
    )
    body += (
        f'\n[channels.email]\ntransport = "files"\ndir = "{folder / "email"}"\nfrom = "c <c@example.com>"\n'
        f'\n[channels.post]\ndir = "{folder / "print"}"\n'
    )
    path = folder / "duecourse.toml"
    path.write_text(body, encoding="utf-8")
    return path


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", required=True)
    parser.add_argument("--as-of", type=dt.date.fromisoformat, default=dt.date(2026, 6, 30))
    parser.add_argument("--cprofile", metavar="OUT")
    args = parser.parse_args()
    init_db(args.db)  # a database of an older revision is migrated, as every command does
    with tempfile.TemporaryDirectory(prefix="duecourse-planning-") as tmp:
        app = bootstrap(args.db, _config(Path(tmp)))
        figures: dict[str, object] = {"load_before": [round(x, 2) for x in os.getloadavg()]}
        for attempt in ("first", "re-run"):
            profile = cProfile.Profile(time.thread_time) if args.cprofile and attempt == "first" else None
            cpu0, t0 = _cpu(), time.perf_counter()
            if profile is not None:
                profile.enable()
            plan = plan_contacts(app, args.as_of, dt.datetime.now(dt.UTC))
            if profile is not None:
                profile.disable()
                profile.dump_stats(args.cprofile)
            figures[attempt] = {
                "wall_seconds": round(time.perf_counter() - t0, 2),
                "cpu_seconds": round(_cpu() - cpu0, 2),
                "added": plan.added,
                "already": plan.already,
                "verdicts": plan.verdicts,
                "by_channel": plan.by_channel,
            }
        figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
