"""Run the day once on an imported database and report where the CPU goes; print JSON figures.

    .venv/bin/python bench/profile_run.py --db URL [--as-of 2026-06-30] [--cprofile OUT] [--digest]

For profiling a change to the run (``bench/daily_run.py`` measures the whole pipeline): the database is
one that ``daily_run.py --keep`` left behind, with the previous day stored. Reports the run's wall and
CPU seconds (this process, and its finished children: the SQLite workers), the peak RSS of this
process, the load average before, and with ``--digest`` a SHA-256 of the day's stored snapshots and
stage history (the same data gives the same digest: compare before and after a change). ``--cprofile``
writes the profile of this process's main thread to OUT (``python -m pstats OUT``).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import json
import os
import resource
import sys
import time

from daily_run import stored_digest  # bench/ is this script's folder

from duecourse.bootstrap import bootstrap
from duecourse.services import portfolio as svc
from duecourse.store import repo


def _cpu() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", required=True)
    parser.add_argument("--as-of", type=dt.date.fromisoformat, default=dt.date(2026, 6, 30))
    parser.add_argument("--chunk", type=int, default=repo.ACCOUNTS_PER_CHUNK)
    parser.add_argument("--cprofile", metavar="OUT")
    parser.add_argument("--digest", action="store_true")
    args = parser.parse_args()

    load = [round(x, 2) for x in os.getloadavg()]
    app = bootstrap(args.db, None)
    cpu0, children0 = _cpu()
    t0 = time.perf_counter()
    # The main thread's CPU time, not the wall: on a shared machine the wall of a call counts the waits.
    profile = cProfile.Profile(time.thread_time) if args.cprofile else None
    if profile is not None:
        profile.enable()
    result = svc.run_day(app, args.as_of, accounts_per_chunk=args.chunk)
    if profile is not None:
        profile.disable()
        profile.dump_stats(args.cprofile)
    wall = time.perf_counter() - t0
    cpu1, children1 = _cpu()
    figures: dict[str, object] = {
        "accounts": result.accounts,
        "load_before": load,
        "wall_seconds": round(wall, 2),
        "seconds": {k: round(v, 2) for k, v in result.seconds.items()},
        "store_seconds": {k: round(v, 2) for k, v in result.store_seconds.items()},
        "cpu_seconds": {"process": round(cpu1 - cpu0, 2), "workers": round(children1 - children0, 2)},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "stage_changes": result.stage_changes,
    }
    if args.digest:
        figures["digest"] = stored_digest(app, args.as_of)
        figures["stages"] = result.stages
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
