"""``duecourse.toml``: loading the configuration and checking every line of it before a run.

The file holds the product terms, the bucket sets and the collection stages (``domain/terms.py``); other
sections (``issuer``, ``channels``, ``rulepacks``, the strategy's actions, ...) are kept untouched in
``Config.raw`` for the code that reads them. Three bucket sets are shipped in ``defaults/bucket_sets.toml``
and are always available; a ``[bucket_sets.NAME]`` table of the same name in the file replaces one.

Every problem is collected before anything is raised and each one says where it is, as ``FILE:LINE``
(Fineract-style stable codes such as ``config.bucket_gap``). tomllib keeps no positions, so ``KeyLines``
scans the text once and maps each key path (``("products", "card_cn", "grace_days")``,
``("strategy", "stages", 2, "name")``, ``("bucket_sets", "cn_m", "buckets", 3)``) to its line.

Rates and amounts are ``Decimal``: written as strings (``"0.0005"``) or integers, never as TOML floats,
which are binary fractions and would not keep ``0.0005`` exact.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

from duecourse.domain.calendar import KNOWN_CODES as CALENDARS
from duecourse.domain.errors import Problem, ProblemsError
from duecourse.domain.limitation import US_STATE_CODES
from duecourse.domain.model import COMPONENTS, JURISDICTIONS
from duecourse.domain.money import CURRENCIES, MoneyError, quantum, to_decimal
from duecourse.domain.strategy import (
    ACTION_CHANNELS,
    ACTION_TO,
    CONTACT_CHANNELS,
    CONTACT_KINDS,
    TASK_CHANNEL,
    TASK_KINDS,
    Action,
    Experiment,
    Variant,
)
from duecourse.domain.terms import (
    ATTRIBUTE_KINDS,
    ATTRIBUTE_LIMIT,
    ATTRIBUTE_SCALE,
    CARD_INTEREST_MODES,
    CURRENT_STAGE,
    DEFAULT_SEGMENT,
    LATE_FEE_MODES,
    PRODUCT_KINDS,
    AttributeCondition,
    Bucket,
    BucketSet,
    Charges,
    LateFee,
    Product,
    Segment,
    SegmentWhen,
    Stage,
    Terms,
)
from duecourse.letters.kinds import KINDS as LETTER_KINDS
from duecourse.letters.settings import (
    DEADLINE_UNITS,
    DEFAULT_DEADLINES,
    Deadline,
    Issuer,
    LetterSettings,
    RepaymentAccount,
)

DEFAULT_PATH = Path("duecourse.toml")
DEFAULT_SOURCE = "<default>"
SHIPPED_BUCKET_SETS_SOURCE = "<shipped bucket_sets.toml>"

KeyPath = tuple[str | int, ...]

SECTIONS = (
    "bucket_sets",
    "products",
    "strategy",
    "issuer",
    "letters",
    "channels",
    "governor",
    "costs",
    "attributes",
    "location_agent",
)
# An account attribute's name (``[attributes]``): a column of ``duecourse import attributes`` files.
ATTRIBUTE_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
# Columns of an attributes file that are not attributes.
ATTRIBUTE_RESERVED = ("account_id", "valid_from")
COST_KEYS = ("currency", "email", "sms_segment", "push", "letter", "call")
GOVERNOR_KEYS = (
    "daily_contacts_per_customer",
    "us_creditor_calls_capped",
    "third_party_products",
    "limitation_years",
    "limitation_restarts_on_payment",
    "consent_required",
    "third_party_contact_in",
)
# The regions of US customers a limitation period is set for: the states, DC and the territories (USPS).
# States where a payment no longer starts a consumer credit debt's time to sue again: the states listed in
# limitation_restarts_on_payment would contradict the law there, and the disclosure the letters carry.
NO_REVIVAL_BY_PAYMENT = {
    "NY": "CPLR 214-i (Consumer Credit Fairness Act, in force 2022-04-07): a payment on a consumer credit "
    "debt does not revive or extend the time to sue on it",
}
BUCKET_SET_KEYS = ("buckets", "current")
BUCKET_KEYS = ("name", "min", "max")
PRODUCT_KEYS = ("kind", "currency", "grace_days", "bucket_set", "calendar", "allocation_order", "charges")
PRODUCT_REQUIRED = ("kind", "currency", "grace_days", "bucket_set", "calendar")
CHARGES_KEYS = ("penalty_daily_rate", "card_interest_mode", "card_daily_rate", "late_fee")
LATE_FEE_KEYS = ("mode", "percent", "floor", "cap", "flat", "limit_to_minimum")
# Which late-fee keys each mode reads, and which it cannot do without.
LATE_FEE_USES = {
    "none": frozenset[str](),
    "percent": frozenset({"percent", "floor", "cap", "limit_to_minimum"}),
    "flat": frozenset({"flat", "limit_to_minimum"}),
}
LATE_FEE_NEEDS = {"none": (), "percent": ("percent",), "flat": ("flat",)}
ISSUER_KEYS = (
    "legal_name",
    "address",
    "hotline",
    "hours",
    "website",
    "portal_url",
    "email",
    "branch",
    "app",
    "complaint",
    "collector",
    "dispute_address",
    "repayment_accounts",
)
ISSUER_OPTIONAL = ("collector", "dispute_address")
REPAYMENT_KEYS = ("bank", "name", "number", "details")
LETTERS_KEYS = ("deadlines", "max_sentence_words", "max_grade", "max_sentence_chars", "token_days")
DEADLINE_KEYS = ("days", "unit", "minimum", "service_days")
STAGE_CONDITIONS = ("min_days_past_due", "min_delinquency_days", "min_amount_past_due", "min_missed_dues")
SEGMENT_KEYS = ("name", "when", "stages")
WHEN_KEYS = ("products", "jurisdictions", "min_amount_past_due", "min_balance", "attributes")

_RATE_EXAMPLE = '"0.0005"'
_AMOUNT_EXAMPLE = '"10.00"'


@dataclass(frozen=True, slots=True)
class GovernorSettings:
    """The ``[governor]`` table: the institution's own limits, applied beside the rule packs' laws.

    Attributes:
        daily_contacts_per_customer: messages (not letters) per customer per local day across all of the
            customer's accounts: one customer with a card and a loan gets one coordinated contact.
        us_creditor_calls_capped: apply Reg F's call caps (US-FREQ-01) to the institution's own accounts
            too, not only to accounts placed with a third-party collector.
        third_party_products: product codes whose accounts are collected as a third party (Reg F applies
            in full).
        limitation_years: the statute of limitations for suing on a debt, in whole years, per US state
            (the customer's ``region``), as the institution's counsel gives it: a ``legal_review`` task on
            a debt older than that is suppressed (US-TBD-01); a state not listed opens none.
        consent_required: per jurisdiction, the channels the institution contacts a customer by only
            with the customer's recorded consent (``duecourse import consents``): without it the channel
            is closed to the customer, at planning and at sending, and the action's next channel goes.
        limitation_restarts_on_payment: the states where a payment starts the period again (as the
            institution's counsel says; none by default: where a payment does not revive the debt's time to
            sue, as in New York for consumer credit, counting from the payment would open a legal review of
            a debt already time-barred).
        third_party_contact_in: the jurisdictions whose pack forbids contacting third parties the customer
            named (the UK: UK-CONC-04) where the institution, on its counsel's advice, contacts them all
            the same, under the pack's other rules (``services/third_parties.py``); none by default.
    """

    daily_contacts_per_customer: int = 1
    us_creditor_calls_capped: bool = True
    third_party_products: tuple[str, ...] = ()
    limitation_years: Mapping[str, int] = field(default_factory=dict)
    limitation_restarts_on_payment: tuple[str, ...] = ()
    consent_required: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    third_party_contact_in: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Costs:
    """The ``[costs]`` table: what one message costs the institution, per channel, in one reporting
    currency (for ``policy simulate``). An SMS costs ``sms_segment`` per segment (160 GSM-7 characters,
    70 UCS-2; ``channels/sms.py``). A channel left out costs nothing."""

    currency: str = ""
    per_message: dict[str, Decimal] = field(default_factory=dict)  # email, push, letter, call
    sms_segment: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class Config:
    """A loaded, validated configuration.

    Attributes:
        source: the path shown in problems (``duecourse.toml``, or ``<default>`` for the shipped one).
        terms: products, bucket sets (the shipped ones and the file's) and stages.
        raw: the parsed TOML, for the sections other code reads (channels, strategy actions).
        issuers: the ``[issuer.CN]``, ``[issuer.US]``, ``[issuer.UK]`` tables, by jurisdiction.
        letters: the ``[letters]`` settings (deadlines per kind, readability limits), defaults filled in.
        actions: every stage's ``[[strategy.stages.actions]]``, in stage order.
        channels: the ``[channels.*]`` tables by channel (``email``, ``sms``, ``push``, ``post``); a channel
            left out is not used.
        governor: the ``[governor]`` settings: the institution's own limits beside the rule packs' laws.
        costs: the ``[costs]`` of a message per channel (``policy simulate``).
        experiments: the ``[[strategy.experiments]]`` (champion/challenger), each account split between
            their variants by a stable hash.
        pre_due: the ``[[strategy.pre_due]]`` actions: reminders ``-offset_days`` days before a due date
            to accounts that are not in collection (CN-COL-01).
        attributes: the ``[attributes]`` an account may carry (name → ``number`` or ``text``), imported
            with ``duecourse import attributes`` and chosen by in a segment's ``when``.
        location_agents: the ``[location_agent.US]`` table: the person who asks third parties for a
            third-party collector's location information (``services/third_parties.py``), by
            jurisdiction.
    """

    source: str
    terms: Terms
    raw: dict[str, object]
    issuers: dict[str, Issuer] = field(default_factory=dict)
    letters: LetterSettings = field(default_factory=LetterSettings)
    actions: tuple[Action, ...] = ()
    channels: dict[str, ChannelSettings] = field(default_factory=dict)
    governor: GovernorSettings = field(default_factory=GovernorSettings)
    costs: Costs = field(default_factory=Costs)
    experiments: tuple[Experiment, ...] = ()
    pre_due: tuple[Action, ...] = ()
    attributes: dict[str, str] = field(default_factory=dict)
    location_agents: dict[str, LocationAgent] = field(default_factory=dict)

    def actions_of(self, stage: str) -> tuple[Action, ...]:
        return tuple(action for action in self.actions if action.stage == stage)


def load_config(path: Path | None) -> Config:
    """Load and check ``path`` (``None``: ./duecourse.toml, else the shipped default); raise every problem."""
    config, problems = _load(path)
    if problems or config is None:
        raise ProblemsError(problems)
    return config


def check_config(path: Path | None) -> list[Problem]:
    """The same checks as ``load_config``, returning the problems (empty when the file is good)."""
    return _load(path)[1]


def config_from_text(text: str, source: str = DEFAULT_SOURCE) -> Config:
    """Check a configuration given as text; ``source`` names it in problems."""
    config, problems = _check_text(text, source)
    if problems or config is None:
        raise ProblemsError(problems)
    return config


def default_config_text() -> str:
    """The shipped, commented default ``duecourse.toml``."""
    return _shipped("duecourse.toml")


# ---------------------------------------------------------------- reading


def _shipped(name: str) -> str:
    return (resources.files("duecourse.defaults") / name).read_text(encoding="utf-8")


def _load(path: Path | None) -> tuple[Config | None, list[Problem]]:
    path = DEFAULT_PATH if path is None else path
    if path == DEFAULT_PATH and not path.exists():
        return _check_text(default_config_text(), DEFAULT_SOURCE)
    source = str(path)
    try:
        # utf-8-sig: a byte-order mark left by an editor is not a TOML error worth stopping for.
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return None, [Problem("config.missing_file", "no such configuration file", source)]
    except UnicodeDecodeError as exc:
        message = f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})"
        return None, [Problem("config.not_utf8", message, source)]
    except OSError as exc:
        message = f"cannot read the configuration: {exc.strerror or exc}"
        return None, [Problem("config.unreadable", message, source)]
    return _check_text(text, source)


def _parse(text: str, source: str) -> dict[str, Any] | Problem:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        at = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
        if at:
            line = int(at[1])
            message = f"{message[: at.start()]} (column {at[2]})"
        else:
            line = max(1, text.count("\n") + (0 if text.endswith("\n") else 1))
            message = message.replace(" (at end of document)", " at the end of the file")
        return Problem("config.bad_toml", f"invalid TOML: {message}", f"{source}:{line}")


def _check_text(text: str, source: str) -> tuple[Config | None, list[Problem]]:
    data = _parse(text, source)
    if isinstance(data, Problem):
        return None, [data]
    shipped, shipped_problems = _shipped_bucket_sets()
    check = _Check(source, KeyLines(text))
    _check_sections(check, data)
    bucket_sets: dict[str, BucketSet | None] = {**shipped, **_bucket_sets(check, data)}
    products = _products(check, data, bucket_sets)
    named = data.get("products")
    product_codes = set(named) if isinstance(named, dict) else set()
    stage_names: set[str] = set()
    stages = _stages(check, data, stage_names)
    attributes = _attributes(check, data)
    segments = _segments(check, data, stage_names, product_codes, attributes)
    issuers = _issuers(check, data)
    letters = _letters(check, data)
    channels = _channels(check, data)
    declared = data.get("channels")
    actions = _actions(check, data, set(declared) if isinstance(declared, dict) else set())
    _contact_senders(check, data, channels)
    location_agents = _location_agents(check, data, issuers)
    governor = _governor(check, data, product_codes)
    costs = _costs(check, data)
    experiments = _experiments(check, data, sorted(stage_names))
    pre_due = _pre_due(check, data, set(declared) if isinstance(declared, dict) else set())
    _check_experiment_actions(check, data, actions, experiments)
    problems = shipped_problems + check.problems
    if problems:
        return None, problems
    valid_sets = {name: b for name, b in bucket_sets.items() if b is not None}
    terms = Terms(products, valid_sets, stages, segments)
    return Config(
        source,
        terms,
        data,
        issuers,
        letters,
        actions,
        channels,
        governor,
        costs,
        experiments,
        pre_due,
        attributes,
        location_agents,
    ), []


def _shipped_bucket_sets() -> tuple[dict[str, BucketSet | None], list[Problem]]:
    text = _shipped("bucket_sets.toml")
    data = _parse(text, SHIPPED_BUCKET_SETS_SOURCE)
    if isinstance(data, Problem):
        return {}, [data]
    check = _Check(SHIPPED_BUCKET_SETS_SOURCE, KeyLines(text))
    return _bucket_sets(check, data), check.problems


# ---------------------------------------------------------------- where problems go


@dataclass(slots=True)
class _Check:
    """The problems found so far in one text, and the lines to say where they are."""

    source: str
    lines: KeyLines
    problems: list[Problem] = field(default_factory=list)

    def add(self, code: str, message: str, path: KeyPath) -> None:
        self.problems.append(Problem(code, message, f"{self.source}:{self.lines.line(path)}"))


def _show(value: object) -> str:
    """A value as the user wrote it in TOML (strings quoted), or what it is when it is a container."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return str(value)


def _suggest(word: str, known: Sequence[str], cutoff: float = 0.6) -> str | None:
    """The known word closest to ``word``, if any is close; difflib's default cutoff for suggestions."""
    matches = difflib.get_close_matches(word, known, n=1, cutoff=cutoff)
    return matches[0] if matches else None


# Where unknown keys are allowed (other sections, a stage's actions), only this close a miss is a typo.
_TYPO = 0.75


def _unknown_key(check: _Check, key: str, known: Sequence[str], path: KeyPath) -> None:
    near = _suggest(key, known)
    hint = f"did you mean '{near}'?" if near else f"expected one of: {', '.join(known)}"
    check.add("config.unknown_key", f"unknown key '{key}'; {hint}", path + (key,))


def _keys(
    check: _Check, table: Mapping[str, Any], path: KeyPath, known: Sequence[str], required: Sequence[str]
) -> None:
    for key in table:
        if key not in known:
            _unknown_key(check, key, known, path)
    for key in required:
        if key not in table:
            check.add("config.missing_key", f"missing key '{key}' in {_name(path)}", path)


def _name(path: KeyPath) -> str:
    """How a table is called in messages: [products.card_cn], [[strategy.stages]] #2, bucket #3."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out = f"{out} #{part + 1}"
        else:
            out = f"{out}.{part}" if out else part
    return f"[{out}]"


def _table(check: _Check, value: object, path: KeyPath) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    check.add("config.bad_type", f"{_name(path)} must be a table, not {_show(value)}", path)
    return None


# ---------------------------------------------------------------- typed values


def _text(check: _Check, table: Mapping[str, Any], key: str, path: KeyPath) -> str | None:
    """A non-empty string, or None (a problem was added, or the key is absent)."""
    if key not in table:
        return None
    value = table[key]
    if not isinstance(value, str) or not value.strip():
        check.add("config.bad_type", f"{key} must be a non-empty string, not {_show(value)}", path + (key,))
        return None
    return value


def _choice(
    check: _Check, table: Mapping[str, Any], key: str, path: KeyPath, choices: Sequence[str]
) -> str | None:
    if key not in table:
        return None
    value = table[key]
    if isinstance(value, str) and value in choices:
        return value
    near = _suggest(value, choices) if isinstance(value, str) else None
    hint = f"; did you mean {_show(near)}?" if near else ""
    known = ", ".join(_show(c) for c in choices)
    check.add("config.bad_value", f"{key} must be one of {known}, not {_show(value)}{hint}", path + (key,))
    return None


def _int(
    check: _Check,
    table: Mapping[str, Any],
    key: str,
    path: KeyPath,
    *,
    minimum: int | None,
    why: str = "",
) -> int | None:
    if key not in table:
        return None
    value = table[key]
    if isinstance(value, int) and not isinstance(value, bool) and (minimum is None or value >= minimum):
        return value
    wanted = "a whole number" if minimum is None else f"a whole number, at least {minimum}"
    code = "config.bad_type" if not isinstance(value, int) or isinstance(value, bool) else "config.bad_value"
    check.add(code, f"{key} must be {wanted}, not {_show(value)}{why}", path + (key,))
    return None


def _bool(check: _Check, table: Mapping[str, Any], key: str, path: KeyPath) -> bool | None:
    if key not in table:
        return None
    value = table[key]
    if isinstance(value, bool):
        return value
    check.add("config.bad_type", f"{key} must be true or false, not {_show(value)}", path + (key,))
    return None


def _decimal(
    check: _Check, table: Mapping[str, Any], key: str, path: KeyPath, *, what: str, example: str
) -> Decimal | None:
    """A rate or an amount, exact: a string like "0.0005" or an integer, never a TOML float; >= 0."""
    if key not in table:
        return None
    value = table[key]
    where = path + (key,)
    if isinstance(value, float):
        message = (
            f"{key} = {value} is a TOML float; write {what} as strings, e.g. {example}, to keep them exact"
        )
        check.add("config.float_number", message, where)
        return None
    try:
        number = to_decimal(value) if isinstance(value, str | int) else None
    except MoneyError:
        number = None
    if number is None:
        check.add(
            "config.bad_type", f"{key} must be a decimal number like {example}, not {_show(value)}", where
        )
        return None
    if number < 0:
        check.add("config.bad_value", f"{key} must not be negative, not {_show(value)}", where)
        return None
    return number


def _amount(
    check: _Check, table: Mapping[str, Any], key: str, path: KeyPath, currency: str | None
) -> Decimal | None:
    """An amount that fits the currency's minor unit (no fractions of a cent)."""
    number = _decimal(check, table, key, path, what="amounts", example=_AMOUNT_EXAMPLE)
    if number is None or currency is None:
        return number
    digits = CURRENCIES[currency].minor_digits
    try:
        fits = number == number.quantize(quantum(currency))
    except InvalidOperation:  # more digits than the decimal context holds: far too large to be a fee
        fits = False
    if not fits:
        message = f"{key} = {_show(table[key])} does not fit {currency}, which has {digits} decimal places"
        check.add("config.bad_value", message, path + (key,))
        return None
    return number


# ---------------------------------------------------------------- sections


def _check_sections(check: _Check, data: Mapping[str, Any]) -> None:
    """Other sections are allowed (later code reads them), but a near miss of ours is a typo."""
    for key in data:
        if key in SECTIONS:
            continue
        near = _suggest(key, SECTIONS, _TYPO)
        if near:
            check.add("config.unknown_section", f"unknown section '{key}'; did you mean '{near}'?", (key,))


def _section(check: _Check, data: Mapping[str, Any], key: str) -> dict[str, Any]:
    """A top-level table of tables (``[products.CODE]``), with any entry that is not a table reported."""
    if key not in data:
        return {}
    section = _table(check, data[key], (key,))
    if section is None:
        return {}
    out: dict[str, Any] = {}
    for name, value in section.items():
        table = _table(check, value, (key, name))
        if table is not None:
            out[name] = table
    return out


# ---------------------------------------------------------------- bucket sets


def _bucket_sets(check: _Check, data: Mapping[str, Any]) -> dict[str, BucketSet | None]:
    """Every [bucket_sets.NAME] by name; None for one that has problems (so it still counts as defined)."""
    raw = data.get("bucket_sets")
    # A set with problems (even one that is not a table) still counts as defined, so a product naming it
    # gets no second, misleading "not defined".
    out: dict[str, BucketSet | None] = dict.fromkeys(raw if isinstance(raw, dict) else (), None)
    for name, table in _section(check, data, "bucket_sets").items():
        out[name] = _bucket_set(check, name, table, ("bucket_sets", name))
    return out


def _bucket_set(check: _Check, name: str, table: Mapping[str, Any], path: KeyPath) -> BucketSet | None:
    before = len(check.problems)
    _keys(check, table, path, BUCKET_SET_KEYS, required=("buckets",))
    current = _text(check, table, "current", path) or CURRENT_STAGE
    items = table.get("buckets")
    if items is None:
        return None
    if not isinstance(items, list) or not items:
        message = 'buckets must be a non-empty array like [{ name = "M1", min = 1, max = 30 }, ...]'
        check.add("config.bad_type", message, path + ("buckets",))
        return None
    buckets: list[Bucket | None] = [
        _bucket(check, item, path + ("buckets", i)) for i, item in enumerate(items)
    ]
    _check_ranges(check, buckets, path + ("buckets",))
    seen: set[str] = set()
    for i, bucket in enumerate(buckets):
        if bucket is None:
            continue
        where = path + ("buckets", i, "name")
        if bucket.name in seen:
            check.add("config.bucket_duplicate", f"bucket name '{bucket.name}' is used twice", where)
        if bucket.name == current:
            message = f"bucket name '{bucket.name}' is the name of 0 days (current = {_show(current)})"
            check.add("config.bucket_duplicate", message, where)
        seen.add(bucket.name)
    if len(check.problems) > before:
        return None
    return BucketSet(name, tuple(b for b in buckets if b is not None), current)


def _bucket(check: _Check, item: object, path: KeyPath) -> Bucket | None:
    if not isinstance(item, dict):
        message = f'each bucket must be a table like {{ name = "M1", min = 1, max = 30 }}, not {_show(item)}'
        check.add("config.bad_type", message, path)
        return None
    before = len(check.problems)
    _keys(check, item, path, BUCKET_KEYS, required=("name", "min"))
    name = _text(check, item, "name", path)
    low = _int(check, item, "min", path, minimum=None)
    high = _int(check, item, "max", path, minimum=None)
    if name is None or low is None or len(check.problems) > before:
        return None
    if high is not None and low > high:
        message = f"bucket '{name}' has min {low} greater than max {high}"
        check.add("config.bucket_range", message, path + ("max",))
        return None
    return Bucket(name, low, high)


def _check_ranges(check: _Check, buckets: Sequence[Bucket | None], path: KeyPath) -> None:
    """Fineract's rule: ranges in order from 1 day, each starting the day after the last ends, open-ended."""
    first, last = buckets[0], buckets[-1]
    if first is not None and first.min != 1:
        message = f"the first bucket '{first.name}' must start at 1 day (min = 1), not {first.min}"
        check.add("config.bucket_start", message, path + (0, "min"))
    for i in range(1, len(buckets)):
        before, bucket = buckets[i - 1], buckets[i]
        if before is None or bucket is None:
            continue
        if before.max is None:
            message = (
                f"only the last bucket may be open-ended (no max): '{before.name}' has no max "
                f"but '{bucket.name}' follows it"
            )
            check.add("config.bucket_open", message, path + (i - 1,))
            continue
        ends = f"'{before.name}' (ends at {before.max}) and '{bucket.name}' (starts at {bucket.min})"
        if bucket.min > before.max + 1:
            message = f"gap between buckets {ends}; '{bucket.name}' should start at {before.max + 1}"
            check.add("config.bucket_gap", message, path + (i,))
        elif bucket.min <= before.max:
            message = f"buckets {ends} overlap; '{bucket.name}' should start at {before.max + 1}"
            check.add("config.bucket_overlap", message, path + (i,))
    if last is not None and last.max is not None:
        message = (
            f"the last bucket '{last.name}' must be open-ended (leave out max) "
            f"so that every day past {last.max} has a bucket"
        )
        check.add("config.bucket_closed", message, path + (len(buckets) - 1, "max"))


# ---------------------------------------------------------------- products


def _products(
    check: _Check, data: Mapping[str, Any], bucket_sets: Mapping[str, BucketSet | None]
) -> dict[str, Product]:
    tables = _section(check, data, "products")
    if not data.get("products"):
        check.add("config.no_products", "no products: add a [products.CODE] table for each product", ())
    out: dict[str, Product] = {}
    for code, table in tables.items():
        product = _product(check, code, table, ("products", code), bucket_sets)
        if product is not None:
            out[code] = product
    return out


def _product(
    check: _Check,
    code: str,
    table: Mapping[str, Any],
    path: KeyPath,
    bucket_sets: Mapping[str, BucketSet | None],
) -> Product | None:
    before = len(check.problems)
    _keys(check, table, path, PRODUCT_KEYS, required=PRODUCT_REQUIRED)
    kind = _choice(check, table, "kind", path, PRODUCT_KINDS)
    currency = _choice(check, table, "currency", path, tuple(CURRENCIES))
    grace_days = _int(check, table, "grace_days", path, minimum=0)
    calendar = _choice(check, table, "calendar", path, CALENDARS)
    bucket_set = _text(check, table, "bucket_set", path)
    if bucket_set is not None and bucket_set not in bucket_sets:
        known = sorted(bucket_sets)
        near = _suggest(bucket_set, known)
        hint = f"did you mean '{near}'?" if near else f"known: {', '.join(known)}"
        message = f"bucket_set '{bucket_set}' is not defined; {hint}"
        check.add("config.unknown_bucket_set", message, path + ("bucket_set",))
    order = _allocation_order(check, table, path)
    charges = Charges()
    if "charges" in table:
        charges_table = _table(check, table["charges"], path + ("charges",))
        if charges_table is not None:
            charges = _charges(check, charges_table, path + ("charges",), kind, currency)
    if (
        len(check.problems) > before
        or kind is None
        or currency is None
        or grace_days is None
        or calendar is None
        or bucket_set is None
    ):
        return None
    return Product(code, kind, currency, grace_days, bucket_set, calendar, order, charges)


def _allocation_order(check: _Check, table: Mapping[str, Any], path: KeyPath) -> tuple[str, ...]:
    if "allocation_order" not in table:
        return COMPONENTS
    value = table["allocation_order"]
    where = path + ("allocation_order",)
    example = json.dumps(list(COMPONENTS))
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        message = f"allocation_order must be an array of components like {example}, not {_show(value)}"
        check.add("config.bad_type", message, where)
        return COMPONENTS
    details = []
    unknown = [c for c in value if c not in COMPONENTS]
    twice = sorted({c for c in value if value.count(c) > 1})
    missing = [c for c in COMPONENTS if c not in value]
    if unknown:
        details.append(f"unknown: {', '.join(unknown)}")
    if twice:
        details.append(f"twice: {', '.join(twice)}")
    if missing:
        details.append(f"missing: {', '.join(missing)}")
    if details:
        message = f"allocation_order must list each of {', '.join(COMPONENTS)} once ({'; '.join(details)})"
        check.add("config.allocation_order", message, where)
        return COMPONENTS
    return tuple(value)


def _charges(
    check: _Check, table: Mapping[str, Any], path: KeyPath, kind: str | None, currency: str | None
) -> Charges:
    _keys(check, table, path, CHARGES_KEYS, required=())
    penalty = _decimal(check, table, "penalty_daily_rate", path, what="rates", example=_RATE_EXAMPLE)
    mode = _choice(check, table, "card_interest_mode", path, CARD_INTEREST_MODES)
    card_rate = _decimal(check, table, "card_daily_rate", path, what="rates", example=_RATE_EXAMPLE)
    if kind is not None and kind != "card":
        if mode is not None and mode != "none":
            message = f"card_interest_mode = {_show(mode)} applies to cards only; this product is {kind!r}"
            check.add("config.card_only", message, path + ("card_interest_mode",))
        if card_rate:
            message = f"card_daily_rate applies to cards only; this product is {kind!r}"
            check.add("config.card_only", message, path + ("card_daily_rate",))
    late_fee = LateFee()
    if "late_fee" in table:
        fee_table = _table(check, table["late_fee"], path + ("late_fee",))
        checked = None if fee_table is None else _late_fee(check, fee_table, path + ("late_fee",), currency)
        late_fee = checked if checked is not None else late_fee
    return Charges(
        penalty_daily_rate=penalty if penalty is not None else Decimal(0),
        card_interest_mode=mode or "none",
        card_daily_rate=card_rate if card_rate is not None else Decimal(0),
        late_fee=late_fee,
    )


def _late_fee(check: _Check, table: Mapping[str, Any], path: KeyPath, currency: str | None) -> LateFee | None:
    before = len(check.problems)
    _keys(check, table, path, LATE_FEE_KEYS, required=("mode",))
    mode = _choice(check, table, "mode", path, LATE_FEE_MODES)
    percent = _decimal(check, table, "percent", path, what="rates", example='"0.05"')
    if percent is not None and percent > 1:
        shown = _show(table["percent"])
        message = f'percent is a fraction of the unpaid minimum: write "0.05" for 5 %, not {shown}'
        check.add("config.bad_value", message, path + ("percent",))
    floor = _amount(check, table, "floor", path, currency)
    cap = _amount(check, table, "cap", path, currency)
    flat = _amount(check, table, "flat", path, currency)
    limit = _bool(check, table, "limit_to_minimum", path)
    if mode is not None:
        for key in table:
            if key in LATE_FEE_KEYS and key != "mode" and key not in LATE_FEE_USES[mode]:
                message = f"{key} is not used when mode = {_show(mode)}; remove it or change the mode"
                check.add("config.late_fee_unused", message, path + (key,))
        for key in LATE_FEE_NEEDS[mode]:
            if key not in table:
                check.add("config.missing_key", f"mode = {_show(mode)} needs {key}", path + ("mode",))
    if floor is not None and cap is not None and floor > cap:
        check.add("config.bad_value", f"floor {floor} is greater than cap {cap}", path + ("floor",))
    if len(check.problems) > before or mode is None:
        return None
    return LateFee(
        mode=mode,
        percent=percent if percent is not None else Decimal(0),
        floor=floor,
        cap=cap,
        flat=flat if flat is not None else Decimal(0),
        limit_to_minimum=bool(limit),
    )


# ---------------------------------------------------------------- stages


def _stages(check: _Check, data: Mapping[str, Any], names: set[str]) -> tuple[Stage, ...]:
    """The default stages (``[[strategy.stages]]``); ``names`` collects every stage name seen."""
    no_stages = "no collection stages: add [[strategy.stages]] tables, from least to most severe"
    if "strategy" not in data:
        check.add("config.no_stages", no_stages, ())
        return ()
    strategy = _table(check, data["strategy"], ("strategy",))
    if strategy is None:
        return ()
    items = strategy.get("stages")
    if items is None or items == []:
        check.add("config.no_stages", no_stages, ("strategy",))
        return ()
    return _ladder(check, items, ("strategy", "stages"), names)


def _ladder(check: _Check, items: object, base: KeyPath, names: set[str]) -> tuple[Stage, ...]:
    """One ladder of stages (the default one or a segment's), from least to most severe."""
    tables = _tables_at(check, items, base)
    if tables is None:
        return ()
    found: list[tuple[int, Stage]] = []
    for i, item in enumerate(tables):
        path: KeyPath = (*base, i)
        table = _table(check, item, path)
        if table is None:
            continue
        stage = _stage(check, table, path)
        if stage is None:
            continue
        if stage.name in names:
            message = f"stage name '{stage.name}' is used twice"
            if base != ("strategy", "stages"):
                message += (
                    " (stage names are unique across the default stages and every segment's: the "
                    "history and the exports name a stage alone)"
                )
            check.add("config.stage_duplicate", message, path + ("name",))
            continue
        names.add(stage.name)
        found.append((i, stage))
    _check_reachable(check, found, base)
    return tuple(stage for _, stage in found)


def _tables_at(check: _Check, items: object, path: KeyPath) -> list[object] | None:
    """``items`` when it is an array of tables (``[[strategy.stages]]``, ...), else a problem and None."""
    if isinstance(items, list):
        return items
    dotted = ".".join(part for part in path if isinstance(part, str))
    message = f"{path[-1]} must be an array of tables ([[{dotted}]]), not {_show(items)}"
    check.add("config.bad_type", message, path)
    return None


def _strategy_tables(check: _Check, data: Mapping[str, Any], key: str) -> list[object] | None:
    """``[[strategy.KEY]]`` when the file has it (None when it has not, or it is not an array of tables)."""
    strategy = data.get("strategy")
    if not isinstance(strategy, dict) or key not in strategy:
        return None
    return _tables_at(check, strategy[key], ("strategy", key))


def _stage_tables(data: Mapping[str, Any]) -> list[tuple[KeyPath, dict[str, Any]]]:
    """Every stage table with its path: the default stages, then each segment's, in order."""
    strategy = data.get("strategy")
    if not isinstance(strategy, dict):
        return []
    found: list[tuple[KeyPath, dict[str, Any]]] = []
    ladders: list[tuple[KeyPath, object]] = [(("strategy", "stages"), strategy.get("stages"))]
    segments = strategy.get("segments")
    if isinstance(segments, list):
        for k, segment in enumerate(segments):
            if isinstance(segment, dict):
                ladders.append((("strategy", "segments", k, "stages"), segment.get("stages")))
    for base, items in ladders:
        if isinstance(items, list):
            found += [((*base, i), t) for i, t in enumerate(items) if isinstance(t, dict)]
    return found


def _attributes(check: _Check, data: Mapping[str, Any]) -> dict[str, str]:
    """``[attributes]``: ``name = "number"`` or ``"text"`` for each account attribute a segment may use."""
    if "attributes" not in data:
        return {}
    path: KeyPath = ("attributes",)
    table = _table(check, data["attributes"], path)
    if table is None:
        return {}
    found: dict[str, str] = {}
    for name, kind in table.items():
        where = path + (name,)
        if not ATTRIBUTE_NAME.fullmatch(name) or name in ATTRIBUTE_RESERVED:
            why = (
                f"is a column of the attributes file itself ({', '.join(ATTRIBUTE_RESERVED)})"
                if name in ATTRIBUTE_RESERVED
                else "must start with a small letter and hold only small letters, digits and '_' (40 at most)"
            )
            check.add("config.bad_value", f"attribute name {_show(name)} {why}", where)
        elif kind not in ATTRIBUTE_KINDS:
            message = (
                f"attribute {name} must be {' or '.join(repr(k) for k in ATTRIBUTE_KINDS)}, not {_show(kind)}"
            )
            check.add("config.bad_value", message, where)
        else:
            found[name] = str(kind)
    return found


def _attribute_conditions(
    check: _Check, raw: object, path: KeyPath, declared: Mapping[str, str]
) -> tuple[AttributeCondition, ...]:
    """A ``when``'s ``attributes = { risk_score = { min = "600" }, branch = ["north"] }``."""
    table = _table(check, raw, path)
    if table is None:
        return ()
    found: list[AttributeCondition] = []
    for name, value in table.items():
        where = path + (name,)
        kind = declared.get(name)
        if kind is None:
            known = ", ".join(sorted(declared)) or "none is declared"
            check.add(
                "config.unknown_attribute",
                f"attribute '{name}' is not declared in [attributes] (declared: {known})",
                where,
            )
            continue
        if kind == "text":
            if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
                message = (
                    f'{name} is a text attribute: give the values it may have, like ["north"], '
                    f"not {_show(value)}"
                )
                check.add("config.bad_type", message, where)
                continue
            found.append(AttributeCondition(name, kind, tuple(value)))
            continue
        bounds = _table(check, value, where)
        if bounds is None:
            continue
        _keys(check, bounds, where, ("min", "max"), ())
        low = _attribute_number(check, bounds, "min", where)
        high = _attribute_number(check, bounds, "max", where)
        if "min" not in bounds and "max" not in bounds:
            check.add("config.bad_value", f'{name} needs min, max or both, like {{ min = "600" }}', where)
        elif low is not None and high is not None and low > high:
            check.add("config.bad_value", f"{name}: min {low} is more than max {high}", where)
        elif (low is not None or "min" not in bounds) and (high is not None or "max" not in bounds):
            found.append(AttributeCondition(name, kind, (), low, high))
    return tuple(found)


def _attribute_number(check: _Check, table: Mapping[str, Any], key: str, path: KeyPath) -> Decimal | None:
    """A bound of a number attribute: exact (a string or an integer), at most ATTRIBUTE_SCALE decimals."""
    if key not in table:
        return None
    value = table[key]
    where = path + (key,)
    number: Decimal | None = None
    if isinstance(value, str | int) and not isinstance(value, bool):
        try:
            number = Decimal(str(value).strip())
        except ArithmeticError:
            number = None
    if number is None or not number.is_finite():
        check.add(
            "config.bad_type", f'{key} must be a number like "600" or "0.25", not {_show(value)}', where
        )
        return None
    if abs(number) >= ATTRIBUTE_LIMIT or number != number.quantize(Decimal(1).scaleb(-ATTRIBUTE_SCALE)):
        message = (
            f"{key} must be less than {ATTRIBUTE_LIMIT:,} with at most {ATTRIBUTE_SCALE} decimals, "
            f"not {value}"
        )
        check.add("config.bad_value", message, where)
        return None
    return number


def _segments(
    check: _Check,
    data: Mapping[str, Any],
    names: set[str],
    products: set[str],
    attributes: Mapping[str, str],
) -> tuple[Segment, ...]:
    """``[[strategy.segments]]``: each a ``when`` and its own stages, the first that matches wins."""
    items = _strategy_tables(check, data, "segments")
    if items is None:
        return ()
    base: KeyPath = ("strategy", "segments")
    found: list[tuple[int, Segment]] = []
    seen: set[str] = set()
    for k, item in enumerate(items):
        path: KeyPath = (*base, k)
        table = _table(check, item, path)
        if table is None:
            continue
        before = len(check.problems)
        _keys(check, table, path, SEGMENT_KEYS, ("name", "when", "stages"))
        name = _text(check, table, "name", path)
        if name is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            message = f"name {_show(name)} may hold only letters, digits, '_', '.' and '-'"
            check.add("config.bad_value", message, path + ("name",))
        elif name is not None and (name in seen or name == DEFAULT_SEGMENT):
            why = (
                "is the segment of the accounts no segment takes"
                if name == DEFAULT_SEGMENT
                else "is used twice"
            )
            check.add("config.segment_duplicate", f"segment name '{name}' {why}", path + ("name",))
        when = (
            _when(check, table.get("when"), path + ("when",), products, attributes)
            if "when" in table
            else None
        )
        named = len(check.problems) == before and name is not None
        stages = _ladder(check, table["stages"], path + ("stages",), names) if "stages" in table else ()
        if "stages" in table and isinstance(table["stages"], list) and not table["stages"]:
            check.add("config.no_stages", f"segment '{name or '?'}' has no stages", path + ("stages",))
        # A segment whose stages have problems still takes its accounts: it may make a later one dead.
        if named and name is not None and when is not None:
            seen.add(name)
            found.append((k, Segment(name, when, stages)))
    _check_segments_reachable(check, found, base)
    return tuple(segment for _, segment in found)


def _when(
    check: _Check, raw: object, path: KeyPath, products: set[str], attributes: Mapping[str, str]
) -> SegmentWhen | None:
    table = _table(check, raw, path)
    if table is None:
        return None
    before = len(check.problems)
    for key in table:
        if key not in WHEN_KEYS:
            if key.startswith("max_"):
                message = (
                    f"'{key}': a segment takes accounts by lower bounds only (an account whose arrears grow "
                    "would leave a segment with an upper bound, and the day it entered its stage could not "
                    "be found again); write the tiers from the highest min_ down, the first that matches wins"
                )
                check.add("config.unknown_key", message, path + (key,))
            else:
                _unknown_key(check, key, WHEN_KEYS, path)
    chosen = {key: _names(check, table, key, path) for key in ("products", "jurisdictions")}
    for code in chosen["products"]:
        if code not in products:
            near = _suggest(code, sorted(products))
            hint = f"; did you mean '{near}'?" if near else ""
            check.add(
                "config.unknown_product",
                f"product '{code}' is not a [products.*]{hint}",
                path + ("products",),
            )
    for code in chosen["jurisdictions"]:
        if code not in JURISDICTIONS:
            message = f"jurisdiction '{code}' is not one of {', '.join(JURISDICTIONS)}"
            check.add("config.bad_value", message, path + ("jurisdictions",))
    amount = _decimal(check, table, "min_amount_past_due", path, what="amounts", example='"1000.00"')
    balance = _decimal(check, table, "min_balance", path, what="amounts", example='"5000.00"')
    for key, value in (("min_amount_past_due", amount), ("min_balance", balance)):
        if value is not None and value <= 0:
            check.add("config.bad_value", f"{key} must be more than 0 (0 always holds)", path + (key,))
    conditions = (
        _attribute_conditions(check, table["attributes"], path + ("attributes",), attributes)
        if "attributes" in table
        else ()
    )
    if not table:
        message = (
            "when has no condition, so every account would match; put these stages in [[strategy.stages]]"
        )
        check.add("config.segment_no_condition", message, path)
    if len(check.problems) > before:
        return None
    return SegmentWhen(chosen["products"], chosen["jurisdictions"], amount, balance, conditions)


def _names(check: _Check, table: Mapping[str, Any], key: str, path: KeyPath) -> tuple[str, ...]:
    """A non-empty list of codes (``products = ["CARD"]``); absent: empty (any)."""
    if key not in table:
        return ()
    value = table[key]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        check.add(
            "config.bad_type", f"{key} must be a non-empty list of codes, not {_show(value)}", path + (key,)
        )
        return ()
    return tuple(value)


def _check_segments_reachable(check: _Check, segments: Sequence[tuple[int, Segment]], base: KeyPath) -> None:
    """The first matching segment wins, so a segment is dead when an earlier one matches whenever it
    does: each of the earlier one's conditions is one of its own, no wider."""
    for n, (k, later) in enumerate(segments):
        for _, earlier in segments[:n]:
            if _covers(earlier.when, later.when):
                message = (
                    f"segment '{later.name}' can never be chosen: segment '{earlier.name}' (earlier, so it "
                    f"wins) matches whenever '{later.name}' does"
                )
                check.add("config.segment_unreachable", message, (*base, k))
                break


def _covers(a: SegmentWhen, b: SegmentWhen) -> bool:
    """Whether every account ``b`` takes is also taken by ``a``."""
    for key in ("products", "jurisdictions"):
        mine, theirs = getattr(a, key), getattr(b, key)
        if mine and (not theirs or not set(theirs) <= set(mine)):
            return False
    for key in ("min_amount_past_due", "min_balance"):
        mine, theirs = getattr(a, key), getattr(b, key)
        if mine is not None and (theirs is None or theirs < mine):
            return False
    for condition in a.attributes:
        other = next((c for c in b.attributes if c.name == condition.name), None)
        if other is None:
            return False
        if condition.kind == "text" and not set(other.values) <= set(condition.values):
            return False
        if condition.min is not None and (other.min is None or other.min < condition.min):
            return False
        if condition.max is not None and (other.max is None or other.max > condition.max):
            return False
    return True


def _stage(check: _Check, table: Mapping[str, Any], path: KeyPath) -> Stage | None:
    before = len(check.problems)
    known = ("name", *STAGE_CONDITIONS)
    for key in table:
        # Other keys (``actions``, ...) belong to later parts of the strategy; a near miss of ours is a typo.
        if key not in known and (key.startswith("min_") or _suggest(key, known, _TYPO)):
            _unknown_key(check, key, known, path)
    if "name" not in table:
        check.add("config.missing_key", f"missing key 'name' in {_name(path)}", path)
    name = _text(check, table, "name", path)
    always = " (0 always holds)"
    days = _int(check, table, "min_days_past_due", path, minimum=1, why=always)
    delinquency = _int(check, table, "min_delinquency_days", path, minimum=1, why=always)
    amount = _decimal(check, table, "min_amount_past_due", path, what="amounts", example='"100.00"')
    if amount is not None and amount == 0:
        message = "min_amount_past_due must be more than 0 (0 always holds)"
        check.add("config.bad_value", message, path + ("min_amount_past_due",))
        amount = None
    missed = _int(check, table, "min_missed_dues", path, minimum=1, why=always)
    if name is not None and name.strip().lower() == CURRENT_STAGE:
        message = f"'{CURRENT_STAGE}' is the stage of accounts that match no stage; choose another name"
        check.add("config.stage_reserved", message, path + ("name",))
    if not any(key in table for key in STAGE_CONDITIONS):
        message = (
            f"stage '{name or '?'}' has no condition, so every account would be in it; "
            f"set at least one of {', '.join(STAGE_CONDITIONS)}"
        )
        check.add("config.stage_no_condition", message, path)
    if len(check.problems) > before or name is None:
        return None
    return Stage(name, days, delinquency, amount, missed)


def _conditions(stage: Stage) -> dict[str, int | Decimal]:
    values = {key: getattr(stage, key) for key in STAGE_CONDITIONS}
    return {key: value for key, value in values.items() if value is not None}


def _check_reachable(check: _Check, stages: Sequence[tuple[int, Stage]], base: KeyPath) -> None:
    """The most severe matching stage wins, so a stage is dead when a later one matches whenever it does.

    A later stage Y matches whenever X does when each of Y's conditions is also one of X's with a threshold
    no higher (Y asks for less). Kill Bill checks its overdue states the same way, in order.
    """
    for n, (i, stage) in enumerate(stages):
        mine = _conditions(stage)
        for _, later in stages[n + 1 :]:
            theirs = _conditions(later)
            if all(key in mine and theirs[key] <= mine[key] for key in theirs):
                message = (
                    f"stage '{stage.name}' can never be chosen: stage '{later.name}' (later, more severe) "
                    f"matches whenever '{stage.name}' does"
                )
                check.add("config.stage_unreachable", message, (*base, i))
                break


# ---------------------------------------------------------------- issuer and letters


def _lines(check: _Check, table: Mapping[str, Any], key: str, path: KeyPath) -> tuple[str, ...] | None:
    """A non-empty array of non-empty strings (postal address lines)."""
    if key not in table:
        return None
    value = table[key]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        message = f'{key} must be an array of lines like ["1 Main Street", "Springfield"], not {_show(value)}'
        check.add("config.bad_type", message, path + (key,))
        return None
    return tuple(value)


def _issuers(check: _Check, data: Mapping[str, Any]) -> dict[str, Issuer]:
    """[issuer.CN], [issuer.US], [issuer.UK]: who sends the letters to customers of each jurisdiction."""
    out: dict[str, Issuer] = {}
    for code, table in _section(check, data, "issuer").items():
        path: KeyPath = ("issuer", code)
        if code not in CALENDARS:
            near = _suggest(code, CALENDARS)
            hint = f"; did you mean '{near}'?" if near else ""
            message = f"[issuer.{code}] names no jurisdiction: use {', '.join(CALENDARS)}{hint}"
            check.add("config.bad_value", message, path)
            continue
        issuer = _issuer(check, code, table, path)
        if issuer is not None:
            out[code] = issuer
    return out


def _issuer(check: _Check, code: str, table: Mapping[str, Any], path: KeyPath) -> Issuer | None:
    before = len(check.problems)
    required = tuple(k for k in ISSUER_KEYS if k not in ISSUER_OPTIONAL)
    _keys(check, table, path, ISSUER_KEYS, required=required)
    skipped = ("address", "dispute_address", "repayment_accounts")
    texts = {k: _text(check, table, k, path) for k in ISSUER_KEYS if k not in skipped}
    address = _lines(check, table, "address", path)
    dispute = _lines(check, table, "dispute_address", path)
    portal = texts.get("portal_url")
    if portal is not None and not portal.startswith("https://"):
        check.add(
            "config.bad_value",
            f"portal_url must start with https://, not {_show(portal)}",
            path + ("portal_url",),
        )
    accounts: list[RepaymentAccount] = []
    items = table.get("repayment_accounts")
    if items is not None:
        if not isinstance(items, list) or not items:
            message = "repayment_accounts must be one or more [[issuer.XX.repayment_accounts]] tables"
            check.add("config.bad_type", message, path + ("repayment_accounts",))
        else:
            for i, item in enumerate(items):
                where = path + ("repayment_accounts", i)
                entry = _table(check, item, where)
                if entry is None:
                    continue
                _keys(check, entry, where, REPAYMENT_KEYS, required=("bank", "name", "number"))
                bank, name, number = (_text(check, entry, k, where) for k in ("bank", "name", "number"))
                details = _text(check, entry, "details", where) or ""
                if bank and name and number:
                    accounts.append(RepaymentAccount(bank, name, number, details))
    if len(check.problems) > before or address is None:
        return None
    return Issuer(
        jurisdiction=code,
        legal_name=texts["legal_name"] or "",
        address=address,
        hotline=texts["hotline"] or "",
        hours=texts["hours"] or "",
        website=texts["website"] or "",
        portal_url=portal or "",
        repayment_accounts=tuple(accounts),
        branch=texts["branch"] or "",
        app=texts["app"] or "",
        complaint=texts["complaint"] or "",
        email=texts["email"] or "",
        collector=texts.get("collector") or "",
        dispute_address=dispute or (),
    )


def _letters(check: _Check, data: Mapping[str, Any]) -> LetterSettings:
    """[letters]: deadlines per kind and the clarity lint's limits; defaults for what is left out."""
    defaults = LetterSettings()
    if "letters" not in data:
        return defaults
    table = _table(check, data["letters"], ("letters",))
    if table is None:
        return defaults
    path: KeyPath = ("letters",)
    _keys(check, table, path, LETTERS_KEYS, required=())
    words = _int(check, table, "max_sentence_words", path, minimum=5)
    chars = _int(check, table, "max_sentence_chars", path, minimum=10)
    days = _int(check, table, "token_days", path, minimum=1)
    grade = _decimal(check, table, "max_grade", path, what="grade levels", example='"10"')
    deadlines = dict(DEFAULT_DEADLINES)
    raw_deadlines = table.get("deadlines", {})
    if not isinstance(raw_deadlines, dict):
        check.add("config.bad_type", "[letters.deadlines] must be a table", ("letters", "deadlines"))
        raw_deadlines = {}
    for kind, value in raw_deadlines.items():
        where: KeyPath = ("letters", "deadlines", kind)
        entry = _table(check, value, where)
        if entry is None:
            continue
        if kind not in LETTER_KINDS:
            _unknown_key(check, kind, tuple(LETTER_KINDS), ("letters", "deadlines"))
            continue
        deadline = _deadline(check, kind, entry, where)
        if deadline is not None:
            deadlines[kind] = deadline
    return LetterSettings(
        deadlines=deadlines,
        max_sentence_words=words if words is not None else defaults.max_sentence_words,
        max_grade=float(grade) if grade is not None else defaults.max_grade,
        max_sentence_chars=chars if chars is not None else defaults.max_sentence_chars,
        token_days=days if days is not None else defaults.token_days,
    )


def _deadline(check: _Check, kind: str, table: Mapping[str, Any], path: KeyPath) -> Deadline | None:
    before = len(check.problems)
    shipped = DEFAULT_DEADLINES[kind]
    _keys(check, table, path, DEADLINE_KEYS, required=("days",))
    days = _int(check, table, "days", path, minimum=0)
    unit = _choice(check, table, "unit", path, DEADLINE_UNITS) or shipped.unit
    minimum = _int(check, table, "minimum", path, minimum=0)
    service = _int(check, table, "service_days", path, minimum=0)
    minimum = shipped.minimum if minimum is None else minimum
    if minimum < shipped.minimum or (unit != shipped.unit and shipped.minimum):
        message = (
            f"the legal minimum for {kind} is {shipped.minimum} {shipped.unit} days; "
            "it cannot be lowered or counted in other days"
        )
        check.add("config.deadline_minimum", message, path + ("minimum" if "minimum" in table else "unit",))
    if days is not None and days < minimum:
        message = f"{kind} deadline of {days} {unit} days is shorter than the minimum of {minimum}"
        check.add("config.deadline_minimum", message, path + ("days",))
    if len(check.problems) > before or days is None:
        return None
    return Deadline(days, unit, minimum, shipped.service_days if service is None else service)


# ---------------------------------------------------------------- where each key is


class KeyLines:
    """The 1-based line of every key, table header and array item of a TOML text, by key path.

    ``[table]`` and ``[[array]]`` headers, dotted keys, quoted keys, arrays and inline tables over several
    lines are followed; an ``[[array]]`` element is addressed by its index (``("strategy", "stages", 2)``),
    as is an item of an inline array (``("bucket_sets", "cn_m", "buckets", 3)``). Meant for text tomllib
    has accepted; on anything else it still ends, with fewer lines known.
    """

    def __init__(self, text: str) -> None:
        self._found: dict[KeyPath, int] = {}
        _Scanner(text, self._found).document()

    def line(self, path: Sequence[str | int]) -> int:
        """The line of ``path``, else of its nearest enclosing key or table; 1 when none is known."""
        key = tuple(path)
        while key:
            if key in self._found:
                return self._found[key]
            key = key[:-1]
        return 1


_BARE_KEY = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", "e": "\x1b", '"': '"', "\\": "\\"}
_SCALAR_ENDS = ("", ",", "]", "}", "\n", "\r", "#")


class _Scanner:
    """A reader of TOML structure only: it records where keys are and skips over values."""

    def __init__(self, text: str, found: dict[KeyPath, int]) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.found = found
        self.arrays: dict[KeyPath, int] = {}  # last index of each [[array]], by its full path

    def peek(self, ahead: int = 0) -> str:
        i = self.pos + ahead
        return self.text[i] if i < len(self.text) else ""

    def take(self, count: int = 1) -> str:
        chunk = self.text[self.pos : self.pos + count]
        self.line += chunk.count("\n")
        self.pos += len(chunk)
        return chunk

    def blank(self, newlines: bool) -> None:
        """Skip spaces, tabs and comments, and line breaks when asked."""
        while True:
            c = self.peek()
            if c in (" ", "\t") or (newlines and c in ("\r", "\n")):
                self.take()
            elif c == "#":
                while self.peek() not in ("", "\n"):
                    self.take()
            else:
                return

    def mark(self, path: KeyPath, line: int, exact: bool = True) -> None:
        # Parents first mentioned here (dotted keys, [a.b] before [a]) get this line until defined.
        for n in range(1, len(path)):
            self.found.setdefault(path[:n], line)
        if exact:
            self.found[path] = line
        else:
            self.found.setdefault(path, line)

    def document(self) -> None:
        table: KeyPath = ()
        while self.peek():
            self.blank(newlines=True)
            start = self.pos
            if self.peek() == "[":
                table = self.header()
            elif self.peek():
                self.keyval(table)
            if self.pos == start:
                self.take()  # never stall on text that is not TOML

    def header(self) -> KeyPath:
        line = self.line
        double = self.peek(1) == "["
        self.take(2 if double else 1)
        keys = self.key()
        self.blank(newlines=False)
        self.take(2 if double else 1)
        path: KeyPath = ()
        for n, key in enumerate(keys):
            path += (key,)
            if n < len(keys) - 1 and path in self.arrays:
                path += (self.arrays[path],)  # [a.b] under [[a]] is inside a's last element
        if double:
            index = self.arrays.get(path, -1) + 1
            self.arrays[path] = index
            self.mark(path, line, exact=False)
            path += (index,)
        self.mark(path, line)
        return path

    def key(self) -> list[str]:
        parts: list[str] = []
        while True:
            self.blank(newlines=False)
            if self.peek() in ('"', "'"):
                parts.append(self.string())
            else:
                start = self.pos
                while self.peek() in _BARE_KEY:
                    self.take()
                parts.append(self.text[start : self.pos])
            self.blank(newlines=False)
            if self.peek() != ".":
                return parts
            self.take()

    def keyval(self, table: KeyPath) -> None:
        line = self.line
        path = table + tuple(self.key())
        self.mark(path, line)
        self.blank(newlines=False)
        if self.peek() == "=":
            self.take()
        self.blank(newlines=False)
        self.value(path)

    def value(self, path: KeyPath) -> None:
        c = self.peek()
        if c in ('"', "'"):
            self.string()
        elif c == "[":
            self.array(path)
        elif c == "{":
            self.inline_table(path)
        else:
            while self.peek() not in _SCALAR_ENDS:
                self.take()

    def array(self, path: KeyPath) -> None:
        self.take()
        index = 0
        while True:
            self.blank(newlines=True)
            c = self.peek()
            if c in ("", "]"):
                self.take()
                return
            if c == ",":
                self.take()
                continue
            self.mark(path + (index,), self.line)
            start = self.pos
            self.value(path + (index,))
            if self.pos == start:
                self.take()
            index += 1

    def inline_table(self, path: KeyPath) -> None:
        self.take()
        while True:
            self.blank(newlines=True)
            c = self.peek()
            if c in ("", "}"):
                self.take()
                return
            if c == ",":
                self.take()
                continue
            start = self.pos
            self.keyval(path)
            if self.pos == start:
                self.take()

    def string(self) -> str:
        """Skip a string of any of the four kinds; the text of a one-line string (a quoted key)."""
        quote = self.take()
        basic = quote == '"'
        if self.peek() == quote and self.peek(1) == quote:
            self.take(2)
            while self.peek():
                if basic and self.peek() == "\\":
                    self.take(2)
                elif self.text.startswith(quote * 3, self.pos):
                    self.take(3)
                    while self.peek() == quote:  # up to two quotes may end the content itself
                        self.take()
                    return ""
                else:
                    self.take()
            return ""
        chars: list[str] = []
        while self.peek() not in ("", quote, "\n"):
            c = self.take()
            if basic and c == "\\":
                chars.append(self.escape())
            else:
                chars.append(c)
        self.take()
        return "".join(chars)

    def escape(self) -> str:
        c = self.take()
        if c in ("u", "U"):
            digits = self.take(4 if c == "u" else 8)
            try:
                return chr(int(digits, 16))
            except ValueError:
                return digits
        return _ESCAPES.get(c, c)


# ---------------------------------------------------------------- actions

ACTION_KEYS = (
    "name",
    "channel",
    "kind",
    "offset_days",
    "repeat_every_days",
    "max_times",
    "at",
    "fallback",
    "experiment",
    "variants",
    "to",
)
EXPERIMENT_KEYS = ("name", "stages", "variants")
PRE_DUE_KEYS = ("name", "channel", "kind", "offset_days", "at", "fallback")
# The stage named in the outbox for a reminder before the due date: the account is not in collection.
PRE_DUE_STAGE = "current"
VARIANT_KEYS = ("name", "percent", "holdout")
# The outbox channel that carries each action channel (a letter goes by post).
CARRIER = {"letter": "post", "email": "email", "sms": "sms", "push": "push"}


def _actions(check: _Check, data: Mapping[str, Any], channels: set[str]) -> tuple[Action, ...]:
    """Every stage's actions (the default stages', then each segment's); an action on a channel with no
    ``[channels.*]`` table is a problem."""
    found: list[Action] = []
    for stage_path, table in _stage_tables(data):
        if "actions" not in table:
            continue
        stage = table.get("name")
        path: KeyPath = (*stage_path, "actions")
        items = _tables_at(check, table["actions"], path)
        if items is None:
            continue
        names: set[str] = set()
        for j, item in enumerate(items):
            where = path + (j,)
            action = _action(check, item, where, str(stage), j, channels)
            if action is None:
                continue
            if action.name in names:
                check.add(
                    "config.action_duplicate",
                    f"action name '{action.name}' is used twice in stage '{stage}'",
                    where,
                )
                continue
            names.add(action.name)
            found.append(action)
    return tuple(found)


def _action(
    check: _Check,
    item: object,
    path: KeyPath,
    stage: str,
    position: int,
    channels: set[str],
    *,
    pre_due: bool = False,
) -> Action | None:
    """One action; ``pre_due``: one of ``[[strategy.pre_due]]`` (before a due date: a negative
    ``offset_days``, once, kind ``pre_due`` unless said otherwise)."""
    table = _table(check, item, path)
    if table is None:
        return None
    before = len(check.problems)
    if pre_due:
        table = {"kind": "pre_due", **table}
        _keys(check, table, path, PRE_DUE_KEYS, ("channel", "offset_days"))
    else:
        _keys(check, table, path, ACTION_KEYS, ("channel", "kind"))
    channel = _choice(check, table, "channel", path, ACTION_CHANNELS)
    kind = _choice(check, table, "kind", path, (*LETTER_KINDS, *TASK_KINDS, *CONTACT_KINDS))
    to = _choice(check, table, "to", path, ACTION_TO) if "to" in table else "customer"
    if to == "contact":
        if channel is not None and channel not in CONTACT_CHANNELS:
            message = f"a third party is contacted by {' or '.join(CONTACT_CHANNELS)} only, not {channel}"
            check.add("config.bad_value", message, path + ("channel",))
        if kind is not None and kind not in CONTACT_KINDS:
            message = (
                f"a third party gets {', '.join(CONTACT_KINDS)} only, never {kind}: nothing about the debt "
                "goes to anyone but the customer (US-3P-01, CN-COL-07 Art 18, UK-CONC-04)"
            )
            check.add("config.bad_value", message, path + ("kind",))
        for key in ("fallback", "experiment"):
            if key in table:
                message = f'an action to = "contact" has no {key}'
                check.add("config.bad_value", message, path + (key,))
    elif to == "customer" and kind in CONTACT_KINDS:
        message = f'{kind} is written for a third party the customer named: add to = "contact"'
        check.add("config.bad_value", message, path + ("kind",))
    if channel == TASK_CHANNEL and kind is not None and kind not in TASK_KINDS:
        message = f"a task is one of {', '.join(TASK_KINDS)}, not {kind} (a message needs a message channel)"
        check.add("config.bad_value", message, path + ("kind",))
    elif channel is not None and channel != TASK_CHANNEL and kind in TASK_KINDS:
        message = f'{kind} is a task, not a message: write channel = "{TASK_CHANNEL}"'
        check.add("config.bad_value", message, path + ("channel",))
    if channel == TASK_CHANNEL:
        for key in ("at", "fallback"):
            if key in table:
                message = f"a task is not sent to the customer: it has no {key}"
                check.add("config.bad_value", message, path + (key,))
    # Unnamed, an action is named by what it does, not by its place in the list: inserting another action
    # above it must not change its idempotency key (that would send it again).
    name = (
        _text(check, table, "name", path)
        or f"{table.get('channel')}-{table.get('kind')}-{table.get('offset_days', 0)}"
    )
    if "|" in name:
        check.add("config.bad_value", f"name {_show(name)} must not contain '|'", path + ("name",))
    offset = _int(check, table, "offset_days", path, minimum=None if pre_due else 0)
    if pre_due and offset is not None and offset > -1:
        message = f"offset_days counts days before the due date here: -1 or less, not {offset}"
        check.add("config.bad_value", message, path + ("offset_days",))
    repeat = _int(check, table, "repeat_every_days", path, minimum=1)
    times = _int(check, table, "max_times", path, minimum=1)
    if times is not None and times > 1 and repeat is None:
        check.add("config.bad_value", "max_times above 1 needs repeat_every_days", path + ("max_times",))
    at: dt.time | None = None
    if "at" in table:
        raw = table["at"]
        try:
            at = (
                dt.time.fromisoformat(raw)
                if isinstance(raw, str) and re.fullmatch(r"\d\d:\d\d", raw)
                else None
            )
        except ValueError:
            at = None
        if at is None:
            check.add(
                "config.bad_value", f'at must be a local time like "10:00", not {_show(raw)}', path + ("at",)
            )
    fallback: list[str] = []
    if "fallback" in table:
        raw_fallback = table["fallback"]
        messages = tuple(c for c in ACTION_CHANNELS if c != TASK_CHANNEL)
        if not isinstance(raw_fallback, list) or not all(
            isinstance(c, str) and c in messages for c in raw_fallback
        ):
            known = ", ".join(_show(c) for c in messages)
            check.add(
                "config.bad_value",
                f"fallback must be a list of channels ({known}), not {_show(raw_fallback)}",
                path + ("fallback",),
            )
        elif len(set(raw_fallback)) != len(raw_fallback) or channel in raw_fallback:
            listed = ", ".join(str(c) for c in raw_fallback)
            message = f"fallback ({listed}) repeats a channel or names the action's own ({channel})"
            check.add("config.bad_value", message, path + ("fallback",))
        else:
            fallback = list(raw_fallback)
    if pre_due and kind is not None and kind != "pre_due":
        message = f"a reminder before the due date is kind pre_due, not {kind}"
        check.add("config.bad_value", message, path + ("kind",))
    experiment = _text(check, table, "experiment", path)
    variants: tuple[str, ...] = ()
    if "variants" in table:
        raw_variants = table["variants"]
        if (
            not isinstance(raw_variants, list)
            or not raw_variants
            or not all(isinstance(v, str) and v for v in raw_variants)
        ):
            message = f"variants must be a list of the experiment's variant names, not {_show(raw_variants)}"
            check.add("config.bad_type", message, path + ("variants",))
        else:
            variants = tuple(raw_variants)
    if ("experiment" in table) != ("variants" in table):
        check.add(
            "config.missing_key",
            "an action of an experiment names both experiment and variants (the arms that get it)",
            path,
        )
    if channel in ("email", "sms", "push") and kind is not None and kind not in CONTACT_KINDS:
        _check_words(check, channel, kind, path)
    for used in ([channel] if channel and channel != TASK_CHANNEL else []) + fallback:
        if CARRIER[used] not in channels:
            message = (
                f"the action sends by {used}, but there is no [channels.{CARRIER[used]}] table: "
                f"configure the channel or remove the action"
            )
            check.add(
                "config.channel_missing",
                message,
                path + ("channel",) if used == channel else path + ("fallback",),
            )
    if len(check.problems) > before or channel is None or kind is None:
        return None
    return Action(
        stage=stage,
        name=name,
        channel=channel,
        kind=kind,
        offset_days=offset or 0,
        repeat_every_days=repeat,
        max_times=times or 1,
        at=at,
        fallback=tuple(fallback),
        experiment=experiment,
        variants=variants,
        to=to or "customer",
    )


def _check_words(check: _Check, channel: str, kind: str, path: KeyPath) -> None:
    """An e-mail, SMS or push action needs that channel's words for its kind (``channels/templates``):
    a kind that has none in any locale would fail every message."""
    from duecourse.channels.content import shipped_templates
    from duecourse.letters.kinds import LOCALE_OF

    templates = shipped_templates()
    locales = [LOCALE_OF[j] for j in LETTER_KINDS[kind].jurisdictions]
    if not any(templates.has(kind, locale, channel) for locale in locales):
        message = f"{kind} has no {channel} words in any locale (it goes by letter only): send it by letter"
        check.add("config.no_words", message, path + ("kind",))


# ---------------------------------------------------------------- channels

CHANNEL_KEYS: dict[str, tuple[str, ...]] = {
    "email": (
        "transport",
        "host",
        "port",
        "starttls",
        "ssl",
        "user",
        "password_env",
        "from",
        "reply_to",
        "contact_from",
        "contact_reply_to",
        "dir",
        "timeout_seconds",
        "cafile",
    ),
    "sms": (
        "gateway",
        "host",
        "port",
        "system_id",
        "password_env",
        "system_type",
        "source_addr",
        "contact_source_addr",
        "url",
        "headers",
        "body",
        "id_field",
        "token_env",
        "dir",
        "timeout_seconds",
        "callback_token_env",
        "receipt_id_field",
        "receipt_status_field",
        "reply_from_field",
        "reply_to_field",
        "reply_text_field",
        "receipt_statuses",
    ),
    "push": ("transport", "url", "secret_env", "timeout_seconds"),
    "post": ("dir", "print_file"),
}
TRANSPORTS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    # channel: (the key naming the transport, its default, the choices)
    "email": ("transport", "smtp", ("smtp", "files")),
    "sms": ("gateway", "smpp", ("smpp", "http", "files")),
    "push": ("transport", "webhook", ("webhook",)),
    "post": ("transport", "drop", ("drop",)),
}
REQUIRED: dict[tuple[str, str], tuple[str, ...]] = {
    ("email", "smtp"): ("host", "from", "starttls"),
    ("email", "files"): ("dir", "from"),
    ("sms", "smpp"): ("host", "port", "system_id", "source_addr"),
    ("sms", "http"): ("url", "body", "source_addr"),
    ("sms", "files"): ("dir",),
    ("push", "webhook"): ("url", "secret_env"),
    ("post", "drop"): ("dir",),
}


@dataclass(frozen=True, slots=True)
class ChannelSettings:
    """One ``[channels.NAME]`` table, checked: the transport and its values (secrets stay in the
    environment: ``*_env`` names the variable, read when the dispatcher starts)."""

    channel: str
    transport: str
    values: dict[str, Any]


def _channels(check: _Check, data: Mapping[str, Any]) -> dict[str, ChannelSettings]:
    if "channels" not in data:
        return {}
    section = _table(check, data["channels"], ("channels",))
    if section is None:
        return {}
    found: dict[str, ChannelSettings] = {}
    for name, raw in section.items():
        path: KeyPath = ("channels", name)
        if name not in CHANNEL_KEYS:
            _unknown_key(check, name, tuple(CHANNEL_KEYS), ("channels",))
            continue
        table = _table(check, raw, path)
        if table is None:
            continue
        key, default, choices = TRANSPORTS[name]
        before = len(check.problems)
        _keys(check, table, path, CHANNEL_KEYS[name] + ((key,) if key not in CHANNEL_KEYS[name] else ()), ())
        transport = _choice(check, table, key, path, choices) if key in table else default
        if transport is None:
            continue
        for needed in REQUIRED[name, transport]:
            if needed not in table:
                check.add(
                    "config.missing_key",
                    f"missing key '{needed}' in [channels.{name}] ({key} {transport})",
                    path,
                )
        port = _int(check, table, "port", path, minimum=1)
        if port is not None and port > 65535:
            check.add("config.bad_value", f"port must be at most 65535, not {port}", path + ("port",))
        _int(check, table, "timeout_seconds", path, minimum=1)
        for key in ("headers", "body"):
            if key in table and (
                not isinstance(table[key], dict) or not all(isinstance(k, str) for k in table[key])
            ):
                check.add("config.bad_type", f"{key} must be a table, not {_show(table[key])}", path + (key,))
        if transport == "http" and isinstance(table.get("body"), dict):
            body = json.dumps(table["body"])
            missing = [field for field in ("{to}", "{text}") if field not in body]
            if missing:
                message = (
                    f"body never says {' or '.join(missing)}: the gateway would not know what to send where"
                )
                check.add("config.bad_value", message, path + ("body",))
        if name == "email" and table.get("user") and table.get("starttls") is False and not table.get("ssl"):
            message = "user is set without starttls or ssl: the password would cross the network in clear"
            check.add("config.bad_value", message, path + ("starttls",))
        for flag in ("starttls", "ssl", "print_file"):
            _bool(check, table, flag, path)
        statuses = table.get("receipt_statuses")
        outcomes = ("delivered", "bounced", "failed", "pending")
        if statuses is not None and (
            not isinstance(statuses, dict) or not all(v in outcomes for v in statuses.values())
        ):
            message = (
                "receipt_statuses maps the gateway's status words to one of "
                f'{", ".join(outcomes)}, like {{ DELIVRD = "delivered" }}, not {_show(statuses)}'
            )
            check.add("config.bad_value", message, path + ("receipt_statuses",))
        for env_key in ("password_env", "secret_env", "token_env", "callback_token_env"):
            value = table.get(env_key)
            if value is not None and (
                not isinstance(value, str) or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", value)
            ):
                message = (
                    f"{env_key} names an environment variable (like DUECOURSE_SMTP_PASSWORD), "
                    f"not {_show(value)}"
                )
                check.add("config.bad_value", message, path + (env_key,))
        if len(check.problems) == before:
            found[name] = ChannelSettings(name, transport, dict(table))
    return found


# The setting of a channel that names its sender to a third party (``services/third_parties.py``): the
# customer's own sender (``from``, ``source_addr``) may name collections, and a header or sender id
# reveals the debt as plainly as the words (US-3P-01: 1006.22(f); CN-COL-07 Art 18; EU-GDPR-01).
CONTACT_SENDERS: dict[str, tuple[str, ...]] = {
    "email": ("contact_from", "contact_reply_to"),
    "sms": ("contact_source_addr",),
}


def _debt_word(value: str) -> str:
    """The first word of ``value`` that would tell a third party of the debt (``reveals.contact`` of
    ``channels/checklists.toml``, every locale's, in their order), "" when none."""
    from duecourse.channels.content import channel_checklists

    for words in channel_checklists()["reveals"]["contact"].values():
        for pattern in words:
            found = re.search(pattern, value)
            if found:
                return found.group(0)
    return ""


def _contact_senders(check: _Check, data: Mapping[str, Any], channels: Mapping[str, ChannelSettings]) -> None:
    """A channel's contact sender names no debt (``reveals.contact`` of ``channels/checklists.toml``, in
    every locale), and an action ``to = "contact"`` needs its channel's contact sender: without it, a
    message to a contact would go out under the customer's sender."""
    for name, keys in CONTACT_SENDERS.items():
        section = data.get("channels")
        table = section.get(name) if isinstance(section, dict) else None
        if not isinstance(table, dict):
            continue
        for key in keys:
            if key not in table:
                continue
            path: KeyPath = ("channels", name, key)
            value = table[key]
            if not isinstance(value, str) or not value.strip():
                check.add("config.bad_type", f"{key} must be a non-empty string, not {_show(value)}", path)
                continue
            if name == "email" and "@" not in value:
                check.add("config.bad_value", f"{key} {_show(value)} holds no e-mail address", path)
            found = _debt_word(value)
            if found:
                message = (
                    f"{key} {_show(value)} reveals the debt to a third party with '{found}' "
                    "(US-3P-01, CN-COL-07 Art 18, EU-GDPR-01): name the institution only"
                )
                check.add("config.contact_sender", message, path)
    for stage_path, stage in _stage_tables(data):
        items = stage.get("actions")
        if not isinstance(items, list):
            continue
        for j, item in enumerate(items):
            if not isinstance(item, dict) or item.get("to") != "contact":
                continue
            channel = item.get("channel")
            if channel not in CONTACT_SENDERS or channel not in channels:
                continue  # another problem says so (not a contact channel, or no such channel)
            key = CONTACT_SENDERS[channel][0]
            if key not in channels[channel].values:
                message = (
                    f'an action to = "contact" on {channel} needs [channels.{channel}] {key}: the '
                    f"customer's sender may reveal the debt to the contact (US-3P-01, CN-COL-07 Art 18)"
                )
                check.add("config.contact_sender", message, (*stage_path, "actions", j, "channel"))


# A third-party collector's location request (12 CFR 1006.10(b)(1), FDCPA §1692b(1)): the collector
# identifies himself, says he is confirming or correcting location information, and names his employer
# only if expressly asked. So the message comes from a person, under senders and links that name neither
# the employer nor a debt, and the person's own number is the one to call back.
LOCATION_AGENT_KEYS = ("name", "phone", "email_from", "sms_from", "link_base")
LOCATION_AGENT_JURISDICTIONS = ("US",)
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


@dataclass(frozen=True, slots=True)
class LocationAgent:
    """Who asks a third party for a third-party collector's location information (``[location_agent.US]``).

    Attributes:
        name: the natural person who writes (the name the person uses at work, consistently).
        phone: the number that person answers, in E.164: the number the contact is asked to call.
        email_from: the e-mail sender, e.g. ``Jordan Lee <jordan.lee@locate.example>``.
        sms_from: the text message's sender number, in E.164 (a number, not a name).
        link_base: an https base URL served by the portal, on a host that names neither the employer nor
            a debt: the contact's opt-out link is ``{link_base}/opt-out/contact/TOKEN``.
    """

    name: str
    phone: str
    email_from: str
    sms_from: str
    link_base: str


def _location_agents(
    check: _Check, data: Mapping[str, Any], issuers: Mapping[str, Issuer]
) -> dict[str, LocationAgent]:
    """``[location_agent.US]``: every key given, numbers in E.164, a link base in https, and nothing in
    it that names the employer (an issuer's legal name, agency, website host or hotline) or a debt (the
    words of ``reveals.contact``)."""
    out: dict[str, LocationAgent] = {}
    for code, table in _section(check, data, "location_agent").items():
        path: KeyPath = ("location_agent", code)
        if code not in LOCATION_AGENT_JURISDICTIONS:
            message = (
                f"[location_agent.{code}]: a location agent speaks for a third-party collector, whose "
                f"location requests only {', '.join(LOCATION_AGENT_JURISDICTIONS)} law treats apart "
                "(12 CFR 1006.10(b)); elsewhere the institution's own contact senders are used"
            )
            check.add("config.bad_value", message, path)
            continue
        before = len(check.problems)
        _keys(check, table, path, LOCATION_AGENT_KEYS, required=LOCATION_AGENT_KEYS)
        texts = {key: _text(check, table, key, path) for key in LOCATION_AGENT_KEYS}
        for key in ("phone", "sms_from"):
            value = texts[key]
            if value is not None and not _E164.fullmatch(value):
                message = f"{key} {_show(value)} is not an E.164 phone number (like +12125550147)"
                check.add("config.bad_value", message, path + (key,))
        mail = texts["email_from"]
        if mail is not None and "@" not in mail:
            message = f"email_from {_show(mail)} holds no e-mail address"
            check.add("config.bad_value", message, path + ("email_from",))
        base = texts["link_base"]
        if base is not None and not base.startswith("https://"):
            message = f"link_base must start with https://, not {_show(base)}"
            check.add("config.bad_value", message, path + ("link_base",))
        employer = employer_names(issuers.values())
        for key in ("phone", "sms_from"):
            value = texts[key]
            hotline = _hotline_of(issuers.values(), value) if value is not None else None
            if hotline is not None:
                message = (
                    f"{key} {_show(value)} is the hotline of the employer ('{hotline}'): whoever answers or "
                    "sends from it names the employer to a third party (12 CFR 1006.10(b)(1), §1692b(1)); "
                    "use the agent's own number"
                )
                check.add("config.location_agent", message, path + (key,))
        for key in ("name", "email_from", "sms_from", "link_base"):
            value = texts[key]
            if value is None:
                continue
            folded = re.sub(r"[^a-z0-9]", "", value.lower())
            named = [name for name, bare in employer if bare and bare in folded]
            if named:
                message = (
                    f"{key} {_show(value)} names the employer ('{named[0]}'): a collector names his "
                    "employer to a third party only if expressly asked (12 CFR 1006.10(b)(1), §1692b(1))"
                )
                check.add("config.location_agent", message, path + (key,))
                continue
            found = _debt_word(value)
            if found:
                message = (
                    f"{key} {_show(value)} reveals the debt to a third party with '{found}' "
                    "(US-3P-01: 12 CFR 1006.10(b)(2), 1006.22(f))"
                )
                check.add("config.location_agent", message, path + (key,))
        if len(check.problems) == before:
            out[code] = LocationAgent(**{key: value or "" for key, value in texts.items()})
    return out


def _hotline_of(issuers: Iterable[Issuer], number: str) -> str | None:
    """The issuer hotline that ``number`` (E.164) dials, or None: the hotline's digits without a trunk
    prefix 0 end the number's ("(800) 123-4567" is +18001234567, "0113 496 0000" is +441134960000)."""
    digits = re.sub(r"[^0-9]", "", number)
    for issuer in issuers:
        own = re.sub(r"[^0-9]", "", issuer.hotline).lstrip("0")
        if len(own) >= 7 and digits.endswith(own):
            return issuer.hotline
    return None


# The legal form a company's name ends with, left out when the name is used in speech.
_LEGAL_FORM = re.compile(
    r"[,\s]+(N\.?A\.?|Inc\.?|L\.?L\.?C\.?|Ltd\.?|Limited|PLC|Corp\.?|Corporation|Co\.?|Company|"
    r"有限公司|股份有限公司)$",
    re.IGNORECASE,
)


def employer_names(issuers: Iterable[Issuer]) -> list[tuple[str, str]]:
    """(as written, folded to lower-case letters and digits) of every name that identifies the employer: each
    issuer's legal name and agency (``collector``) and the hosts of its website and portal."""
    names: list[str] = []
    for issuer in issuers:
        for name in (issuer.legal_name, issuer.collector):
            names.append(name)
            short = _LEGAL_FORM.sub("", name.strip())
            if short and short != name.strip():
                names.append(short)  # "Example Bank, N.A." is named by "Example Bank" too
        for url in (issuer.website, issuer.portal_url):
            host = re.sub(r"^[a-z]+://", "", url.strip().lower()).split("/")[0].removeprefix("www.")
            names.append(host)
    return [(name, re.sub(r"[^a-z0-9]", "", name.lower())) for name in names if name.strip()]


# ---------------------------------------------------------------- governor


def _governor(check: _Check, data: Mapping[str, Any], products: set[str]) -> GovernorSettings:
    if "governor" not in data:
        return GovernorSettings()
    path: KeyPath = ("governor",)
    table = _table(check, data["governor"], path)
    if table is None:
        return GovernorSettings()
    _keys(check, table, path, GOVERNOR_KEYS, ())
    daily = _int(check, table, "daily_contacts_per_customer", path, minimum=1)
    capped = _bool(check, table, "us_creditor_calls_capped", path)
    third: tuple[str, ...] = ()
    raw = table.get("third_party_products", [])
    if not isinstance(raw, list) or not all(isinstance(code, str) for code in raw):
        message = f"third_party_products must be a list of product codes, not {_show(raw)}"
        check.add("config.bad_type", message, path + ("third_party_products",))
    else:
        for code in raw:
            if code not in products:
                near = _suggest(code, sorted(products))
                hint = f"; did you mean '{near}'?" if near else f" (known: {', '.join(sorted(products))})"
                check.add(
                    "config.unknown_product",
                    f"third_party_products names '{code}', which is not a product{hint}",
                    path + ("third_party_products",),
                )
        third = tuple(raw)
    restarts = _states(check, table, "limitation_restarts_on_payment", path)
    for state in restarts:
        if state in NO_REVIVAL_BY_PAYMENT:
            message = (
                f"limitation_restarts_on_payment names {state}, where a payment does not start the period "
                f"again: {NO_REVIVAL_BY_PAYMENT[state]}"
            )
            check.add("config.bad_value", message, path + ("limitation_restarts_on_payment",))
    return GovernorSettings(
        daily_contacts_per_customer=daily if daily is not None else 1,
        us_creditor_calls_capped=capped if capped is not None else True,
        third_party_products=third,
        limitation_years=_limitation_years(check, table, path),
        limitation_restarts_on_payment=restarts,
        consent_required=_consent_required(check, table, path),
        third_party_contact_in=_jurisdictions(check, table, "third_party_contact_in", path),
    )


def _jurisdictions(check: _Check, table: Mapping[str, Any], key: str, path: KeyPath) -> tuple[str, ...]:
    """A list of jurisdictions (``["UK"]``); absent: none."""
    raw = table.get(key, [])
    if not isinstance(raw, list) or not all(isinstance(j, str) and j in JURISDICTIONS for j in raw):
        message = f"{key} must be a list of jurisdictions among {', '.join(JURISDICTIONS)}, not {_show(raw)}"
        check.add("config.bad_value", message, path + (key,))
        return ()
    return tuple(sorted(set(raw)))


CONSENT_CHANNELS = ("email", "sms", "push", "call")


def _consent_required(check: _Check, table: Mapping[str, Any], path: KeyPath) -> dict[str, tuple[str, ...]]:
    """``consent_required = { US = ["sms"] }``: per jurisdiction, the channels that need consent."""
    raw = table.get("consent_required", {})
    where = path + ("consent_required",)
    if not isinstance(raw, Mapping):
        check.add(
            "config.bad_type",
            f'consent_required must be a table like {{ US = ["sms"] }}, not {_show(raw)}',
            where,
        )
        return {}
    found: dict[str, tuple[str, ...]] = {}
    for jurisdiction, channels in raw.items():
        at = where + (str(jurisdiction),)
        if jurisdiction not in JURISDICTIONS:
            check.add(
                "config.bad_value",
                f"consent_required names {_show(jurisdiction)}, not one of {', '.join(JURISDICTIONS)}",
                at,
            )
            continue
        if not isinstance(channels, list) or not all(
            isinstance(c, str) and c in CONSENT_CHANNELS for c in channels
        ):
            check.add(
                "config.bad_value",
                f"consent_required.{jurisdiction} must be a list of channels among "
                f"{', '.join(CONSENT_CHANNELS)}, not {_show(channels)}",
                at,
            )
            continue
        found[str(jurisdiction)] = tuple(sorted(set(channels)))
    return found


def _states(check: _Check, table: Mapping[str, Any], key: str, path: KeyPath) -> tuple[str, ...]:
    """A list of US state codes (``["TX", "CA"]``); absent: none."""
    raw = table.get(key, [])
    where = path + (key,)
    if not isinstance(raw, list) or not all(isinstance(code, str) for code in raw):
        check.add(
            "config.bad_type", f'{key} must be a list of US state codes like ["TX"], not {_show(raw)}', where
        )
        return ()
    for code in raw:
        if code not in US_STATE_CODES:
            near = _suggest(code, sorted(US_STATE_CODES))
            hint = f"; did you mean '{near}'?" if near else ""
            check.add(
                "config.bad_value", f"{key} names {_show(code)}, which is not a US state code{hint}", where
            )
    return tuple(sorted({code for code in raw if code in US_STATE_CODES}))


def _limitation_years(check: _Check, table: Mapping[str, Any], path: KeyPath) -> dict[str, int]:
    """``limitation_years = { NY = 3, CA = 4 }``: whole years (1 to 30) per US state code."""
    raw = table.get("limitation_years", {})
    where = path + ("limitation_years",)
    if not isinstance(raw, Mapping):
        check.add(
            "config.bad_type", f"limitation_years must be a table like {{ NY = 3 }}, not {_show(raw)}", where
        )
        return {}
    years: dict[str, int] = {}
    for state, value in raw.items():
        if state not in US_STATE_CODES:
            near = _suggest(str(state), sorted(US_STATE_CODES))
            hint = f"; did you mean '{near}'?" if near else ""
            check.add(
                "config.bad_value",
                f"limitation_years names {_show(state)}, which is not a US state code (USPS, as NY){hint}",
                where + (str(state),),
            )
        elif isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 30:
            check.add(
                "config.bad_value",
                f"limitation_years.{state} must be whole years from 1 to 30, not {_show(value)}",
                where + (str(state),),
            )
        else:
            years[str(state)] = value
    return dict(sorted(years.items()))


# ---------------------------------------------------------------- costs


def _costs(check: _Check, data: Mapping[str, Any]) -> Costs:
    if "costs" not in data:
        return Costs()
    path: KeyPath = ("costs",)
    table = _table(check, data["costs"], path)
    if table is None:
        return Costs()
    _keys(check, table, path, COST_KEYS, ("currency",))
    currency = _text(check, table, "currency", path) or ""
    if currency and not re.fullmatch(r"[A-Z]{3}", currency):
        check.add(
            "config.bad_value",
            f"currency must be an ISO 4217 code like CNY, not {_show(currency)}",
            path + ("currency",),
        )
    per: dict[str, Decimal] = {}
    for channel in ("email", "push", "letter", "call"):
        amount = _decimal(check, table, channel, path, what="amounts", example='"0.01"')
        if amount is not None:
            per[channel] = amount
    segment = _decimal(check, table, "sms_segment", path, what="amounts", example='"0.05"')
    return Costs(currency, per, segment if segment is not None else Decimal(0))


# ---------------------------------------------------------------- experiments


def _experiments(
    check: _Check, data: Mapping[str, Any], stage_names: Sequence[str]
) -> tuple[Experiment, ...]:
    items = _strategy_tables(check, data, "experiments")
    if items is None:
        return ()
    base: KeyPath = ("strategy", "experiments")
    found: list[Experiment] = []
    names: set[str] = set()
    for i, item in enumerate(items):
        path: KeyPath = (*base, i)
        table = _table(check, item, path)
        if table is None:
            continue
        before = len(check.problems)
        _keys(check, table, path, EXPERIMENT_KEYS, ("name", "variants"))
        name = _text(check, table, "name", path)
        if name is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            message = f"name {_show(name)} may hold only letters, digits, '_', '.' and '-'"
            check.add("config.bad_value", message, path + ("name",))
        if name is not None and name in names:
            check.add(
                "config.experiment_duplicate", f"experiment name '{name}' is used twice", path + ("name",)
            )
        stages: tuple[str, ...] = ()
        raw_stages = table.get("stages", [])
        if not isinstance(raw_stages, list) or not all(isinstance(x, str) for x in raw_stages):
            check.add(
                "config.bad_type",
                f"stages must be a list of stage names, not {_show(raw_stages)}",
                path + ("stages",),
            )
        else:
            for stage in raw_stages:
                if stage not in stage_names:
                    near = _suggest(stage, stage_names)
                    hint = f"; did you mean '{near}'?" if near else ""
                    check.add(
                        "config.unknown_stage",
                        f"stages names '{stage}', which is not a stage{hint}",
                        path + ("stages",),
                    )
            stages = tuple(raw_stages)
        variants = _variants(check, table.get("variants"), path + ("variants",))
        if len(check.problems) == before and name is not None:
            names.add(name)
            found.append(Experiment(name, stages, variants))
    return tuple(found)


def _variants(check: _Check, raw: object, path: KeyPath) -> tuple[Variant, ...]:
    if not isinstance(raw, list) or len(raw) < 2:
        example = '{ name = "champion", percent = 90 }'
        message = f"variants must list at least two arms, like {example}, not {_show(raw)}"
        check.add("config.bad_type", message, path)
        return ()
    found: list[Variant] = []
    seen: set[str] = set()
    for j, item in enumerate(raw):
        where: KeyPath = (*path, j)
        table = _table(check, item, where)
        if table is None:
            continue
        _keys(check, table, where, VARIANT_KEYS, ("name", "percent"))
        name = _text(check, table, "name", where)
        percent = _int(check, table, "percent", where, minimum=1)
        holdout = _bool(check, table, "holdout", where)
        if name is not None and name in seen:
            check.add("config.variant_duplicate", f"variant name '{name}' is used twice", where + ("name",))
            continue
        if name is not None and percent is not None:
            seen.add(name)
            found.append(Variant(name, percent, bool(holdout)))
    total = sum(v.percent for v in found)
    if len(found) == len(raw) and total != 100:
        check.add("config.bad_value", f"the variants' percents add up to {total}, not 100", path)
    return tuple(found)


def _check_experiment_actions(
    check: _Check, data: Mapping[str, Any], actions: Sequence[Action], experiments: Sequence[Experiment]
) -> None:
    """An action of an experiment names an experiment that covers its stage, and arms it has that are not
    held out."""
    by_name = {e.name: e for e in experiments}
    strategy = data.get("strategy")
    raw = strategy.get("experiments", []) if isinstance(strategy, dict) else []
    declared = {t.get("name") for t in raw if isinstance(t, dict)} if isinstance(raw, list) else set()
    stage_tables = _stage_tables(data)
    for action in actions:
        if action.experiment is None:
            continue
        stage_path, stage_table = next(
            ((p, t) for p, t in stage_tables if t.get("name") == action.stage), stage_tables[0]
        )
        tables = stage_table.get("actions", [])
        tables = tables if isinstance(tables, list) else []
        j = next(
            (
                n
                for n, t in enumerate(tables)
                if isinstance(t, dict) and t.get("experiment") == action.experiment
            ),
            0,
        )
        path: KeyPath = (*stage_path, "actions", j)
        experiment = by_name.get(action.experiment)
        if experiment is None and action.experiment in declared:
            continue  # declared with problems of its own, reported there
        if experiment is None:
            known = ", ".join(sorted(by_name)) or "none is defined"
            check.add(
                "config.unknown_experiment",
                f"experiment '{action.experiment}' is not a [[strategy.experiments]] ({known})",
                path + ("experiment",),
            )
            continue
        if not experiment.covers(action.stage):
            check.add(
                "config.bad_value",
                f"experiment '{experiment.name}' does not cover stage '{action.stage}' "
                f"(its stages: {', '.join(experiment.stages)})",
                path + ("experiment",),
            )
        arms = {v.name: v for v in experiment.variants}
        for variant in action.variants:
            if variant not in arms:
                check.add(
                    "config.unknown_variant",
                    f"variant '{variant}' is not an arm of experiment '{experiment.name}' "
                    f"({', '.join(arms)})",
                    path + ("variants",),
                )
            elif arms[variant].holdout:
                check.add(
                    "config.bad_value",
                    f"variant '{variant}' is held out: its accounts get no automated contact in the "
                    f"experiment's stages, so an action for it would never be planned",
                    path + ("variants",),
                )


# ---------------------------------------------------------------- reminders before the due date


def _pre_due(check: _Check, data: Mapping[str, Any], channels: set[str]) -> tuple[Action, ...]:
    items = _strategy_tables(check, data, "pre_due")
    if items is None:
        return ()
    path: KeyPath = ("strategy", "pre_due")
    found: list[Action] = []
    names: set[str] = set()
    for j, item in enumerate(items):
        action = _action(check, item, (*path, j), PRE_DUE_STAGE, j, channels, pre_due=True)
        if action is None:
            continue
        if action.name in names:
            message = f"action name '{action.name}' is used twice in [[strategy.pre_due]]"
            check.add("config.action_duplicate", message, (*path, j))
            continue
        names.add(action.name)
        found.append(action)
    return tuple(found)
