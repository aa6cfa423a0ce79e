"""The compliance governor: every contact planned for a day passes here before it reaches the outbox.

``govern(planned, holds=..., contacts=..., calls=..., as_of=...)`` gives each planned message one decision:
``planned`` (it goes at its time), ``deferred`` (it goes later: the time is moved to the next moment the
rules allow) or ``suppressed`` (it does not go), with the rule that decided, its citation, a reason in
plain words and, as JSON, the values the rules looked at. The lead's daily run stores the decisions
beside the outbox, so that "why did (not) this customer hear from us?" has an answer for any day.

The rules, checked in this order (the order is the only thing fixed here; every number, window, rule id
and citation comes from the jurisdiction's rule pack, ``rulepacks/{cn,us,uk}.toml``):

1. **Holds** in force on ``as_of`` (``starts_on <= as_of <= ends_on``, an open end for ``ends_on`` null),
   of the customer, the account or the channel. A stopping hold (``STOPPING_HOLDS``) stops every kind but
   the answers to the customer (``ANSWER_KINDS``: a dispute acknowledgement must still go), and an
   arrangement (a promise, a plan), a lawsuit (``litigation``) or a judgment not the notices due during
   one (``NOTICES_WHILE_PAUSED``: the UK arrears notice, CCA s86B: the statutory planning plans only what
   the law wants after a judgment, the first notice of an episode that triggered before it); a hold on a
   channel (``opt_out``, per channel) closes that medium for everything, answers included; a
   ``vulnerability`` hold stops the automated pressure (``REMINDER_KINDS`` on e-mail, SMS, push and
   calls) while letters and required notices still go. Suppressed. An ``opt_out`` without a channel
   (on the customer or an account) closes every channel of its scope; a hold of a kind nobody classified
   stops nothing unless it is on a channel, as in the dispatcher's re-check.
2. **Contact hours** of the pack (``[contact_hours]``; letters are exempt), in every zone the customer may
   be in: the allowed window is the intersection of each zone's window (US-TIME-01). Outside it, the
   message is deferred to the next instant inside it in all the zones; when the zones' windows never
   overlap, suppressed (waiting would never end).
3. **Calls** (``[[call_caps]]``, ``[call_quiet]``): at most ``limit`` calls in any ``days`` consecutive
   local days per debtor, debt or number (CN-COL-08: 3 connected calls a day per debtor; CN-COL-10: 6
   dials a day per number; US-FREQ-01: 7 calls in 7 days per debt), and none within ``days`` days of a
   telephone conversation about the debt, its day being day 1 (E-US-3). A call over a cap is deferred to
   the first day it is allowed, at the start of that day's window.
4. **The daily cap** (``Policy.daily_contacts_per_customer``, ``[daily_cap]``): messages other than
   letters per customer per local day, across all their accounts, counting the outbox's messages of that
   day first. Answers, required notices (``NOTICE_KINDS``) and the pack's statutory kinds are never held
   back but count. Over the cap: deferred to the start of the next day's window.

A suppression ends the checks. A deferral does not: the moved message is checked by the rules after it
at its new time (a 22:30 reminder moved to 08:00 must still respect the next day's cap). The decision
names the rule that set the final time; its reason tells each move ("...; then ...").

How it is computed (whole columns, no Python loop over messages):

- **Time zones** are few, so each conversion is one ``dt.convert_time_zone`` per zone over that zone's
  rows. The windows are a small table built once per run: for each distinct (jurisdiction, list of zones)
  and each local day around ``as_of``, the window's start and end as UTC instants
  (``dt.replace_time_zone``: a start in a spring-forward gap moves on by the gap, 02:30 -> 03:30, as
  ``ContactHours.next_allowed`` does; on a fall-back night the start takes the later and the end the
  earlier of the two readings), intersected zone by zone. The next allowed instant of a message is one
  ``join_asof`` (forward, by the zones) on the windows' ends.
- **Local days** (of the call caps and the daily cap) are the days of the customer's first zone: its
  window lies inside one of its local days, so each window belongs to one day.
- **Holds** are joined by customer (holds are few), filtered by scope and kind, the gravest kept.
- **Calls** in the same run count against each other in priority order: the calls of each customer are
  taken in rounds (every customer's first call, then every second call, ...: one set operation per
  round; a customer rarely has more than one call a day). A call's first allowed day under a cap of
  ``limit`` in ``days`` is ``max(day, a + days)`` where ``a`` is the day of the ``limit``-th latest call
  counted before it, and never before a call decided earlier in the run. A planned call counts in every
  cap as a call that connected (nobody knows yet how it will end), but it does not start the quiet days
  of a conversation: the call queue checks that rule again before each dial. The planned frame carries
  no telephone number, so a planned call counts against every number of the customer (the busiest one
  decides). A call the daily cap then moves to a later day is not counted again by the call caps; that
  can only matter when one debt has more calls in one run than a cap allows.
- **The daily cap** ranks each customer's messages of a day (required kinds first, so that the cap holds
  whenever it can, then priority, then key) after the outbox's messages of that day; the ones over the
  cap move to the next day's window and queue there behind what is already on that day, until each
  finds room (one set operation per day moved, a few at most).
- **Texts** (reasons, ``seen``) are written once per message, each only for the rows it describes; the
  ranking and the moves sort integers (customer and key are numbered once, ``_numbered``).

The clock is never read: ``as_of`` and the frames are the only inputs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import polars as pl

from duecourse.channels.dispatch import (
    ANSWER_KINDS,
    NOTICE_KINDS,
    NOTICES_WHILE_PAUSED,
    PAUSING_HOLDS,
    REMINDER_KINDS,
    STOPPING_HOLDS,
)
from duecourse.domain.errors import DuecourseError
from duecourse.rulepacks.packs import JURISDICTIONS, CallCap, CallQuiet, GovernorPack, governor_pack

RULE_ALLOWED = "ALLOWED"
LETTER = "letter"
CALL = "call"
# The channels of messages: what the contact hours, the caps and the daily cap are about (letters are not).
MESSAGE_CHANNELS: tuple[str, ...] = ("email", "sms", "push", "call")
CHANNELS: tuple[str, ...] = (LETTER, *MESSAGE_CHANNELS)
OPT_OUT = "opt_out"
VULNERABILITY = "vulnerability"

PLANNED: dict[str, pl.DataType] = {
    "key": pl.String(),
    "account_id": pl.String(),
    "customer_id": pl.String(),
    "jurisdiction": pl.String(),
    "timezones": pl.List(pl.String()),
    "channel": pl.String(),
    "kind": pl.String(),
    "stage": pl.String(),
    "action": pl.String(),
    "planned_on": pl.Date(),
    "scheduled_at": pl.Datetime("us", "UTC"),
    "priority": pl.Int32(),
    "third_party": pl.Boolean(),
}
HOLDS: dict[str, pl.DataType] = {
    "scope": pl.String(),
    "customer_id": pl.String(),
    "account_id": pl.String(),  # null unless scope = account
    "channel": pl.String(),  # null unless scope = channel
    "kind": pl.String(),
    "starts_on": pl.Date(),
    "ends_on": pl.Date(),  # null: until lifted
}
CONTACTS: dict[str, pl.DataType] = {
    "customer_id": pl.String(),
    "account_id": pl.String(),
    "channel": pl.String(),
    "local_day": pl.Date(),
    "key": pl.String(),
}
CALLS: dict[str, pl.DataType] = {
    "customer_id": pl.String(),
    "account_id": pl.String(),
    "number": pl.String(),
    "at": pl.Datetime("us", "UTC"),
    "connected": pl.Boolean(),
    "conversation": pl.Boolean(),
}
DECISIONS: dict[str, pl.DataType] = {
    "key": pl.String(),
    "verdict": pl.String(),
    "scheduled_at": pl.Datetime("us", "UTC"),  # null when suppressed
    "rule_id": pl.String(),
    "citation": pl.String(),
    "reason": pl.String(),
    "seen": pl.String(),  # a JSON object
}


@dataclass(frozen=True, slots=True)
class Policy:
    """The institution's own settings (``duecourse.toml``), on top of what the law requires.

    Attributes:
        daily_contacts_per_customer: messages (e-mail, SMS, push, call; letters excluded) per customer per
            local day, across all their accounts: one coordinated contact, not one per card and loan.
        us_creditor_calls_capped: apply the pack's third-party call caps (US-FREQ-01: Reg F binds debt
            collectors) to the institution's own accounts too, as banks often do.
    """

    daily_contacts_per_customer: int = 1
    us_creditor_calls_capped: bool = True


class GovernorError(DuecourseError):
    """The governor's input is unusable (a missing column, a duplicate key, an unknown jurisdiction, ...).

    Raised before any decision is made: a run must not half-govern its messages.
    """


def govern(
    planned: pl.DataFrame,
    *,
    holds: pl.DataFrame,
    contacts: pl.DataFrame,
    calls: pl.DataFrame,
    as_of: dt.date,
    policy: Policy = Policy(),
) -> pl.DataFrame:
    """One decision (``DECISIONS``) per planned message, in the order of ``planned``."""
    problems: list[str] = []
    planned = _conform(planned, PLANNED, "planned", problems)
    holds = _conform(holds, HOLDS, "holds", problems)
    contacts = _conform(contacts, CONTACTS, "contacts", problems)
    calls = _conform(calls, CALLS, "calls", problems)
    if policy.daily_contacts_per_customer < 1:
        problems.append("policy: daily_contacts_per_customer must be at least 1")
    if not problems:
        problems.extend(_check_planned(planned))
    if problems:
        raise GovernorError("; ".join(problems))
    if planned.is_empty():
        return pl.DataFrame(schema=DECISIONS)
    packs = _packs(sorted(planned["jurisdiction"].unique().to_list()))
    rows = _numbered(planned)

    held = _hold_decisions(rows, holds, as_of, packs)
    messages = rows.join(held.select("_row"), on="_row", how="anti").filter(pl.col("channel") != LETTER)
    windows = _Windows.build(messages, packs, contacts, as_of)
    # each step's input is let go as soon as the next has its output: a million rows of text add up
    timed, closed = _contact_hours(messages, windows, packs)
    del messages
    called = _call_caps(timed, calls, packs, policy, windows)
    del timed
    capped = _daily_cap(called, contacts, packs, policy, windows)
    del called
    return _decisions(rows, held, closed, capped)


# ---------------------------------------------------------------------------------------------- input
def _conform(
    frame: pl.DataFrame, schema: Mapping[str, pl.DataType], name: str, problems: list[str]
) -> pl.DataFrame:
    """``frame`` with exactly the columns of ``schema`` in its types; what cannot be made so goes to
    ``problems``. Instants must be UTC already: a naive time would be a guess about its zone."""
    missing = [column for column in schema if column not in frame.columns]
    if missing:
        problems.append(f"{name}: missing column(s) {', '.join(missing)}")
        return pl.DataFrame(schema=dict(schema))
    columns: list[pl.Series] = []
    for column, dtype in schema.items():
        series = frame.get_column(column)
        if series.dtype == dtype:
            columns.append(series)
        elif series.dtype == pl.Null() or series.is_empty():  # an empty or all-null column takes the type
            columns.append(series.cast(dtype))
        elif isinstance(dtype, pl.Datetime):  # a naive instant (or another zone's) is refused, not guessed
            problems.append(f"{name}.{column}: expected {dtype}, got {series.dtype}")
        else:
            try:
                columns.append(series.cast(dtype, strict=True))
            except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError):
                problems.append(f"{name}.{column}: expected {dtype}, got {series.dtype}")
    if len(columns) != len(schema):
        return pl.DataFrame(schema=dict(schema))
    return pl.DataFrame(columns)


def _check_planned(planned: pl.DataFrame) -> list[str]:
    """What makes the planned frame ungovernable, every problem at once."""
    problems: list[str] = []
    required = [c for c in PLANNED if c not in ("stage", "action", "planned_on")]
    nulls = planned.select(pl.col(required).null_count()).row(0, named=True)
    problems.extend(f"planned.{column}: {count} null value(s)" for column, count in nulls.items() if count)
    duplicated = planned.filter(pl.col("key").is_duplicated())["key"].unique().sort().head(5).to_list()
    if duplicated:
        problems.append(f"planned.key: duplicate key(s) {', '.join(duplicated)}")
    unknown = _unknown(planned["jurisdiction"], JURISDICTIONS)
    if unknown:
        problems.append(f"planned.jurisdiction: no rule pack for {', '.join(unknown)}")
    unknown = _unknown(planned["channel"], CHANNELS)
    if unknown:
        problems.append(
            f"planned.channel: unknown channel(s) {', '.join(unknown)} (known: {', '.join(CHANNELS)})"
        )
    if planned.filter(pl.col("timezones").list.len() == 0).height:
        problems.append("planned.timezones: a customer without a time zone cannot be given contact hours")
    return problems


def _numbered(planned: pl.DataFrame) -> pl.DataFrame:
    """``planned`` with its row number, and numbers for the customer and the key, so that every later
    sort and grouping is on integers (sorting a million text keys again at every step costs seconds)."""
    return planned.with_row_index("_row").with_columns(
        _cust=pl.col("customer_id").rank("dense").cast(pl.UInt32),
        _krank=pl.col("key").rank("ordinal").cast(pl.UInt32),
    )


def _unknown(values: pl.Series, known: Iterable[str]) -> list[str]:
    return sorted(set(values.drop_nulls().unique().to_list()) - set(known))


def _packs(jurisdictions: Sequence[str]) -> dict[str, GovernorPack]:
    """The packs of the run's jurisdictions; each must say how it cites every hold kind that stops."""
    packs = {j: governor_pack(j) for j in jurisdictions}
    for jurisdiction, pack in packs.items():
        missing = sorted((STOPPING_HOLDS | {OPT_OUT}) - {rule.kind for rule in pack.holds})
        if missing:
            raise GovernorError(
                f"rulepacks/{jurisdiction.lower()}.toml: no [[holds]] entry for {', '.join(missing)}"
            )
        if pack.hours.end <= pack.hours.start:
            raise GovernorError(
                f"rulepacks/{jurisdiction.lower()}.toml: [contact_hours] must end after it starts"
            )
    return packs


# ---------------------------------------------------------------------------------------------- holds
def _hold_decisions(
    rows: pl.DataFrame, holds: pl.DataFrame, as_of: dt.date, packs: Mapping[str, GovernorPack]
) -> pl.DataFrame:
    """The rows a hold in force on ``as_of`` suppresses: ``_row, rule_id, citation, reason, seen``."""
    in_force = holds.filter(
        (pl.col("starts_on") <= as_of) & (pl.col("ends_on").is_null() | (pl.col("ends_on") >= as_of))
    ).rename({"account_id": "hold_account", "channel": "hold_channel", "kind": "hold_kind"})
    if in_force.is_empty():
        return _empty_suppressions()
    cited = pl.DataFrame(
        [
            {
                "jurisdiction": j,
                "hold_kind": rule.kind,
                "gravity": n,
                "hold_rule": rule.rule,
                "hold_cite": rule.citation,
            }
            for j, pack in packs.items()
            for n, rule in enumerate(pack.holds)
        ],
        schema={
            "jurisdiction": pl.String(),
            "hold_kind": pl.String(),
            "gravity": pl.Int32(),
            "hold_rule": pl.String(),
            "hold_cite": pl.String(),
        },
    )
    opt_out = cited.filter(pl.col("hold_kind") == OPT_OUT).select(
        "jurisdiction", pl.col("hold_rule").alias("opt_rule"), pl.col("hold_cite").alias("opt_cite")
    )
    scope, kind, channel = pl.col("scope"), pl.col("hold_kind"), pl.col("channel")
    in_scope = (
        (scope == "customer")
        | ((scope == "account") & (pl.col("hold_account") == pl.col("account_id")))
        | (scope == "channel")
    ) & (pl.col("hold_channel").is_null() | (pl.col("hold_channel") == channel))
    effect = (
        pl.when(kind == OPT_OUT)
        .then(pl.lit("opt_out"))
        .when(scope == "channel")
        .then(pl.lit("channel"))
        .when((kind == VULNERABILITY) & pl.col("kind").is_in(sorted(REMINDER_KINDS)) & (channel != LETTER))
        .then(pl.lit("vulnerability"))
        .when(
            kind.is_in(sorted(STOPPING_HOLDS - {VULNERABILITY}))
            & ~pl.col("kind").is_in(sorted(ANSWER_KINDS))
            & ~(kind.is_in(sorted(PAUSING_HOLDS)) & pl.col("kind").is_in(sorted(NOTICES_WHILE_PAUSED)))
        )
        .then(pl.lit("stop"))
    )
    matched = (
        rows.select("_row", "customer_id", "account_id", "channel", "kind", "jurisdiction")
        .join(in_force, on="customer_id", how="inner")
        .filter(in_scope)
        .with_columns(effect=effect)
        .filter(pl.col("effect").is_not_null())
    )
    if matched.is_empty():
        return _empty_suppressions()
    matched = (
        matched.join(cited, on=["jurisdiction", "hold_kind"], how="left")
        .join(opt_out, on="jurisdiction", how="left")
        .with_columns(
            pl.col("gravity").fill_null(len(STOPPING_HOLDS) + 100),
            applying=pl.len().over("_row"),
            # a hold of a kind the pack does not name can only close a channel: cite it as an opt-out
            rule_id=pl.coalesce("hold_rule", "opt_rule"),
            citation=pl.coalesce("hold_cite", "opt_cite"),
        )
        .sort("_row", "gravity", "starts_on", "scope")
        .unique(subset="_row", keep="first", maintain_order=True)
    )
    span = pl.format(
        "from {}{}",
        pl.col("starts_on").cast(pl.String),
        pl.when(pl.col("ends_on").is_null())
        .then(pl.lit(" until lifted"))
        .otherwise(pl.format(" to {}", pl.col("ends_on").cast(pl.String))),
    )
    target = (
        pl.when(scope == "customer")
        .then(pl.format("customer {}", pl.col("customer_id")))
        .when(scope == "account")
        .then(pl.format("account {}", pl.col("account_id")))
        .otherwise(pl.format("customer {}'s {}", pl.col("customer_id"), pl.col("hold_channel")))
    )
    what = (
        pl.when(pl.col("effect") == "channel")
        .then(pl.format("{} is closed for this customer; nothing is sent by it, answers included", channel))
        .when((pl.col("effect") == "opt_out") & pl.col("hold_channel").is_null())
        .then(pl.lit("the customer asked not to be contacted; nothing is sent"))
        .when(pl.col("effect") == "opt_out")
        .then(pl.format("the customer opted out of {}; nothing is sent by it", channel))
        .when(pl.col("effect") == "vulnerability")
        .then(
            pl.format(
                "no automated reminders to a customer in a vulnerable situation ({} by {}); "
                "letters and required notices still go",
                pl.col("kind"),
                channel,
            )
        )
        .otherwise(
            pl.format("collection contact stops ({} is not an answer to the customer)", pl.col("kind"))
        )
    )
    seen = pl.struct(
        kind=kind,
        scope=scope,
        account_id=pl.col("hold_account"),
        channel=pl.col("hold_channel"),
        starts_on=pl.col("starts_on").cast(pl.String),
        ends_on=pl.col("ends_on").cast(pl.String),
        holds_applying=pl.col("applying"),
    ).struct.json_encode()
    return matched.select(
        "_row",
        "rule_id",
        "citation",
        reason=pl.format("on hold: {} on {} ({}): {}", kind, target, span, what),
        seen=pl.format('{{"hold":{}}}', seen),
    )


def _empty_suppressions() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "_row": pl.UInt32(),
            "rule_id": pl.String(),
            "citation": pl.String(),
            "reason": pl.String(),
            "seen": pl.String(),
        }
    )


# ----------------------------------------------------------------------------------------------- time
def _wall_to_instant(naive: pl.Expr, zone: str, ambiguous: Literal["earliest", "latest"]) -> pl.Expr:
    """The UTC instant of a local wall time in ``zone``; one skipped by a spring-forward is read with the
    offset before the gap, so it moves on by the gap (02:30 -> 03:30), as Python's ``fold=0`` does."""
    direct = naive.dt.replace_time_zone(zone, ambiguous=ambiguous, non_existent="null")
    before = (naive - pl.duration(days=1)).dt.replace_time_zone(
        zone, ambiguous=ambiguous, non_existent="null"
    )
    return pl.coalesce(
        direct.dt.convert_time_zone("UTC"), before.dt.convert_time_zone("UTC") + pl.duration(days=1)
    )


def _in_zones(frame: pl.DataFrame, instant: str) -> pl.DataFrame:
    """``instant`` of each row seen in each of its zones: ``_row, pos, zone, date, stamp`` (one conversion
    per zone; ``stamp`` reads like 2026-03-08 21:30 EDT)."""
    known = frame.filter(pl.col(instant).is_not_null())
    count = pl.col("timezones").list.len()
    exploded = pl.concat(
        [
            known.filter(count == 1).select(
                "_row", instant, zone=pl.col("timezones").list.first(), pos=pl.lit(0, pl.Int64)
            ),
            known.filter(count > 1)
            .select("_row", instant, zone=pl.col("timezones"), pos=pl.int_ranges(0, count))
            .explode(["zone", "pos"]),
        ]
    )
    parts = []
    for (zone,), part in exploded.partition_by("zone", as_dict=True).items():
        local = pl.col(instant).dt.convert_time_zone(str(zone))
        parts.append(
            part.select(
                "_row", "pos", "zone", date=local.dt.date(), stamp=local.dt.strftime("%Y-%m-%d %H:%M %Z")
            )
        )
    if not parts:
        return pl.DataFrame(
            schema={
                "_row": pl.UInt32(),
                "pos": pl.Int64(),
                "zone": pl.String(),
                "date": pl.Date(),
                "stamp": pl.String(),
            }
        )
    return pl.concat(parts)


def _local(frame: pl.DataFrame, instant: str) -> pl.DataFrame:
    """How ``instant`` reads for the customer: ``_row``, ``date`` (in the first zone), ``stamp`` (the first
    zone's date and time, the others' times after it), ``clocks`` ("21:30 in America/New_York, ...") and
    ``local_json`` (a JSON object zone -> local time; IANA names and stamps need no escaping)."""
    seen = _in_zones(frame, instant)
    first = seen.filter(pl.col("pos") == 0).select(
        "_row",
        "date",
        zone0="zone",
        stamp0="stamp",
        clock0=pl.format("{} in {}", pl.col("stamp").str.slice(11, 5), pl.col("zone")),
        json0=pl.format('"{}":"{}"', pl.col("zone"), pl.col("stamp")),
    )
    others = (
        seen.filter(pl.col("pos") > 0)
        .sort("_row", "pos")
        .group_by("_row", maintain_order=True)
        .agg(
            stamps=pl.format("{} in {}", pl.col("stamp").str.slice(11), pl.col("zone")).str.join(", "),
            clocks=pl.format("{} in {}", pl.col("stamp").str.slice(11, 5), pl.col("zone")).str.join(", "),
            json=pl.format('"{}":"{}"', pl.col("zone"), pl.col("stamp")).str.join(","),
        )
    )
    if others.height:
        multiple = first.join(others, on="_row", how="semi")
        joined = pl.concat(
            [
                first.join(others, on="_row", how="anti").with_columns(
                    stamps=pl.lit(None, pl.String),
                    clocks=pl.lit(None, pl.String),
                    json=pl.lit(None, pl.String),
                ),
                multiple.join(others, on="_row"),
            ]
        )
    else:
        joined = first.with_columns(
            stamps=pl.lit(None, pl.String), clocks=pl.lit(None, pl.String), json=pl.lit(None, pl.String)
        )
    multi = pl.col("stamps").is_not_null()
    return joined.select(
        "_row",
        "date",
        stamp=pl.when(multi)
        .then(pl.format("{} in {} ({})", pl.col("stamp0"), pl.col("zone0"), pl.col("stamps")))
        .otherwise(pl.col("stamp0")),
        clocks=pl.when(multi)
        .then(pl.format("{}, {}", pl.col("clock0"), pl.col("clocks")))
        .otherwise("clock0"),
        local_json=pl.when(multi)
        .then(pl.format("{{{},{}}}", pl.col("json0"), pl.col("json")))
        .otherwise(pl.format("{{{}}}", pl.col("json0"))),
        zones=pl.when(multi).then(pl.lit(2)).otherwise(pl.lit(1)),
    )


@dataclass(frozen=True, slots=True)
class _Windows:
    """The allowed windows, as UTC instants, of every (jurisdiction, list of zones) of the run.

    Attributes:
        combos: ``combo, jurisdiction, timezones``, one row per distinct pair in the run.
        spans: ``combo, open, close, day, stamp``: each window (``open`` included, ``close`` excluded),
            sorted by ``close``; ``day`` is the local day of the first zone it lies in, ``stamp`` how its
            start reads in the customer's zones.
        days: ``combo, day, open, stamp``: the first window of each day, sorted by ``day``.
        first, last: the local days covered.
    """

    combos: pl.DataFrame
    spans: pl.DataFrame
    days: pl.DataFrame
    first: dt.date
    last: dt.date

    @staticmethod
    def build(
        messages: pl.DataFrame,
        packs: Mapping[str, GovernorPack],
        contacts: pl.DataFrame,
        as_of: dt.date,
    ) -> _Windows:
        """The windows from two days before the earliest message to far enough after the latest one for
        every deferral: each call of the busiest customer may wait the caps' longest window or quiet days,
        each of its messages one more day for the daily cap, and each day the outbox already fills one."""
        combos = (
            messages.select("jurisdiction", "timezones")
            .unique(maintain_order=True)
            .with_row_index("combo")
            .with_columns(pl.col("combo").cast(pl.UInt32))
        )
        if messages.is_empty():
            start = end = as_of
            reach = 0
        else:
            instants = messages["scheduled_at"]
            start = min(as_of, _utc_date(instants.min()))
            end = max(as_of, _utc_date(instants.max()))
            longest = max(
                [cap.days for pack in packs.values() for cap in pack.call_caps]
                + [pack.call_quiet.days for pack in packs.values() if pack.call_quiet is not None]
                + [1]
            )
            busiest = _count(messages.group_by("customer_id").len()["len"].max())
            filled = contacts.filter(pl.col("local_day") >= start)["local_day"].n_unique()
            reach = longest * (busiest + 1) + busiest + filled + 4
        first, last = start - dt.timedelta(days=2), end + dt.timedelta(days=reach)
        spans = _spans(combos, packs, first, last)
        # how each window's start reads for the customer, once per window rather than once per message
        stamps = _local(
            spans.with_row_index("_row").join(combos.select("combo", "timezones"), on="combo"), "open"
        ).select("_row", "stamp")
        spans = spans.with_row_index("_row").join(stamps, on="_row", how="left").drop("_row")
        days = (
            spans.sort("open")
            .group_by("combo", "day", maintain_order=True)
            .agg(pl.col("open").first(), pl.col("stamp").first())
            .sort("day")
        )
        return _Windows(combos, spans.sort("close"), days, first, last)

    def attach(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``frame`` with the ``combo`` of its rows."""
        return frame.join(self.combos, on=["jurisdiction", "timezones"], how="left")

    def next_open(self, frame: pl.DataFrame, instant: str) -> pl.DataFrame:
        """``frame`` with ``open, close, window_day, open_stamp``: the window holding ``instant`` or the first
        after it (null when none: the zones' windows never overlap)."""
        probe = frame.sort(instant).join_asof(
            self.spans.select("combo", "open", "close", window_day="day", open_stamp="stamp"),
            left_on=instant,
            right_on="close",
            by="combo",
            strategy="forward",
            allow_exact_matches=False,  # ``close`` is outside: 22:00 is the next day's business
            check_sortedness=False,  # sorted above; a check cannot see inside the ``by`` groups
        )
        return probe

    def first_on_or_after(self, frame: pl.DataFrame, day: str) -> pl.DataFrame:
        """``frame`` with ``to_open, to_day, to_stamp``: the first window on ``day`` or later."""
        found = frame.sort(day).join_asof(
            self.days.select("combo", to_open="open", to_day="day", to_stamp="stamp"),
            left_on=day,
            right_on="to_day",
            by="combo",
            strategy="forward",
            coalesce=False,
            check_sortedness=False,
        )
        beyond = found.filter(pl.col(day).is_not_null() & pl.col("to_open").is_null())
        if beyond.height:
            raise GovernorError(
                f"internal: no contact window on or after {beyond[day].min()!s} "
                f"within {self.first}..{self.last}"
            )
        return found


def _count(value: object) -> int:
    """A whole number out of a column's ``max()`` (null: an empty column, 0)."""
    return value if isinstance(value, int) else 0


def _utc_date(value: object) -> dt.date:
    if not isinstance(value, dt.datetime):
        raise GovernorError("planned.scheduled_at: expected instants")
    return value.astimezone(dt.UTC).date()


def _spans(
    combos: pl.DataFrame, packs: Mapping[str, GovernorPack], first: dt.date, last: dt.date
) -> pl.DataFrame:
    """Each combo's windows: each zone's window on each local day, intersected zone by zone."""
    schema = {
        "combo": pl.UInt32(),
        "day": pl.Date(),
        "open": pl.Datetime("us", "UTC"),
        "close": pl.Datetime("us", "UTC"),
    }
    if combos.is_empty():
        return pl.DataFrame(schema=schema)
    zones = combos.select(
        "combo",
        "jurisdiction",
        zone=pl.col("timezones"),
        pos=pl.int_ranges(0, pl.col("timezones").list.len()),
    ).explode(["zone", "pos"])
    days = pl.DataFrame({"day": pl.date_range(first, last, eager=True)})
    parts = []
    # one small frame per (jurisdiction, zone): a dozen at most, each a few dozen days
    for jurisdiction, zone in (
        zones.select("jurisdiction", "zone").unique().sort("jurisdiction", "zone").iter_rows()
    ):
        hours = packs[jurisdiction].hours
        parts.append(
            days.select(
                pl.lit(jurisdiction).alias("jurisdiction"),
                pl.lit(zone).alias("zone"),
                "day",
                open=_wall_to_instant(pl.col("day").dt.combine(hours.start), zone, "latest"),
                close=_wall_to_instant(pl.col("day").dt.combine(hours.end), zone, "earliest"),
            )
        )
    each = pl.concat(parts)
    spans = zones.filter(pl.col("pos") == 0).join(each, on=["jurisdiction", "zone"]).select(list(schema))
    for pos in range(1, _count(zones["pos"].max()) + 1):
        other = zones.filter(pl.col("pos") == pos).join(each, on=["jurisdiction", "zone"])
        other = other.select("combo", open_b="open", close_b="close")
        involved = spans["combo"].is_in(other["combo"].unique().implode())
        narrowed = (
            spans.filter(involved)
            .join(other, on="combo")
            .with_columns(
                open=pl.max_horizontal("open", "open_b"), close=pl.min_horizontal("close", "close_b")
            )
            .filter(pl.col("open") < pl.col("close"))
            .select(list(schema))
        )
        spans = pl.concat([spans.filter(~involved), narrowed])
    return spans.sort("combo", "open")


# -------------------------------------------------------------------------------------- contact hours
def _contact_hours(
    messages: pl.DataFrame, windows: _Windows, packs: Mapping[str, GovernorPack]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rule 2. The messages with their time after the hours (``at``, ``day``), and the suppressions of
    messages whose zones' windows never overlap."""
    hours = pl.DataFrame(
        [
            {
                "jurisdiction": j,
                "channel": channel,
                "hours_rule": pack.hours.rule,
                "hours_cite": pack.hours.citation,
                "window": pack.hours.describe(),
            }
            for j, pack in packs.items()
            for channel in pack.hours.channels
        ],
        schema={
            "jurisdiction": pl.String(),
            "channel": pl.String(),
            "hours_rule": pl.String(),
            "hours_cite": pl.String(),
            "window": pl.String(),
        },
    )
    framed = windows.next_open(
        windows.attach(messages).join(hours, on=["jurisdiction", "channel"], how="left"), "scheduled_at"
    )
    subject = pl.col("hours_rule").is_not_null()
    never = subject & pl.col("open").is_null()
    outside = subject & pl.col("open").is_not_null() & (pl.col("scheduled_at") < pl.col("open"))
    framed = framed.with_columns(
        at=pl.when(outside).then(pl.col("open")).otherwise(pl.col("scheduled_at")),
        never=never,
        moved=outside,
    )
    local = _local(framed, "scheduled_at")
    framed = framed.join(local, on="_row", how="left")
    framed = framed.with_columns(moved_stamp="open_stamp", moved_day="window_day")

    closed = framed.filter(pl.col("never")).select(
        "_row",
        rule_id="hours_rule",
        citation="hours_cite",
        reason=pl.format(
            "contact is allowed {} in every zone the customer may be in, and those windows never overlap "
            "({}): nothing can be sent inside the hours",
            pl.col("window"),
            pl.col("timezones").list.join(", "),
        ),
        seen=pl.format(
            '{{"hours":{{"rule":"{}","window":"{}","local":{}}}}}',
            pl.col("hours_rule"),
            pl.col("window"),
            pl.col("local_json"),
        ),
    )
    hours_seen = (
        pl.when(subject)
        .then(
            pl.format(
                '"hours":{{"rule":"{}","window":"{}","local":{}{}}}',
                pl.col("hours_rule"),
                pl.col("window"),
                pl.col("local_json"),
                pl.when(pl.col("moved"))
                .then(pl.format(',"moved_to":"{}"', pl.col("moved_stamp")))
                .otherwise(pl.lit("")),
            )
        )
        .otherwise(
            pl.format('"hours":{{"exempt_channel":"{}","local":{}}}', pl.col("channel"), pl.col("local_json"))
        )
    )
    single = pl.col("zones") == 1
    hours_reason = pl.when(pl.col("moved")).then(
        pl.when(single)
        .then(
            pl.format(
                "{} is outside {}; moved to {}", pl.col("clocks"), pl.col("window"), pl.col("moved_stamp")
            )
        )
        .otherwise(
            pl.format(
                "{}: not inside {} in every zone the customer may be in; moved to {}",
                pl.col("clocks"),
                pl.col("window"),
                pl.col("moved_stamp"),
            )
        )
    )
    timed = framed.filter(~pl.col("never")).select(
        "_row",
        "_cust",
        "_krank",
        "key",
        "customer_id",
        "account_id",
        "jurisdiction",
        "timezones",
        "combo",
        "channel",
        "kind",
        "priority",
        "third_party",
        "scheduled_at",
        "at",
        day=pl.when(pl.col("moved")).then(pl.col("moved_day")).otherwise(pl.col("date")),
        clocks="clocks",
        window=pl.col("window").fill_null(""),
        hours_moved="moved",
        hours_rule="hours_rule",
        hours_cite="hours_cite",
        hours_reason=hours_reason,
        hours_seen=hours_seen,
    )
    return timed, closed


# --------------------------------------------------------------------------------------------- calls
_CALL_OUT = {
    "_row": pl.UInt32(),
    "calls_at": pl.Datetime("us", "UTC"),
    "calls_day": pl.Date(),
    "calls_rule": pl.String(),
    "calls_cite": pl.String(),
    "calls_reason": pl.String(),
    "calls_note": pl.String(),
    "calls_seen": pl.String(),
}


def _call_caps(
    timed: pl.DataFrame,
    calls: pl.DataFrame,
    packs: Mapping[str, GovernorPack],
    policy: Policy,
    windows: _Windows,
) -> pl.DataFrame:
    """Rule 3. ``timed`` with the calls moved to the first day the call caps allow (``at``, ``day``) and
    the calls' ``calls_*`` columns (null for other channels)."""
    dials = timed.filter(pl.col("channel") == CALL)
    caps = [cap for pack in packs.values() for cap in pack.call_caps]
    quiets = [pack.call_quiet for pack in packs.values() if pack.call_quiet is not None]
    if dials.is_empty() or not (caps or quiets):
        return timed.join(pl.DataFrame(schema=_CALL_OUT), on="_row", how="left")

    history = _call_history(dials, calls)
    numbers = pl.concat(
        [
            history.select("customer_id", "number").unique(),
            dials.select("customer_id", number=pl.lit("*")).unique(),  # a customer with no number dialled yet
        ]
    ).unique()
    dials = (
        dials.sort("_cust", "priority", "_krank")
        .with_columns(round=_position(["_cust"]))
        .with_columns(covered=pl.col("third_party") | pl.lit(policy.us_creditor_calls_capped))
    )
    decided = pl.DataFrame(schema={"customer_id": pl.String(), "account_id": pl.String(), "day": pl.Date()})
    results: list[pl.DataFrame] = []
    for round_number in range(_count(dials["round"].max()) + 1):
        batch = dials.filter(pl.col("round") == round_number)
        limits = [_cap_bounds(batch, history, decided, numbers, order, cap) for order, cap in enumerate(caps)]
        limits += [
            _quiet_bounds(batch, history, len(caps) + order, quiet) for order, quiet in enumerate(quiets)
        ]
        found = _round_decisions(batch, pl.concat([_NO_LIMITS, *limits], how="diagonal_relaxed"), windows)
        results.append(found)
        decided = pl.concat([decided, found.select("customer_id", "account_id", day="calls_day")])
    out = pl.concat(results).select(list(_CALL_OUT))
    return timed.join(out, on="_row", how="left").with_columns(
        at=pl.coalesce("calls_at", "at"), day=pl.coalesce("calls_day", "day")
    )


# The columns of a call's limits (``_cap_bounds``, ``_quiet_bounds``), whichever kinds the packs have.
_NO_LIMITS = pl.DataFrame(
    schema={
        "_row": pl.UInt32(),
        "bound": pl.Date(),
        "counted": pl.Int64(),
        "planned": pl.Int64(),
        "order": pl.Int32(),
        "rule": pl.String(),
        "cite": pl.String(),
        "limit": pl.Int32(),
        "days": pl.Int32(),
        "per": pl.String(),
        "counts": pl.String(),
        "conversation": pl.Date(),
    }
)


def _call_history(dials: pl.DataFrame, calls: pl.DataFrame) -> pl.DataFrame:
    """The past calls of the customers who have a call planned, with their local day in the customer's
    first zone: ``customer_id, account_id, number, day, connected, conversation``."""
    zones = dials.group_by("customer_id").agg(zone=pl.col("timezones").first().list.first())
    known = calls.join(zones, on="customer_id", how="inner")
    parts = [
        part.select(
            "customer_id",
            "account_id",
            "number",
            "connected",
            "conversation",
            day=pl.col("at").dt.convert_time_zone(str(zone)).dt.date(),
        )
        for (zone,), part in known.partition_by("zone", as_dict=True).items()
    ]
    schema = {
        "customer_id": pl.String(),
        "account_id": pl.String(),
        "number": pl.String(),
        "connected": pl.Boolean(),
        "conversation": pl.Boolean(),
        "day": pl.Date(),
    }
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)


def _applies(applies: str) -> pl.Expr:
    return pl.lit(True) if applies == "all" else pl.col("covered")


def _cap_bounds(
    batch: pl.DataFrame,
    history: pl.DataFrame,
    decided: pl.DataFrame,
    numbers: pl.DataFrame,
    order: int,
    cap: CallCap,
) -> pl.DataFrame:
    """For each call of ``batch`` under ``cap``: the first day the cap allows it (``bound``), and what was
    counted in the ``cap.days`` days ending on its day."""
    subject = batch.filter((pl.col("jurisdiction") == cap.jurisdiction) & _applies(cap.applies)).select(
        "_row", "customer_id", "account_id", "day"
    )
    counted = {
        "attempt": pl.lit(True),
        "connected": pl.col("connected"),
        "conversation": pl.col("conversation"),
    }
    past = history.filter(counted[cap.counts]).select(
        "customer_id", "account_id", "number", "day", planned=pl.lit(0)
    )
    earlier = decided.select("customer_id", "account_id", "day", planned=pl.lit(1))
    if cap.per == "customer":
        group = pl.col("customer_id")
        rows, priors = subject.with_columns(group=group), pl.concat([past.drop("number"), earlier])
    elif cap.per == "account":
        group = pl.concat_str("customer_id", "account_id", separator="\x1f")
        rows, priors = subject.with_columns(group=group), pl.concat([past.drop("number"), earlier])
    else:  # number: a planned call's number is not known, so it counts against each of the customer's
        group = pl.concat_str("customer_id", "number", separator="\x1f")
        rows = subject.join(numbers, on="customer_id").with_columns(group=group)
        priors = pl.concat(
            [
                past,
                earlier.join(numbers, on="customer_id").select(
                    "customer_id", "account_id", "number", "day", "planned"
                ),
            ]
        )
    priors = priors.with_columns(group=group).select("group", pl.col("day").alias("prior_day"), "planned")
    priors = priors.join(rows.select("group").unique(), on="group", how="semi")
    stats = priors.group_by("group").agg(
        nth=pl.when(pl.len() >= cap.limit).then(pl.col("prior_day").top_k(cap.limit).min()),
        latest=pl.col("prior_day").max(),
    )
    windowed = (
        rows.join(priors, on="group")
        .filter(
            (pl.col("prior_day") <= pl.col("day"))
            & (pl.col("prior_day") > pl.col("day") - pl.duration(days=cap.days))
        )
        .group_by("_row", "group")
        .agg(counted=pl.len(), planned=pl.col("planned").sum())
        .sort("_row", "counted", descending=[False, True])
        .unique(subset="_row", keep="first", maintain_order=True)
        .select("_row", "counted", "planned")
    )
    bounds = (
        rows.join(stats, on="group", how="left")
        .group_by("_row")
        .agg(bound=pl.max_horizontal(pl.col("nth") + pl.duration(days=cap.days), pl.col("latest")).max())
    )
    return (
        subject.select("_row")
        .join(bounds, on="_row", how="left")
        .join(windowed, on="_row", how="left")
        .with_columns(
            pl.col("counted").fill_null(0).cast(pl.Int64),
            pl.col("planned").fill_null(0).cast(pl.Int64),
            order=pl.lit(order),
            rule=pl.lit(cap.rule),
            cite=pl.lit(cap.citation),
            limit=pl.lit(cap.limit),
            days=pl.lit(cap.days),
            per=pl.lit(cap.per),
            counts=pl.lit(cap.counts),
        )
    )


def _quiet_bounds(batch: pl.DataFrame, history: pl.DataFrame, order: int, quiet: CallQuiet) -> pl.DataFrame:
    """For each call of ``batch`` under the quiet days: the first day after the last conversation about
    its debt (the conversation's day is day 1)."""
    subject = batch.filter((pl.col("jurisdiction") == quiet.jurisdiction) & _applies(quiet.applies))
    talks = (
        history.filter(pl.col("conversation"))
        .group_by("customer_id", "account_id")
        .agg(conversation=pl.col("day").max())
    )
    return (
        subject.select("_row", "customer_id", "account_id")
        .join(talks, on=["customer_id", "account_id"], how="left")
        .select(
            "_row",
            "conversation",
            bound=pl.col("conversation") + pl.duration(days=quiet.days),
            order=pl.lit(order),
            rule=pl.lit(quiet.rule),
            cite=pl.lit(quiet.citation),
            days=pl.lit(quiet.days),
            per=pl.lit("conversation"),
        )
    )


def _round_decisions(batch: pl.DataFrame, limits: pl.DataFrame, windows: _Windows) -> pl.DataFrame:
    """The calls of one round: moved to the first day every cap allows, at that day's first window."""
    bound = limits.group_by("_row").agg(pl.col("bound").max())
    rows = batch.join(bound, on="_row", how="left").with_columns(
        allowed=pl.max_horizontal("day", "bound"),
    )
    late = rows.filter(pl.col("allowed") > pl.col("day"))
    moved = windows.first_on_or_after(late.select("_row", "combo", "allowed"), "allowed").select(
        "_row", "to_open", "to_day", "to_stamp"
    )
    rows = rows.join(moved, on="_row", how="left").with_columns(
        calls_at=pl.coalesce("to_open", "at"), calls_day=pl.coalesce("to_day", "day")
    )
    rows = rows.rename({"to_stamp": "moved_stamp"})

    facts = limits.join(rows.select("_row", "customer_id", "account_id", "day", "allowed"), on="_row")
    binding = (
        facts.filter((pl.col("bound") == pl.col("allowed")) & (pl.col("allowed") > pl.col("day")))
        .sort("_row", "order")
        .unique(subset="_row", keep="first", maintain_order=True)
    )
    is_quiet = pl.col("per") == "conversation"
    counts = (
        pl.when(pl.col("counts") == "attempt")
        .then(pl.lit("dial attempt(s)"))
        .when(pl.col("counts") == "connected")
        .then(pl.lit("connected call(s)"))
        .otherwise(pl.lit("conversation(s)"))
    )
    whom = (
        pl.when(pl.col("per") == "customer")
        .then(pl.format("to customer {}", pl.col("customer_id")))
        .when(pl.col("per") == "account")
        .then(pl.format("about account {}", pl.col("account_id")))
        .otherwise(pl.format("to one of customer {}'s numbers", pl.col("customer_id")))
    )
    period = (
        pl.when(pl.col("days") == 1)
        .then(pl.format("on {}", pl.col("day").cast(pl.String)))
        .otherwise(pl.format("in the {} days to {}", pl.col("days"), pl.col("day").cast(pl.String)))
    )
    earlier = (
        pl.when(pl.col("planned") > 0)
        .then(pl.format(", {} of them planned earlier in this run", pl.col("planned")))
        .otherwise(pl.lit(""))
    )
    why = (
        pl.when(is_quiet)
        .then(
            pl.format(
                "a telephone conversation about account {} on {} (day 1 of {}): no call before {}",
                pl.col("account_id"),
                pl.col("conversation").cast(pl.String),
                pl.col("days"),
                pl.col("allowed").cast(pl.String),
            )
        )
        .otherwise(
            pl.format(
                "{} {} {} {} (limit {}{})", pl.col("counted"), counts, whom, period, pl.col("limit"), earlier
            )
        )
    )
    reasons = binding.select("_row", calls_rule="rule", calls_cite="cite", why=why)
    caps_seen = (
        facts.filter(~is_quiet)
        .sort("_row", "order")
        .group_by("_row", maintain_order=True)
        .agg(
            caps=pl.struct(
                "rule",
                "per",
                "counts",
                "days",
                "limit",
                "counted",
                planned_earlier="planned",
            )
        )
    )
    talks = facts.filter(is_quiet).group_by("_row").agg(last_conversation=pl.col("conversation").max())
    notes = (
        facts.filter(~is_quiet)
        .sort("_row", "order")
        .group_by("_row", maintain_order=True)
        .agg(
            note=pl.format(
                "{} {} of {} ({})", pl.col("counted"), counts, pl.col("limit"), pl.col("rule")
            ).str.join(", ")
        )
    )
    out = (
        rows.join(reasons, on="_row", how="left")
        .join(caps_seen, on="_row", how="left")
        .join(talks, on="_row", how="left")
        .join(notes, on="_row", how="left")
    )
    seen = pl.struct(
        day=pl.col("day").cast(pl.String),
        allowed_from=pl.col("allowed").cast(pl.String),
        caps=pl.col("caps"),
        last_conversation=pl.col("last_conversation").cast(pl.String),
    ).struct.json_encode()
    return out.select(
        "_row",
        "customer_id",
        "account_id",
        "calls_at",
        "calls_day",
        "calls_rule",
        "calls_cite",
        calls_reason=pl.when(pl.col("calls_rule").is_not_null()).then(
            pl.format("{}; moved to {}", pl.col("why"), pl.col("moved_stamp"))
        ),
        calls_note=pl.when(pl.col("note").is_not_null()).then(
            pl.format("calls before it: {}", pl.col("note"))
        ),
        calls_seen=pl.format('"calls":{}', seen),
    )


# ------------------------------------------------------------------------------------------ daily cap
def _daily_cap(
    called: pl.DataFrame,
    contacts: pl.DataFrame,
    packs: Mapping[str, GovernorPack],
    policy: Policy,
    windows: _Windows,
) -> pl.DataFrame:
    """Rule 4. ``called`` with the messages over the daily cap moved to the next day with room
    (``at``, ``day``) and the ``cap_*`` columns."""
    cap = policy.daily_contacts_per_customer
    required = pl.DataFrame(
        [
            {"jurisdiction": j, "kind": kind, "exempt_why": why}
            for j, pack in packs.items()
            for kind, why in [
                *((k, "an answer to the customer") for k in sorted(ANSWER_KINDS)),
                # the pack's own citation first, where it names the kind
                *((k, pack.daily_cap.exempt_citation) for k in pack.daily_cap.exempt_kinds),
                *((k, "a notice the law requires") for k in sorted(NOTICE_KINDS)),
            ]
        ],
        schema={"jurisdiction": pl.String(), "kind": pl.String(), "exempt_why": pl.String()},
    ).unique(subset=["jurisdiction", "kind"], keep="first", maintain_order=True)
    rules = pl.DataFrame(
        [
            {"jurisdiction": j, "cap_rule": p.daily_cap.rule, "cap_cite": p.daily_cap.citation}
            for j, p in packs.items()
        ],
        schema={"jurisdiction": pl.String(), "cap_rule": pl.String(), "cap_cite": pl.String()},
    )
    outbox = (
        contacts.filter(pl.col("channel").is_in(MESSAGE_CHANNELS))
        .join(called.select("key"), on="key", how="anti")  # a planned message already there is itself
        .join(called.select("customer_id", "_cust").unique(), on="customer_id")
        .group_by("_cust", day="local_day")
        .agg(outbox=pl.len().cast(pl.Int64))
    )
    # the ranking moves only numbers: the texts of the earlier rules stay in ``called`` until the end
    ranked = (
        called.select("_row", "_cust", "_krank", "priority", "day", "at", "combo", "jurisdiction", "kind")
        .join(required, on=["jurisdiction", "kind"], how="left")
        .with_columns(exempt=pl.col("exempt_why").is_not_null())
        .sort(["_cust", "day", "exempt", "priority", "_krank"], descending=[False, False, True, False, False])
        .with_columns(earlier=_position(["_cust", "day"]))
        .join(outbox, on=["_cust", "day"], how="left")
        .with_columns(pl.col("outbox").fill_null(0))
        .with_columns(
            over=~pl.col("exempt") & (pl.col("outbox") + pl.col("earlier") >= cap),
            first_day="day",
            cap_moves=pl.lit(0, pl.Int64),
            cap_stamp=pl.lit(None, pl.String),
        )
    )
    settled = ranked.filter(~pl.col("over"))
    taken = (
        pl.concat([outbox, settled.group_by("_cust", "day").agg(outbox=pl.len().cast(pl.Int64))])
        .group_by("_cust", "day")
        .agg(taken=pl.col("outbox").sum())
    )
    carried = ranked.filter(pl.col("over"))
    done = [settled]
    while carried.height:
        # the moves are bounded by the windows' reach (first_on_or_after raises past it)
        carried = (
            windows.first_on_or_after(
                carried.with_columns(next_day=pl.col("day") + pl.duration(days=1)), "next_day"
            )
            .with_columns(at="to_open", day="to_day", cap_stamp="to_stamp", cap_moves=pl.col("cap_moves") + 1)
            .drop("to_open", "to_day", "to_stamp", "next_day")
            .sort("_cust", "day", "priority", "_krank")
            .with_columns(queue=_position(["_cust", "day"]))
            .join(taken, on=["_cust", "day"], how="left")
            .with_columns(fits=pl.col("taken").fill_null(0) + pl.col("queue") < cap)
        )
        landed = carried.filter(pl.col("fits"))
        done.append(landed.drop("queue", "taken", "fits"))
        taken = (
            pl.concat([taken, landed.group_by("_cust", "day").agg(taken=pl.len().cast(pl.Int64))])
            .group_by("_cust", "day")
            .agg(pl.col("taken").sum())
        )
        carried = carried.filter(~pl.col("fits")).drop("queue", "taken", "fits")
    placed = pl.concat(done, how="diagonal_relaxed").join(rules, on="jurisdiction", how="left")

    first_day = pl.col("first_day").cast(pl.String)
    before = pl.col("outbox") + pl.col("earlier")
    # numbers, a date and a flag: written directly (a JSON encoder per row costs more than the rest)
    seen = pl.format(
        '"daily_cap":{{"day":"{}","limit":{},"outbox":{},"earlier_in_run":{},"exempt":{},"days_moved":{}}}',
        first_day,
        pl.lit(cap),
        pl.col("outbox"),
        pl.col("earlier"),
        pl.when(pl.col("exempt")).then(pl.lit("true")).otherwise(pl.lit("false")),
        pl.col("cap_moves"),
    )
    # each text is written only for the rows it describes (a when/then would write every branch for all)
    moved = placed.filter(pl.col("cap_moves") > 0).join(called.select("_row", "customer_id"), on="_row")
    moved = moved.select(
        "_row",
        cap_rule="cap_rule",
        cap_cite="cap_cite",
        cap_reason=pl.format(
            "customer {} already has {} message(s) on {} ({} in the outbox, {} earlier in this run; "
            "policy: {} a day){}; moved to {}",
            pl.col("customer_id"),
            before,
            first_day,
            pl.col("outbox"),
            pl.col("earlier"),
            pl.lit(cap),
            pl.when(pl.col("cap_moves") > 1)
            .then(pl.format(" (the next {} day(s) were full too)", pl.col("cap_moves") - 1))
            .otherwise(pl.lit("")),
            pl.col("cap_stamp"),
        ),
        cap_note=pl.lit(None, pl.String),
        cap_seen=seen,
    )
    exempt = placed.filter(pl.col("exempt")).select(
        "_row",
        cap_rule=pl.lit(None, pl.String),
        cap_cite=pl.lit(None, pl.String),
        cap_reason=pl.lit(None, pl.String),
        cap_note=pl.format(
            "{} is {} ({}): not held back by the daily cap, counted ({} before it on {})",
            pl.col("kind"),
            pl.col("exempt_why"),
            pl.col("cap_rule"),
            before,
            first_day,
        ),
        cap_seen=seen,
    )
    counted = placed.filter(~pl.col("exempt") & (pl.col("cap_moves") == 0)).select(
        "_row",
        cap_rule=pl.lit(None, pl.String),
        cap_cite=pl.lit(None, pl.String),
        cap_reason=pl.lit(None, pl.String),
        cap_note=pl.format("message {} of {} to the customer on {}", before + 1, pl.lit(cap), first_day),
        cap_seen=seen,
    )
    texts = pl.concat([moved, exempt, counted]).join(placed.select("_row", "at", "day"), on="_row")
    return called.drop("at", "day").join(texts, on="_row", how="inner")


# ------------------------------------------------------------------------------------------ decisions
def _decisions(
    rows: pl.DataFrame,
    held: pl.DataFrame,
    closed: pl.DataFrame,
    capped: pl.DataFrame,
) -> pl.DataFrame:
    """One decision per planned row, in its order."""
    suppressed = pl.concat([held, closed]).select(
        "_row",
        verdict=pl.lit("suppressed"),
        scheduled_at=pl.lit(None, dtype=pl.Datetime("us", "UTC")),
        rule_id="rule_id",
        citation="citation",
        reason="reason",
        seen="seen",
    )
    letters = (
        rows.filter(pl.col("channel") == LETTER)
        .join(suppressed.select("_row"), on="_row", how="anti")
        .select(
            "_row",
            verdict=pl.lit("planned"),
            scheduled_at="scheduled_at",
            rule_id=pl.lit(RULE_ALLOWED),
            citation=pl.lit(""),
            reason=pl.lit("allowed: no hold stops it, and letters are not limited by contact hours or caps"),
            seen=pl.lit('{"channel":"letter"}'),
        )
    )
    moved = pl.col("at") != pl.col("scheduled_at")
    hours_moved = pl.col("hours_moved")
    sent = capped.select(
        "_row",
        verdict=pl.when(moved).then(pl.lit("deferred")).otherwise(pl.lit("planned")),
        scheduled_at="at",
        rule_id=pl.when(moved)
        .then(pl.coalesce("cap_rule", "calls_rule", pl.when(hours_moved).then("hours_rule")))
        .otherwise(pl.lit(RULE_ALLOWED)),
        citation=pl.when(moved)
        .then(pl.coalesce("cap_cite", "calls_cite", pl.when(hours_moved).then("hours_cite")))
        .otherwise(pl.lit("")),
        reason=pl.when(moved)
        .then(
            pl.concat_str(
                [pl.col("hours_reason"), pl.col("calls_reason"), pl.col("cap_reason")],
                separator="; then ",
                ignore_nulls=True,
            )
        )
        .otherwise(
            pl.concat_str(
                [
                    pl.when(pl.col("window") != "")
                    .then(pl.format("allowed: {} is inside {}", pl.col("clocks"), pl.col("window")))
                    .otherwise(pl.format("allowed: {} has no contact hours", pl.col("channel"))),
                    pl.col("calls_note"),
                    pl.col("cap_note"),
                ],
                separator="; ",
                ignore_nulls=True,
            )
        ),
        seen=pl.format(
            "{{{}}}",
            pl.concat_str(
                [pl.col("hours_seen"), pl.col("calls_seen"), pl.col("cap_seen")],
                separator=",",
                ignore_nulls=True,
            ),
        ),
    )
    decided = pl.concat([suppressed, letters, sent.select(suppressed.columns)])
    if decided.height != rows.height or decided["_row"].n_unique() != rows.height:
        raise GovernorError(f"internal: {decided.height} decisions for {rows.height} planned messages")
    # every row decided once (checked above), so sorted by row the decisions line up with ``rows``
    return (
        decided.sort("_row").with_columns(key=rows["key"]).select(list(DECISIONS)).cast(pl.Schema(DECISIONS))
    )


def _position(keys: Sequence[str]) -> pl.Expr:
    """The 0-based place of each row in its run of equal ``keys`` (the frame is sorted by them): a rank
    within groups without a hash or a window per group."""
    index = pl.int_range(pl.len(), dtype=pl.Int64)
    start = pl.any_horizontal([pl.col(k).ne_missing(pl.col(k).shift(1)) for k in keys])
    return index - pl.when(start).then(index).otherwise(None).forward_fill()
