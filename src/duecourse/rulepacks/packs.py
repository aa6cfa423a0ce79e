"""The rule packs: each jurisdiction's numbers as data (``rulepacks/{cn,us,uk}.toml``), each with its rule id
and citation, so that a decision can say which rule made it.

The contact hours are read by the dispatcher (again at send time) and by the governor; the governor also
reads how each hold kind is cited, the call caps, the quiet days after a conversation and the daily cap's
rule and exemptions (``governor_pack``). The US pack also says which states and cities require a
disclosure on a time-barred debt, and its words (``disclosures``, read by ``services/time_barred.py``).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from zoneinfo import ZoneInfo

from duecourse.domain.errors import DuecourseError

JURISDICTIONS: tuple[str, ...] = ("CN", "US", "UK")


class RulePackError(DuecourseError):
    """A rule pack is missing or malformed (a packaging error: the shipped packs are tested)."""


@dataclass(frozen=True, slots=True)
class ContactHours:
    """The local hours in which a jurisdiction allows contact, ``start`` included, ``end`` excluded."""

    jurisdiction: str
    start: dt.time
    end: dt.time
    rule: str
    citation: str
    channels: tuple[str, ...]

    def allows(self, local: dt.datetime) -> bool:
        return self.start <= local.time().replace(tzinfo=None) < self.end

    def next_allowed(self, now: dt.datetime, timezone: str) -> dt.datetime | None:
        """``None`` when ``now`` is inside the hours in ``timezone``; otherwise the next start, as an instant.

        The next start is found on the local calendar (so a daylight-saving change between now and then
        is handled by the zone), and a start that falls in a skipped hour moves on by the hour skipped
        (02:30 on a spring-forward night becomes 03:30).
        """
        zone = ZoneInfo(timezone)
        local = now.astimezone(zone)
        if self.allows(local):
            return None
        day = (
            local.date()
            if local.time().replace(tzinfo=None) < self.start
            else local.date() + dt.timedelta(days=1)
        )
        start = dt.datetime.combine(day, self.start, tzinfo=zone)
        # A wall time that does not exist (spring forward) normalises through UTC to the valid instant after.
        return start.astimezone(dt.UTC).astimezone(zone).astimezone(dt.UTC)

    def describe(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@functools.cache
def _pack(jurisdiction: str) -> dict[str, object]:
    if jurisdiction not in JURISDICTIONS:
        raise RulePackError(
            f"no rule pack for jurisdiction {jurisdiction!r} (known: {', '.join(JURISDICTIONS)})"
        )
    text = resources.files("duecourse.rulepacks").joinpath(f"{jurisdiction.lower()}.toml").read_text("utf-8")
    return tomllib.loads(text)


def _time(value: object, where: str) -> dt.time:
    if not isinstance(value, str):
        raise RulePackError(f'{where}: expected a time like "08:00"')
    return dt.time.fromisoformat(value)


@functools.cache
def contact_hours(jurisdiction: str) -> ContactHours:
    """The contact hours of the jurisdiction's rule pack."""
    table = _pack(jurisdiction).get("contact_hours")
    where = f"rulepacks/{jurisdiction.lower()}.toml [contact_hours]"
    if not isinstance(table, dict):
        raise RulePackError(f"{where}: missing")
    channels = table.get("channels", [])
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise RulePackError(f"{where}: channels must be a list of channel names")
    return ContactHours(
        jurisdiction=jurisdiction,
        start=_time(table.get("start"), f"{where} start"),
        end=_time(table.get("end"), f"{where} end"),
        rule=str(table.get("rule", "")),
        citation=str(table.get("citation", "")),
        channels=tuple(channels),
    )


# ------------------------------------------------------------------------------------------ governor
# The numbers the compliance governor (``engine/governor.py``) reads: what each hold kind is called and
# cited as, the call caps, the quiet days after a conversation, and the daily cap's rule and exemptions.
# Each loader reports every problem of its part of the file at once.

CALL_CAP_PER: tuple[str, ...] = ("customer", "account", "number")
CALL_COUNTS: tuple[str, ...] = ("attempt", "connected", "conversation")
CALL_APPLIES: tuple[str, ...] = ("all", "third_party")


@dataclass(frozen=True, slots=True)
class HoldRule:
    """How a decision names a hold of one kind in a jurisdiction: the rule id and its source.

    The order of a pack's ``[[holds]]`` is the order in which a decision names them when several apply
    (the gravest first: a "not mine" claim before a promise to pay).
    """

    jurisdiction: str
    kind: str
    rule: str
    citation: str


@dataclass(frozen=True, slots=True)
class CallCap:
    """At most ``limit`` calls in any ``days`` consecutive local days, counted per ``per``.

    Attributes:
        per: what the calls are counted against: the debtor (``customer``, across all accounts), one debt
            (``account``) or one telephone number (``number``).
        counts: which past calls count: every dial (``attempt``), calls that reached the number
            (``connected``), or calls in which the person was spoken to (``conversation``). A planned
            call always counts: nobody knows yet how it will end.
        applies: ``all`` accounts, or ``third_party`` ones only (Reg F binds debt collectors; the
            institution may adopt it for its own accounts, ``Policy.us_creditor_calls_capped``).
    """

    jurisdiction: str
    name: str
    per: str
    days: int
    limit: int
    counts: str
    applies: str
    rule: str
    citation: str


@dataclass(frozen=True, slots=True)
class CallQuiet:
    """No call about a debt for ``days`` days after a telephone conversation about it, the conversation's
    day being day 1 (so the next call may be placed on the conversation's day + ``days``)."""

    jurisdiction: str
    days: int
    applies: str
    rule: str
    citation: str


@dataclass(frozen=True, slots=True)
class DailyCap:
    """The rule id and source of the institution's daily cap on messages per customer, and the kinds the
    law requires whatever the cap (they are sent, and counted, but never held back by it)."""

    jurisdiction: str
    rule: str
    citation: str
    exempt_kinds: tuple[str, ...]
    exempt_citation: str


@dataclass(frozen=True, slots=True)
class GovernorPack:
    """Everything the governor reads from one jurisdiction's pack."""

    jurisdiction: str
    hours: ContactHours
    holds: tuple[HoldRule, ...]
    call_caps: tuple[CallCap, ...]
    call_quiet: CallQuiet | None
    daily_cap: DailyCap

    def hold_rule(self, kind: str) -> HoldRule | None:
        """The entry for hold ``kind``, ``None`` when the pack does not name it."""
        return next((rule for rule in self.holds if rule.kind == kind), None)


BAR_SINCE: tuple[str, ...] = ("in_force", "ever")


@dataclass(frozen=True, slots=True)
class Prerequisite:
    """A task of kind ``task`` waits until the day after the deadline of the last ``needs`` notice sent
    on the account (the notice's ``[letters.deadlines]`` rule, on the customer's calendar)."""

    jurisdiction: str
    task: str
    needs: str
    rule: str
    citation: str


@dataclass(frozen=True, slots=True)
class Bar:
    """A task of kind ``task`` is not done while a ``hold`` is in force (``since = "in_force"``) or once
    one was ever recorded on the customer or the account (``"ever"``)."""

    jurisdiction: str
    task: str
    hold: str
    since: str
    rule: str
    citation: str


@dataclass(frozen=True, slots=True)
class Limitation:
    """A task of kind ``task`` is not done on a time-barred debt: once the statute of limitations for
    suing on it has run. The periods are the institution's (``[governor] limitation_years``, per state:
    state law differs by state and contract, and the pack cannot give one number)."""

    jurisdiction: str
    task: str
    rule: str
    citation: str


@dataclass(frozen=True, slots=True)
class TaskRules:
    """What the tasks of one jurisdiction wait for and what bars them."""

    prerequisites: tuple[Prerequisite, ...]
    bars: tuple[Bar, ...]
    limitations: tuple[Limitation, ...] = ()


class _Reader:
    """Reads typed values out of a pack's tables and collects every problem before raising once."""

    def __init__(self, jurisdiction: str) -> None:
        self.file = f"rulepacks/{jurisdiction.lower()}.toml"
        self.problems: list[str] = []

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f"{self.file} {where}: {message}")

    def text(self, table: dict[str, object], key: str, where: str) -> str:
        value = table.get(key)
        if not isinstance(value, str) or not value.strip():
            self.problem(where, f"{key} must be a non-empty text")
            return ""
        return value

    def positive(self, table: dict[str, object], key: str, where: str) -> int:
        value = table.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            self.problem(where, f"{key} must be a whole number of at least 1")
            return 1
        return value

    def choice(self, table: dict[str, object], key: str, where: str, allowed: tuple[str, ...]) -> str:
        value = table.get(key)
        if value not in allowed:
            self.problem(where, f"{key} must be one of {', '.join(allowed)} (got {value!r})")
            return allowed[0]
        return str(value)

    def texts(self, table: dict[str, object], key: str, where: str) -> tuple[str, ...]:
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
            self.problem(where, f"{key} must be a list of names")
            return ()
        return tuple(value)

    def tables(self, pack: dict[str, object], key: str) -> list[dict[str, object]]:
        value = pack.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            self.problem(f"[[{key}]]", "must be an array of tables")
            return []
        return value

    def done(self) -> None:
        if self.problems:
            raise RulePackError("\n".join(self.problems))


@functools.cache
def hold_rules(jurisdiction: str) -> tuple[HoldRule, ...]:
    """The ``[[holds]]`` of the jurisdiction's pack, gravest first."""
    reader = _Reader(jurisdiction)
    rules: list[HoldRule] = []
    for number, table in enumerate(reader.tables(_pack(jurisdiction), "holds"), start=1):
        where = f"[[holds]] #{number}"
        rules.append(
            HoldRule(
                jurisdiction,
                reader.text(table, "kind", where),
                reader.text(table, "rule", where),
                reader.text(table, "citation", where),
            )
        )
    kinds = [rule.kind for rule in rules]
    for kind in sorted({kind for kind in kinds if kinds.count(kind) > 1}):
        reader.problem("[[holds]]", f"kind {kind!r} is listed more than once")
    reader.done()
    return tuple(rules)


@functools.cache
def call_caps(jurisdiction: str) -> tuple[CallCap, ...]:
    """The ``[[call_caps]]`` of the jurisdiction's pack (none: calls are limited only by the hours)."""
    reader = _Reader(jurisdiction)
    caps: list[CallCap] = []
    for number, table in enumerate(reader.tables(_pack(jurisdiction), "call_caps"), start=1):
        where = f"[[call_caps]] #{number}"
        caps.append(
            CallCap(
                jurisdiction=jurisdiction,
                name=reader.text(table, "name", where),
                per=reader.choice(table, "per", where, CALL_CAP_PER),
                days=reader.positive(table, "days", where),
                limit=reader.positive(table, "limit", where),
                counts=reader.choice(table, "counts", where, CALL_COUNTS),
                applies=reader.choice(table, "applies", where, CALL_APPLIES),
                rule=reader.text(table, "rule", where),
                citation=reader.text(table, "citation", where),
            )
        )
    reader.done()
    return tuple(caps)


@functools.cache
def call_quiet(jurisdiction: str) -> CallQuiet | None:
    """The ``[call_quiet]`` of the jurisdiction's pack, ``None`` when it has none."""
    table = _pack(jurisdiction).get("call_quiet")
    if table is None:
        return None
    reader = _Reader(jurisdiction)
    if not isinstance(table, dict):
        raise RulePackError(f"{reader.file} [call_quiet]: must be a table")
    quiet = CallQuiet(
        jurisdiction=jurisdiction,
        days=reader.positive(table, "days", "[call_quiet]"),
        applies=reader.choice(table, "applies", "[call_quiet]", CALL_APPLIES),
        rule=reader.text(table, "rule", "[call_quiet]"),
        citation=reader.text(table, "citation", "[call_quiet]"),
    )
    reader.done()
    return quiet


@functools.cache
def daily_cap(jurisdiction: str) -> DailyCap:
    """The ``[daily_cap]`` of the jurisdiction's pack (the number itself is the institution's policy)."""
    reader = _Reader(jurisdiction)
    table = _pack(jurisdiction).get("daily_cap")
    if not isinstance(table, dict):
        raise RulePackError(f"{reader.file} [daily_cap]: missing")
    cap = DailyCap(
        jurisdiction=jurisdiction,
        rule=reader.text(table, "rule", "[daily_cap]"),
        citation=reader.text(table, "citation", "[daily_cap]"),
        exempt_kinds=reader.texts(table, "exempt_kinds", "[daily_cap]"),
        exempt_citation=reader.text(table, "exempt_citation", "[daily_cap]"),
    )
    reader.done()
    return cap


@functools.cache
def task_rules(jurisdiction: str) -> TaskRules:
    """The ``[[prerequisites]]``, ``[[bars]]`` and ``[[limitations]]`` of the jurisdiction's pack (none:
    tasks wait for nothing but the holds)."""
    from duecourse.domain.strategy import TASK_KINDS

    reader = _Reader(jurisdiction)
    pack = _pack(jurisdiction)
    prerequisites: list[Prerequisite] = []
    for number, table in enumerate(reader.tables(pack, "prerequisites"), start=1):
        where = f"[[prerequisites]] #{number}"
        prerequisites.append(
            Prerequisite(
                jurisdiction,
                reader.choice(table, "task", where, TASK_KINDS),
                reader.text(table, "needs", where),
                reader.text(table, "rule", where),
                reader.text(table, "citation", where),
            )
        )
    bars: list[Bar] = []
    for number, table in enumerate(reader.tables(pack, "bars"), start=1):
        where = f"[[bars]] #{number}"
        bars.append(
            Bar(
                jurisdiction,
                reader.choice(table, "task", where, TASK_KINDS),
                reader.text(table, "hold", where),
                reader.choice(table, "since", where, BAR_SINCE),
                reader.text(table, "rule", where),
                reader.text(table, "citation", where),
            )
        )
    limitations: list[Limitation] = []
    for number, table in enumerate(reader.tables(pack, "limitations"), start=1):
        where = f"[[limitations]] #{number}"
        limitations.append(
            Limitation(
                jurisdiction,
                reader.choice(table, "task", where, TASK_KINDS),
                reader.text(table, "rule", where),
                reader.text(table, "citation", where),
            )
        )
    for key, named in (
        ("prerequisites", [p.task for p in prerequisites]),
        ("limitations", [x.task for x in limitations]),
    ):
        for task in sorted({t for t in named if named.count(t) > 1}):
            reader.problem(f"[[{key}]]", f"task {task!r} is listed more than once")
    reader.done()
    return TaskRules(tuple(prerequisites), tuple(bars), tuple(limitations))


# Tasks a hold opens for people (``[[hold_tasks]]``): work the automated strategy must leave to them.
HOLD_TASK_KINDS: tuple[str, ...] = ("specialist_review",)


@dataclass(frozen=True, slots=True)
class HoldTask:
    """A hold of kind ``hold`` in force opens a task of kind ``task`` (a queue of people trained for it)
    for each of the customer's accounts in collection, once per hold and account."""

    jurisdiction: str
    hold: str
    task: str
    rule: str
    citation: str


@functools.cache
def hold_tasks(jurisdiction: str) -> tuple[HoldTask, ...]:
    """The ``[[hold_tasks]]`` of the jurisdiction's pack (none: a hold opens no task)."""
    reader = _Reader(jurisdiction)
    pack = _pack(jurisdiction)
    found: list[HoldTask] = []
    for number, table in enumerate(reader.tables(pack, "hold_tasks"), start=1):
        where = f"[[hold_tasks]] #{number}"
        found.append(
            HoldTask(
                jurisdiction,
                reader.text(table, "hold", where),
                reader.choice(table, "task", where, HOLD_TASK_KINDS),
                reader.text(table, "rule", where),
                reader.text(table, "citation", where),
            )
        )
    reader.done()
    return tuple(found)


@functools.cache
def governor_pack(jurisdiction: str) -> GovernorPack:
    """Everything the governor reads from the jurisdiction's pack, checked."""
    return GovernorPack(
        jurisdiction=jurisdiction,
        hours=contact_hours(jurisdiction),
        holds=hold_rules(jurisdiction),
        call_caps=call_caps(jurisdiction),
        call_quiet=call_quiet(jurisdiction),
        daily_cap=daily_cap(jurisdiction),
    )


@dataclass(frozen=True, slots=True)
class ThirdPartyRules:
    """When a third party the customer named may be contacted (``[third_parties]``,
    ``services/third_parties.py``).

    Attributes:
        allowed: whether the jurisdiction lets the institution contact third parties at all (the UK does
            not: UK-CONC-04; ``[governor] third_party_contact_in`` opens it).
        unreachable_days: N: the customer's contact points must have been found bad (or be missing) at
            least N days before, and nothing sent to the customer gone through in those days.
        once: at most one communication with a contact, ever (US-3P-01, 12 CFR 1006.10(b)(3)).
    """

    jurisdiction: str
    allowed: bool
    rule: str
    citation: str
    unreachable_days: int
    unreachable_rule: str
    unreachable_citation: str
    refused_rule: str
    refused_citation: str
    once: bool
    once_rule: str
    once_citation: str
    frequency_rule: str
    frequency_citation: str


@functools.cache
def third_party_rules(jurisdiction: str) -> ThirdPartyRules:
    """The ``[third_parties]`` of the jurisdiction's pack (every pack says, even to forbid it)."""
    reader = _Reader(jurisdiction)
    table = _pack(jurisdiction).get("third_parties")
    where = "[third_parties]"
    if not isinstance(table, dict):
        raise RulePackError(f"{reader.file} {where}: must be a table")
    allowed, once = table.get("allowed"), table.get("once")
    if not isinstance(allowed, bool):
        reader.problem(where, "allowed must be true or false")
    if not isinstance(once, bool):
        reader.problem(where, "once must be true or false")
    rules = ThirdPartyRules(
        jurisdiction=jurisdiction,
        allowed=allowed is True,
        rule=reader.text(table, "rule", where),
        citation=reader.text(table, "citation", where),
        unreachable_days=reader.positive(table, "unreachable_days", where),
        unreachable_rule=reader.text(table, "unreachable_rule", where),
        unreachable_citation=reader.text(table, "unreachable_citation", where),
        refused_rule=reader.text(table, "refused_rule", where),
        refused_citation=reader.text(table, "refused_citation", where),
        once=once is True,
        once_rule=reader.text(table, "once_rule", where) if once is True else "",
        once_citation=reader.text(table, "once_citation", where) if once is True else "",
        frequency_rule=reader.text(table, "frequency_rule", where),
        frequency_citation=reader.text(table, "frequency_citation", where),
    )
    reader.done()
    return rules


# ------------------------------------------------------------------------------------------ disclosures
# What a communication about a time-barred debt must say where a state or a city requires it (US-TBD-01;
# ``[[disclosures]]``; ``services/time_barred.py`` decides which applies to an account on a day).

DISCLOSURE_BINDS: tuple[str, ...] = ("all", "third_party")
DISCLOSURE_CHANNELS: tuple[str, ...] = ("letter", "email", "sms", "push", "call")
DISCLOSURE_WORDING: tuple[str, ...] = ("prescribed", "to_confirm")
# The one placeholder a disclosure's words may hold: the collector's or the creditor's legal name.
DISCLOSURE_FIELDS: tuple[str, ...] = ("creditor",)
_DISCLOSURE_KEYS = frozenset(
    {
        "name",
        "place",
        "state",
        "zip_prefixes",
        "binds",
        "channels",
        "rule",
        "citation",
        "wording",
        "text",
        "reporting_years",
        "reporting_delay_days",
        "reporting_citation",
        "text_after_reporting",
    }
)
_LOCALE = re.compile(r"[a-z]{2}-[A-Z]{2}")
_STATE = re.compile(r"[A-Z]{2}")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True, slots=True)
class Disclosure:
    """A disclosure a state or a city requires in communications about a time-barred debt.

    Attributes:
        name: the entry's short name (``NYC``, ``CA``); ``place`` in words.
        state: the US state code the customer's region must be.
        zip_prefixes: the ZIP codes of a city within the state, as prefixes; empty: the whole state.
        binds: ``all`` (creditors collecting their own debts too) or ``third_party`` (only accounts
            collected as a third party, ``[governor] third_party_products``).
        channels: the channels the rule covers; a channel that cannot carry the words is not used.
        wording: ``prescribed`` (the rule's own text, found) or ``to_confirm`` (the institution's text,
            written to the rule's elements, for its counsel to confirm).
        texts: the words per locale, paragraphs separated by a blank line; ``{creditor}`` is replaced.
        reporting_years / reporting_delay_days: where the words differ once the debt may no longer be
            reported to the credit bureaus (California): how long after the delinquency began that is;
            ``texts_after_reporting`` are the words from then on.
        line: where the entry starts in its pack (``rulepacks/us.toml:LINE``).
    """

    jurisdiction: str
    name: str
    place: str
    state: str
    zip_prefixes: tuple[str, ...]
    binds: str
    channels: tuple[str, ...]
    rule: str
    citation: str
    wording: str
    texts: Mapping[str, str]
    reporting_years: int = 0
    reporting_delay_days: int = 0
    reporting_citation: str = ""
    texts_after_reporting: Mapping[str, str] = field(default_factory=dict)
    line: int = 0

    def is_city(self) -> bool:
        return bool(self.zip_prefixes)

    def covers_zip(self, zip5: str) -> bool:
        return any(zip5.startswith(prefix) for prefix in self.zip_prefixes)


def _headers(text: str, key: str) -> list[int]:
    """The line of each ``[[key]]`` header in a pack's text, in order."""
    header = re.compile(rf"\s*\[\[\s*{re.escape(key)}\s*\]\]")
    return [n for n, line in enumerate(text.splitlines(), 1) if header.match(line)]


def parse_disclosures(text: str, file: str, jurisdiction: str) -> tuple[Disclosure, ...]:
    """The ``[[disclosures]]`` of a pack's text, checked; every problem at once as ``file:line: ...``."""
    try:
        pack = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulePackError(f"{file}: not valid TOML: {exc}") from None
    tables = pack.get("disclosures", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise RulePackError(f"{file}: [[disclosures]] must be an array of tables")
    lines = _headers(text, "disclosures")
    problems: list[str] = []
    found: list[Disclosure] = []
    for number, table in enumerate(tables, start=1):
        line = lines[number - 1] if number <= len(lines) else 1
        entry = _disclosure(table, jurisdiction, line, f"{file}:{line}: [[disclosures]] #{number}", problems)
        found.append(entry)
    names = [d.name for d in found]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"{file}: [[disclosures]] name {name!r} is listed more than once")
    for later in found:
        for earlier in found:
            shadows = earlier.binds in ("all", later.binds)
            if earlier.line >= later.line or earlier.state != later.state or not shadows:
                continue
            covered = later.is_city() and all(earlier.covers_zip(p) for p in later.zip_prefixes)
            if not earlier.is_city() or covered:
                problems.append(
                    f"{file}:{later.line}: [[disclosures]] {later.name!r} is never reached: {earlier.name!r} "
                    f"(line {earlier.line}) takes its customers first; put a city's entry before its state's"
                )
                break
    if problems:
        raise RulePackError("\n".join(problems))
    return tuple(found)


def _disclosure(
    table: dict[str, object], jurisdiction: str, line: int, where: str, problems: list[str]
) -> Disclosure:
    def problem(message: str) -> None:
        problems.append(f"{where}: {message}")

    def text(key: str) -> str:
        value = table.get(key)
        if not isinstance(value, str) or not value.strip():
            problem(f"{key} must be a non-empty text")
            return ""
        return value.strip()

    def names(key: str, allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            problem(f"{key} must be a list of texts")
            return ()
        for item in value:
            if allowed is not None and item not in allowed:
                problem(f"{key} names {item!r}; known: {', '.join(allowed)}")
        return tuple(value)

    def choice(key: str, allowed: tuple[str, ...]) -> str:
        value = table.get(key)
        if value not in allowed:
            problem(f"{key} must be one of {', '.join(allowed)} (got {value!r})")
            return allowed[0]
        return str(value)

    def words(key: str, required: bool) -> dict[str, str]:
        value = table.get(key, {})
        if not isinstance(value, dict) or (required and not value):
            problem(f'{key} must be a table of words per locale, like {key}."en-US" = "..."')
            return {}
        out: dict[str, str] = {}
        for locale, said in value.items():
            if not _LOCALE.fullmatch(locale) or not isinstance(said, str) or not said.strip():
                problem(f'{key}.{locale}: must be a locale like "en-US" with non-empty words')
                continue
            for field_name in _PLACEHOLDER.findall(said):
                if field_name not in DISCLOSURE_FIELDS:
                    known = ", ".join("{" + f + "}" for f in DISCLOSURE_FIELDS)
                    problem(f"{key}.{locale}: {{{field_name}}} is not a field the words may hold ({known})")
            out[locale] = said.strip()
        return out

    for key in sorted(set(table) - _DISCLOSURE_KEYS):
        problem(f"unknown key {key!r}")
    state = text("state")
    if state and not _STATE.fullmatch(state):
        problem(f'state must be a state code like "NY" (got {state!r})')
    prefixes = names("zip_prefixes")
    for prefix in prefixes:
        if not (prefix.isdigit() and 1 <= len(prefix) <= 5):
            problem(f"zip_prefixes: {prefix!r} is not the start of a 5-digit ZIP code")
    channels = names("channels", DISCLOSURE_CHANNELS)
    if not channels:
        problem("channels must name at least one channel")
    texts = words("text", required=True)
    late = words("text_after_reporting", required=False)
    years, delay = table.get("reporting_years", 0), table.get("reporting_delay_days", 0)
    for key, value in (("reporting_years", years), ("reporting_delay_days", delay)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            problem(f"{key} must be a whole number")
    reporting = isinstance(years, int) and not isinstance(years, bool) and years > 0
    if bool(late) != reporting:
        problem("reporting_years and text_after_reporting go together: set both or neither")
    if late and set(late) != set(texts):
        problem("text_after_reporting must have the same locales as text")
    return Disclosure(
        jurisdiction=jurisdiction,
        name=text("name"),
        place=text("place"),
        state=state,
        zip_prefixes=prefixes,
        binds=choice("binds", DISCLOSURE_BINDS),
        channels=channels,
        rule=text("rule"),
        citation=text("citation"),
        wording=choice("wording", DISCLOSURE_WORDING),
        texts=texts,
        reporting_years=years if reporting and isinstance(years, int) else 0,
        reporting_delay_days=delay if isinstance(delay, int) and not isinstance(delay, bool) else 0,
        reporting_citation=text("reporting_citation") if reporting else "",
        texts_after_reporting=late,
        line=line,
    )


@functools.cache
def _pack_text(jurisdiction: str) -> str:
    _pack(jurisdiction)  # refuses an unknown jurisdiction
    return resources.files("duecourse.rulepacks").joinpath(f"{jurisdiction.lower()}.toml").read_text("utf-8")


@functools.cache
def disclosures(jurisdiction: str) -> tuple[Disclosure, ...]:
    """The ``[[disclosures]]`` of the jurisdiction's pack, in order (none: no place there requires one)."""
    return parse_disclosures(_pack_text(jurisdiction), f"rulepacks/{jurisdiction.lower()}.toml", jurisdiction)
