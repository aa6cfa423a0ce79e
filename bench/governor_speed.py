"""Time ``govern`` on N planned messages and print the figures as JSON.

Run: ``.venv/bin/python bench/governor_speed.py [--actions N]`` (default 1,000,000). The portfolio is
generated with Polars expressions: about N/2 customers in CN, US and UK, in a dozen zones (3 % of the US
ones in two), every channel (a fifth of the messages are calls, a fifth letters), planned over the whole
UTC day (so a good share falls outside the hours), with holds on 5 % of the customers (some ended,
some not started), one outbox message today for 20 % and up to eight past calls for a third of those
with a call planned. Target: 1,000,000 messages in 30 s or less on a 2-core machine.

Printed: messages, wall seconds of ``govern`` alone, messages per second, peak RSS of the process (after
generation and after ``govern``), the verdict counts, the rules that decided, and the load average.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import time

import polars as pl

from duecourse.engine.governor import CALLS, CONTACTS, HOLDS, PLANNED, Policy, govern

AS_OF = dt.date(2026, 3, 8)  # the spring-forward day in the US, for good measure
ZONES = {
    "CN": ["Asia/Shanghai", "Asia/Urumqi", "Asia/Hong_Kong"],
    "US": [
        "America/New_York",
        "America/Chicago",
        "America/Denver",
        "America/Phoenix",
        "America/Los_Angeles",
        "America/Anchorage",
        "Pacific/Honolulu",
    ],
    "UK": ["Europe/London", "Europe/Dublin"],
}
CHANNELS = ["sms", "sms", "sms", "email", "email", "push", "call", "call", "letter", "letter"]
KINDS = (
    ["overdue_reminder"] * 40
    + ["final_demand"] * 6
    + ["dispute_ack", "promise_confirmation", "pre_due", "credit_report_notice"]
)
HOLD_KINDS = [
    "dispute",
    "not_mine",
    "promise",
    "plan",
    "bankruptcy",
    "deceased",
    "litigation",
    "vulnerability",
    "opt_out",
]


def _pick(options: list[str], index: pl.Expr) -> pl.Expr:
    return pl.lit(pl.Series(options)).gather(index % len(options))


def portfolio(actions: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Planned messages, holds, outbox contacts and past calls, deterministic in ``actions``."""
    i = pl.int_range(actions, dtype=pl.Int64)
    base = pl.select(i=i).with_columns(c=pl.col("i") // 2)
    jurisdiction = (
        pl.when(pl.col("c") % 10 < 5)
        .then(pl.lit("CN"))
        .when(pl.col("c") % 10 < 8)
        .then(pl.lit("US"))
        .otherwise(pl.lit("UK"))
    )
    base = base.with_columns(jurisdiction=jurisdiction, spread=(pl.col("c") * 2_654_435_761) % 1_000_003)
    zone = (
        pl.when(pl.col("jurisdiction") == "CN")
        .then(_pick(ZONES["CN"], pl.col("spread")))
        .when(pl.col("jurisdiction") == "US")
        .then(_pick(ZONES["US"], pl.col("spread")))
        .otherwise(_pick(ZONES["UK"], pl.col("spread")))
    )
    second = (pl.col("jurisdiction") == "US") & (pl.col("spread") % 100 < 3)
    planned = base.select(
        key=pl.format("K{}", pl.col("i")),
        account_id=pl.format("A{}-{}", pl.col("c"), pl.col("i") % 2),
        customer_id=pl.format("C{}", pl.col("c")),
        jurisdiction="jurisdiction",
        timezones=pl.when(second)
        .then(pl.concat_list(zone, pl.lit("America/Los_Angeles")))
        .otherwise(pl.concat_list(zone)),
        channel=_pick(CHANNELS, pl.col("i") * 7 + pl.col("c")),
        kind=_pick(KINDS, pl.col("i") * 13),
        stage=pl.lit("M1"),
        action=pl.lit("remind"),
        planned_on=pl.lit(AS_OF),
        scheduled_at=pl.lit(dt.datetime.combine(AS_OF, dt.time(), tzinfo=dt.UTC))
        + pl.duration(minutes=(pl.col("i") * 37) % 1440),
        priority=(pl.col("i") % 5).cast(pl.Int32),
        third_party=pl.col("c") % 7 == 0,
    ).cast(pl.Schema(PLANNED))

    customers = base.filter(pl.col("i") % 2 == 0).select(
        "c", "spread", customer_id=pl.format("C{}", pl.col("c"))
    )
    held = customers.filter(pl.col("spread") % 20 == 0)
    holds = (
        held.select(
            scope=_pick(["customer", "account", "channel"], pl.col("c")),
            customer_id="customer_id",
            account_id=pl.format("A{}-0", pl.col("c")),
            channel=pl.lit("sms"),
            kind=_pick(HOLD_KINDS, pl.col("c") // 3),
            starts_on=pl.lit(AS_OF)
            - pl.duration(days=pl.col("c") % 30)
            + pl.duration(days=(pl.col("c") % 11 == 0).cast(pl.Int64) * 40),
            ends_on=pl.when(pl.col("c") % 4 == 0)
            .then(pl.lit(AS_OF) - pl.duration(days=1))
            .otherwise(pl.lit(None, pl.Date)),
        )
        .with_columns(
            account_id=pl.when(pl.col("scope") == "account").then("account_id"),
            channel=pl.when(pl.col("scope") == "channel").then("channel"),
            kind=pl.when(pl.col("scope") == "channel").then(pl.lit("opt_out")).otherwise("kind"),
        )
        .cast(pl.Schema(HOLDS))
    )
    contacts = (
        customers.filter(pl.col("spread") % 5 == 1)
        .select(
            customer_id="customer_id",
            account_id=pl.format("A{}-1", pl.col("c")),
            channel=pl.lit("email"),
            local_day=pl.lit(AS_OF),
            key=pl.format("OUT{}", pl.col("c")),
        )
        .cast(pl.Schema(CONTACTS))
    )
    callers = (
        planned.filter(pl.col("channel") == "call")
        .select("customer_id", "account_id")
        .unique(maintain_order=True)
    )
    callers = callers.with_row_index("n").filter(pl.col("n") % 3 == 0)
    calls = (
        callers.with_columns(made=pl.int_ranges(0, pl.col("n") % 9))
        .explode("made")
        .drop_nulls("made")
        .select(
            "customer_id",
            "account_id",
            number=pl.format("N{}", pl.col("made") % 2),
            at=pl.lit(dt.datetime.combine(AS_OF, dt.time(1), tzinfo=dt.UTC))
            - pl.duration(hours=pl.col("made") * 19),
            connected=pl.col("made") % 3 != 0,
            conversation=pl.col("made") == 5,
        )
        .cast(pl.Schema(CALLS))
    )
    return planned, holds, contacts, calls


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: kilobytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actions", type=int, default=1_000_000)
    args = parser.parse_args()
    planned, holds, contacts, calls = portfolio(args.actions)
    generated_rss = _peak_rss_mb()
    start = time.perf_counter()
    decisions = govern(planned, holds=holds, contacts=contacts, calls=calls, as_of=AS_OF, policy=Policy())
    seconds = time.perf_counter() - start
    verdicts = dict(decisions.group_by("verdict").len().sort("verdict").iter_rows())
    rules = dict(decisions.group_by("rule_id").len().sort("len", descending=True).iter_rows())
    print(
        json.dumps(
            {
                "actions": planned.height,
                "customers": planned["customer_id"].n_unique(),
                "holds": holds.height,
                "contacts": contacts.height,
                "calls": calls.height,
                "seconds": round(seconds, 2),
                "actions_per_second": round(planned.height / seconds),
                "peak_rss_mb_after_generation": generated_rss,
                "peak_rss_mb": _peak_rss_mb(),
                "verdicts": verdicts,
                "rules": rules,
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "cpus": os.cpu_count(),
                "polars_threads": pl.thread_pool_size(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
