"""Third parties the customers named: who they are, and when the law lets the institution ask them to pass
on a message.

**The data.** ``duecourse import contacts FILE`` (.csv or .parquet): ``contact_id``, ``customer_id``,
``relation`` (``RELATIONS``: emergency, family, employer, reference), ``name``, ``phone`` (E.164) and/or
``email`` (at least one), and optionally ``locale`` and ``timezone`` (the customer's when empty) and
``agreed_on`` (the day the customer named them). All or nothing, every problem as
``FILE:ROW:COLUMN: reason``; the same rows again change nothing; a contact id already stored with other
content is refused (a changed contact is a new contact id: what was sent to whom stays true).

**What may be sent.** A strategy action with ``to = "contact"`` (sms or e-mail, a kind of
``CONTACT_KINDS``: ``location_request``) sends to each of the customer's contacts a message that names
the institution and asks them to pass on a request that the customer get in touch. It never names a
debt, an amount or a collection: its words are not a letter's (``channels/content.py`` gives it the
contact's, the customer's and the institution's names and no account data at all, and the lint refuses
a contact template that mentions the debt).

**The rules** (``screen``, before the governor; each number and citation from the pack's
``[third_parties]``):

1. ``allowed``: the UK pack forbids it (UK-CONC-04, CONC 7.9.6R-7.9.8G: never disclose the debt to a third
   party); the institution may open it with ``[governor] third_party_contact_in = ["UK"]``, its counsel's
   choice (fail closed).
2. The contact asked to hear no more (a STOP reply from their number, their opt-out link): suppressed
   for good (CN-COL-09: stop if the contact refuses). A refusal is the person's, not the contact id's:
   a stop of any contact with the same phone (whatever the channel) or the same e-mail counts (a contact
   imported again under a new id is the same person), and an opt-out link stops all of them.
3. The contact has no phone (for sms) or no e-mail (for email), or the one on file was found bad (a
   message to it bounced): suppressed.
4. ``once``: at most one communication with a contact, ever (US-3P-01, 12 CFR 1006.10(b)(3)): a
   contact with a message in the outbox (any state but cancelled or failed), or any contact of the same
   phone or e-mail with one, is not contacted again, and of one run's messages to one person only the
   first goes.
4b. **A third-party collector** (US accounts of ``[governor] third_party_products``, Reg F in full): a
   collector identifies himself, says he is confirming or correcting location information, and names his
   employer only if expressly asked (12 CFR 1006.10(b)(1), FDCPA §1692b(1)). Such an account's contacts
   get the collector's words (``location_request_collector``: from the person of ``[location_agent.US]``,
   under that person's senders and link host, with the number that person answers; the lint's
   ``contact.employer`` and ``config check`` keep the employer's names out of them), and without a
   ``[location_agent.US]`` they are not asked: suppressed (US-3P-01). The creditor's own US accounts
   are asked in the institution's words, as the other rules say.
5. **Unreachable** (``unreachable_days`` N): the debtor must be unreachable (CN-COL-07 Art 14, CN-COL-09;
   in the US the creditor must lack location information, 1006.10(b)). Defined from what the store
   holds: for each of the customer's electronic channels (sms by the phone, e-mail by the address) the
   customer either has no such contact point, or the one on file was found bad (a hard bounce, an
   undeliverable number: ``bad_contact_points``) on a day at least N days before the run's day
   (``bad since`` + N <= D: on day N it holds, on day N-1 not yet); and no message to the customer was
   sent, delivered or is still under way in the N days before D (one that went through proves the
   customer reachable; one whose outcome is not known yet is not counted as failed). A customer with
   neither a phone nor an e-mail on file is unreachable. Letters are not counted: the store learns
   little of a letter's fate.
6. Of one run's messages to one person (several accounts, several actions, several contact ids of the
   same phone or e-mail), only the first goes (priority, then key; on a re-run of the same day, one in
   the outbox already comes first, so the message planned is still the one that goes): a contact hears
   from us once a day at most.

Then the governor decides the rest as for any message (``engine/governor.py``), with two differences:
the contact hours are the **contact's** (``timezone``, the customer's when empty), and only the holds
that stop contact with the customer as a whole apply (a dispute, a not-mine claim, bankruptcy,
deceased, a promise, a plan, an opt-out of all contact); a customer's opt-out of one channel, or missing
consent to it, is about the customer's own phone or mailbox, not the contact's. A ``deceased`` hold
suppresses location requests too: asking someone to have a dead person call back is no use and hurts;
a message to the estate is another kind, not built here. The daily cap counts a contact's messages for
the contact, not for the customer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import ColumnElement, Connection, Engine, Select, insert, or_, select

from duecourse.bootstrap import App
from duecourse.domain.errors import Problem, ProblemsError
from duecourse.io.rows import check_header, read_rows
from duecourse.rulepacks.packs import third_party_rules
from duecourse.store import outbox as store
from duecourse.store.frames import append_in, read_frame
from duecourse.store.tables import customers, third_parties, third_party_stops

MAX_PROBLEMS = 1000
RELATIONS: tuple[str, ...] = ("emergency", "family", "employer", "reference")
LOCALES: tuple[str, ...] = ("zh-CN", "en-US", "en-GB")
COLUMNS = ("contact_id", "customer_id", "relation", "name")
OPTIONAL = ("phone", "email", "locale", "timezone", "agreed_on")
STORED: dict[str, pl.DataType] = {
    "contact_id": pl.String(),
    "customer_id": pl.String(),
    "relation": pl.String(),
    "name": pl.String(),
    "phone": pl.String(),
    "email": pl.String(),
    "locale": pl.String(),
    "timezone": pl.String(),
    "agreed_on": pl.Date(),
}
_PHONE = re.compile(r"\+[1-9][0-9]{6,14}")  # E.164, as the customers' import checks it
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_ID = re.compile(r"[!-~]+")  # printable ASCII without spaces
MAX_TEXT = 200


@dataclass(frozen=True, slots=True)
class ContactsImported:
    """What an import of contacts did: contacts added, contacts already there (the same)."""

    file: str
    rows: int
    added: int
    unchanged: int


def link_subject(contact_id: str) -> str:
    """What a contact's opt-out link signs: an opaque hash of the contact id (no personal data in a URL)."""
    return "tp-" + hashlib.sha256(f"contact|{contact_id}".encode()).hexdigest()[:24]


@cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def read_file(path: Path, known: set[str] | None) -> pl.DataFrame:
    """The contacts of a contacts file (``STORED`` and its ``row``), every problem raised at once;
    ``known``: the customer ids the store holds (None: not checked)."""
    file = str(path)
    header, data = read_rows(path)
    check_header(header, COLUMNS, OPTIONAL, file, "contacts")
    problems: list[Problem] = []
    at = {name: header.index(name) for name in header}
    rows: list[tuple[object, ...]] = []
    seen: dict[str, int] = {}
    for number, row in data:
        if len(row) > len(header):
            problems.append(
                Problem("import.extra_cells", "the row has more cells than the header", f"{file}:{number}")
            )
            continue
        cells = row + [""] * (len(header) - len(row))

        def cell(name: str, cells: list[str] = cells) -> str:
            return cells[at[name]].strip() if name in at else ""

        def where(name: str, number: int = number) -> str:
            return f"{file}:{number}:{name}"

        def bad(code: str, message: str, column: str) -> None:
            problems.append(Problem(code, message, where(column)))

        before = len(problems)
        contact, customer, relation = cell("contact_id"), cell("customer_id"), cell("relation")
        name, phone, email = cell("name"), cell("phone"), cell("email")
        locale, zone, agreed = cell("locale"), cell("timezone"), cell("agreed_on")
        if not contact:
            bad("import.missing_value", "contact_id is empty", "contact_id")
        elif not _ID.fullmatch(contact) or "|" in contact or len(contact) > MAX_TEXT:
            bad("import.bad_value", "contact_id must be printable ASCII without spaces or '|'", "contact_id")
        if not customer:
            bad("import.missing_value", "customer_id is empty", "customer_id")
        elif known is not None and customer not in known:
            bad("import.unknown_customer", f"customer {customer} is not in the store", "customer_id")
        if relation not in RELATIONS:
            bad(
                "import.bad_value",
                f"relation must be one of {', '.join(RELATIONS)}, not {relation!r}",
                "relation",
            )
        if not name:
            bad("import.missing_value", "name is empty", "name")
        elif len(name) > MAX_TEXT or any(ord(c) < 32 for c in name):
            bad("import.bad_text", f"name must be at most {MAX_TEXT} characters of text", "name")
        if phone and not _PHONE.fullmatch(phone):
            bad(
                "import.bad_phone",
                f"{phone!r} is not an E.164 phone number ('+', country code and number, like +8613800138000)",
                "phone",
            )
        if email and not _EMAIL.fullmatch(email):
            bad("import.bad_email", f"{email!r} does not look like an e-mail address", "email")
        if not phone and not email:
            bad("import.missing_value", "a contact needs a phone or an e-mail (both are empty)", "phone")
        if locale and locale not in LOCALES:
            bad(
                "import.bad_value",
                f"locale must be one of {', '.join(LOCALES)} or empty, not {locale!r}",
                "locale",
            )
        if zone and zone not in _zones():
            bad(
                "import.unknown_timezone",
                f"unknown time zone {zone!r} (expected an IANA name like Asia/Shanghai, or empty)",
                "timezone",
            )
        day: dt.date | None = None
        if agreed:
            try:
                day = dt.date.fromisoformat(agreed) if len(agreed) == 10 else None
            except ValueError:
                day = None
            if day is None:
                bad(
                    "import.bad_date",
                    f"agreed_on must be a date as YYYY-MM-DD or empty, not {agreed!r}",
                    "agreed_on",
                )
        if len(problems) > before:
            if len(problems) >= MAX_PROBLEMS:
                break
            continue
        if contact in seen:
            bad("import.repeated_key", f"contact {contact} is on row {seen[contact]} already", "contact_id")
            continue
        seen[contact] = number
        rows.append((contact, customer, relation, name, phone, email, locale, zone, day, number))
    if problems:
        raise ProblemsError(problems[:MAX_PROBLEMS])
    return pl.DataFrame(rows, schema=STORED | {"row": pl.Int64()}, orient="row")


def import_contacts(app: App, path: Path, now: dt.datetime) -> ContactsImported:
    """Import a contacts file, all or nothing (see the module's text)."""
    known = set(read_frame(app.engine, select(customers.c.customer_id))["customer_id"].to_list())
    frame = read_file(path, known)
    with store.write_transaction(app.engine) as connection:
        ids = frame["contact_id"].to_list()
        stored_rows: list[dict[str, object]] = []
        for start in range(0, len(ids), 500):
            query = select(*(third_parties.c[name] for name in STORED)).where(
                third_parties.c.contact_id.in_(ids[start : start + 500])
            )
            stored_rows += [dict(r._mapping) for r in connection.execute(query)]
        stored = pl.DataFrame(stored_rows, schema=STORED)
        both = frame.join(stored, on="contact_id", how="left", suffix="_stored")
        compared = [name for name in STORED if name != "contact_id"]
        differs = pl.any_horizontal([pl.col(n).ne_missing(pl.col(f"{n}_stored")) for n in compared])
        changed = both.filter(pl.col("customer_id_stored").is_not_null() & differs)
        if changed.height:
            problems = []
            for r in changed.head(MAX_PROBLEMS).iter_rows(named=True):
                column = next(n for n in compared if r[n] != r[f"{n}_stored"])
                problems.append(
                    Problem(
                        "import.changed_value",
                        f"contact {r['contact_id']} is stored already with another {column} "
                        f"({r[f'{column}_stored']!r}); a changed contact needs a new contact_id",
                        f"{path}:{r['row']}:{column}",
                    )
                )
            raise ProblemsError(problems)
        new = both.filter(pl.col("customer_id_stored").is_null()).select(list(STORED))
        new = new.with_columns(
            pl.col("contact_id").map_elements(link_subject, return_dtype=pl.String()).alias("link_subject"),
            pl.lit(now).alias("imported_at"),
        )
        append_in(connection, "third_parties", new)
    return ContactsImported(str(path), frame.height, new.height, frame.height - new.height)


# ---------------------------------------------------------------- stops


def stop_contacts(connection: Connection, contact_ids: Iterable[str], now: dt.datetime, how: str) -> int:
    """Record, within the caller's transaction, that these contacts asked to hear no more (a contact
    stopped already keeps its first record); the number newly stopped."""
    wanted = sorted(set(contact_ids))
    if not wanted:
        return 0
    have = set(
        connection.execute(
            select(third_party_stops.c.contact_id).where(third_party_stops.c.contact_id.in_(wanted))
        ).scalars()
    )
    fresh = [c for c in wanted if c not in have]
    if fresh:
        connection.execute(
            insert(third_party_stops), [{"contact_id": c, "stopped_at": now, "how": how} for c in fresh]
        )
    return len(fresh)


def stop_by_sender(
    connection: Connection, senders: Sequence[str], channel: str, now: dt.datetime, how: str
) -> int:
    """The contacts whose phone (sms) or e-mail sent an opt-out: stopped for good; the number stopped."""
    column = third_parties.c.phone if channel == "sms" else third_parties.c.email
    wanted = sorted({s for s in senders if s})
    if not wanted:
        return 0
    found = connection.execute(select(third_parties.c.contact_id).where(column.in_(wanted))).scalars().all()
    return stop_contacts(connection, found, now, how)


def stop_by_subject(connection: Connection, subject: str, now: dt.datetime, how: str) -> int:
    """The contact whose opt-out link was followed (``link_subject``), and every contact with the same
    phone or e-mail (the same person, imported again under another id): stopped, within the caller's
    transaction; the number stopped (0: stopped already, or the link names no contact)."""
    named = third_parties.c.link_subject == subject
    found = connection.execute(select(third_parties.c.phone, third_parties.c.email).where(named)).all()
    if not found:
        return 0
    phones = sorted({r.phone for r in found if r.phone})
    emails = sorted({r.email for r in found if r.email})
    same = select(third_parties.c.contact_id).where(
        or_(
            named,
            third_parties.c.phone.in_(phones),
            third_parties.c.email.in_(emails),
        )
    )
    return stop_contacts(connection, connection.execute(same).scalars().all(), now, how)


def stopped(connection: Connection, contact_ids: Iterable[str]) -> set[str]:
    """Which of these contacts asked to hear no more."""
    wanted = sorted(set(contact_ids))
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        query = select(third_party_stops.c.contact_id).where(
            third_party_stops.c.contact_id.in_(wanted[start : start + 500])
        )
        found |= set(connection.execute(query).scalars())
    return found


def contacts_of(engine: Engine, customer_ids: Iterable[str] | None = None) -> pl.DataFrame:
    """The stored contacts (``STORED``), of these customers when given."""
    query = select(*(third_parties.c[name] for name in STORED))
    if customer_ids is not None:
        query = query.where(third_parties.c.customer_id.in_(sorted(set(customer_ids))))
    return read_frame(engine, query.order_by(third_parties.c.contact_id), schema=STORED)


# ---------------------------------------------------------------- the rules


@dataclass(frozen=True, slots=True)
class ThirdPartyInputs:
    """What ``screen`` reads of the store.

    Attributes:
        contacts: ``contact_id, phone, email`` of the contacts concerned.
        stopped: ``contact_id, stopped_at`` of those who asked to hear no more.
        earlier: ``contact_id, key, planned_on``: the outbox's messages to them that count as a
            communication (any state but cancelled or failed).
        people: ``customer_id, phone, email``: the customers' contact points on file.
        bad: ``customer_id, channel, address, since``: contact points found bad (``since``: the UTC day).
        through: ``customer_id, planned_on``: the customers' messages (not to contacts) on sms, e-mail, push
            or call, planned before the day, that went through or may still (sent, delivered, waiting).
        opened: the jurisdictions ``[governor] third_party_contact_in`` opens.
        agents: the jurisdictions with a ``[location_agent.XX]``: there a third-party collector's
            accounts' contacts are asked, in the agent's words (4b).
    """

    contacts: pl.DataFrame
    stopped: pl.DataFrame
    earlier: pl.DataFrame
    people: pl.DataFrame
    bad: pl.DataFrame
    through: pl.DataFrame
    opened: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()

    @staticmethod
    def empty(opened: tuple[str, ...] = (), agents: tuple[str, ...] = ()) -> ThirdPartyInputs:
        text, day = pl.String(), pl.Date()
        return ThirdPartyInputs(
            contacts=pl.DataFrame(schema={"contact_id": text, "phone": text, "email": text}),
            stopped=pl.DataFrame(schema={"contact_id": text, "stopped_at": pl.Datetime("us", "UTC")}),
            earlier=pl.DataFrame(schema={"contact_id": text, "key": text, "planned_on": day}),
            people=pl.DataFrame(schema={"customer_id": text, "phone": text, "email": text}),
            bad=pl.DataFrame(schema={"customer_id": text, "channel": text, "address": text, "since": day}),
            through=pl.DataFrame(schema={"customer_id": text, "planned_on": day}),
            opened=opened,
            agents=agents,
        )


# A collector for another (``[governor] third_party_products``, Reg F in full) may name its employer only
# if asked and asks a third party for location information only; the en-US location request names the
# creditor and asks the contact to pass on a call-back request: not for such accounts until they have words
# of their own.
COLLECTOR_RULE = "US-3P-01"
COLLECTOR_CITATION = (
    "12 CFR 1006.10(b)(1), FDCPA §1692b(1): a debt collector names its employer only if expressly asked, "
    "and communicates with a third party to acquire location information only"
)
COLLECTOR_JURISDICTIONS = ("US",)

# Outbox states that are no communication: nothing reached anyone.
_NO_COMMUNICATION = ("cancelled", "failed")
# Outbox states of a message that went through or may still: the customer is not shown unreachable.
_UNDER_WAY = ("planned", "rendered", "sending", "sent", "delivered")
_ELECTRONIC = ("sms", "email", "push", "call")


def read_inputs(
    connection: Connection,
    rows: pl.DataFrame,
    as_of: dt.date,
    opened: tuple[str, ...] = (),
    agents: tuple[str, ...] = (),
) -> ThirdPartyInputs:
    """The store's facts ``screen`` needs about ``rows`` (planned messages to contacts: ``customer_id``,
    ``contact_id``); ``opened`` and ``agents`` as in ``ThirdPartyInputs``."""
    from duecourse.store.tables import bad_contact_points, outbox

    empty = ThirdPartyInputs.empty(opened, agents)
    if rows.is_empty():
        return empty
    contact_ids = sorted(set(rows["contact_id"].to_list()))
    customer_ids = sorted(set(rows["customer_id"].to_list()))

    def frame(
        query: Select[Any], like: pl.DataFrame, ids: list[str], column: ColumnElement[Any]
    ) -> pl.DataFrame:
        found: list[dict[str, object]] = []
        for start in range(0, len(ids), 500):
            chunk = query.where(column.in_(ids[start : start + 500]))
            found += [dict(r._mapping) for r in connection.execute(chunk)]
        return pl.DataFrame(found, schema=like.schema)

    named = select(third_parties.c.contact_id, third_parties.c.phone, third_parties.c.email)
    contacts = frame(named, empty.contacts, contact_ids, third_parties.c.contact_id)
    # the same person under other contact ids (the same phone or e-mail): their stops and messages count
    phones = sorted({p for p in contacts["phone"].to_list() if p})
    emails = sorted({e for e in contacts["email"].to_list() if e})
    contacts = pl.concat(
        [
            contacts,
            frame(named, empty.contacts, phones, third_parties.c.phone),
            frame(named, empty.contacts, emails, third_parties.c.email),
        ]
    ).unique("contact_id", keep="first", maintain_order=True)
    everyone = sorted(set(contacts["contact_id"].to_list()) | set(contact_ids))
    stops = frame(
        select(third_party_stops.c.contact_id, third_party_stops.c.stopped_at),
        empty.stopped,
        everyone,
        third_party_stops.c.contact_id,
    )
    earlier = frame(
        select(outbox.c.contact_id, outbox.c.key, outbox.c.planned_on).where(
            outbox.c.state.not_in(_NO_COMMUNICATION)
        ),
        empty.earlier,
        everyone,
        outbox.c.contact_id,
    )
    people = frame(
        select(customers.c.customer_id, customers.c.phone, customers.c.email),
        empty.people,
        customer_ids,
        customers.c.customer_id,
    )
    bad_rows = frame(
        select(
            bad_contact_points.c.customer_id,
            bad_contact_points.c.channel,
            bad_contact_points.c.address,
            bad_contact_points.c.since,
        ),
        pl.DataFrame(schema={**empty.bad.schema, "since": pl.Datetime("us", "UTC")}),
        customer_ids,
        bad_contact_points.c.customer_id,
    )
    bad = bad_rows.with_columns(pl.col("since").dt.date())
    longest = max(third_party_rules(j).unreachable_days for j in ("CN", "US", "UK"))
    through = frame(
        select(outbox.c.customer_id, outbox.c.planned_on).where(
            outbox.c.contact_id == "",
            outbox.c.channel.in_(_ELECTRONIC),
            outbox.c.state.in_(_UNDER_WAY),
            outbox.c.planned_on >= as_of - dt.timedelta(days=longest),
            outbox.c.planned_on < as_of,
        ),
        empty.through,
        customer_ids,
        outbox.c.customer_id,
    )
    return ThirdPartyInputs(contacts, stops, earlier, people, bad, through, opened, agents)


def _rules_frame(jurisdictions: Iterable[str], opened: tuple[str, ...]) -> pl.DataFrame:
    rows = []
    for j in sorted(set(jurisdictions)):
        r = third_party_rules(j)
        rows.append(
            {
                "jurisdiction": j,
                "allowed": r.allowed or j in opened,
                "opened": (not r.allowed) and j in opened,
                "rule": r.rule,
                "cite": r.citation,
                "days": r.unreachable_days,
                "unreach_rule": r.unreachable_rule,
                "unreach_cite": r.unreachable_citation,
                "refused_rule": r.refused_rule,
                "refused_cite": r.refused_citation,
                "once": r.once,
                "once_rule": r.once_rule,
                "once_cite": r.once_citation,
                "freq_rule": r.frequency_rule,
                "freq_cite": r.frequency_citation,
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "jurisdiction": pl.String(),
            "allowed": pl.Boolean(),
            "opened": pl.Boolean(),
            "rule": pl.String(),
            "cite": pl.String(),
            "days": pl.Int64(),
            "unreach_rule": pl.String(),
            "unreach_cite": pl.String(),
            "refused_rule": pl.String(),
            "refused_cite": pl.String(),
            "once": pl.Boolean(),
            "once_rule": pl.String(),
            "once_cite": pl.String(),
            "freq_rule": pl.String(),
            "freq_cite": pl.String(),
        },
    )


def reachability(inputs: ThirdPartyInputs, as_of: dt.date, days: pl.DataFrame) -> pl.DataFrame:
    """Per customer (``days``: ``customer_id, days``, the N of the customer's pack): ``unreachable`` and
    what it was decided from (``sms``, ``email``: "none", "bad since DAY" or "on file"; ``dead_since``;
    ``last_through``). See the module's text."""
    people = days.unique("customer_id").join(inputs.people, on="customer_id", how="left")
    people = people.with_columns(pl.col("phone").fill_null(""), pl.col("email").fill_null(""))
    bad = inputs.bad.group_by("customer_id", "channel", "address").agg(pl.col("since").min())
    floor = dt.date(1970, 1, 1)
    for channel, column in (("sms", "phone"), ("email", "email")):
        found = bad.filter(pl.col("channel") == channel).select(
            "customer_id", pl.col("address").alias(column), pl.col("since").alias(f"{channel}_bad")
        )
        people = people.join(found, on=["customer_id", column], how="left").with_columns(
            pl.when(pl.col(column) == "")
            .then(pl.lit(floor))
            .otherwise(pl.col(f"{channel}_bad"))
            .alias(f"{channel}_dead"),
            pl.when(pl.col(column) == "")
            .then(pl.lit("none on file"))
            .when(pl.col(f"{channel}_bad").is_not_null())
            .then(pl.format("{} found bad on {}", pl.col(column), pl.col(f"{channel}_bad").cast(pl.String)))
            .otherwise(pl.format("{} on file, not found bad", pl.col(column)))
            .alias(channel),
        )
    last = inputs.through.group_by("customer_id").agg(pl.col("planned_on").max().alias("last_through"))
    people = people.join(last, on="customer_id", how="left")
    edge = pl.lit(as_of) - pl.duration(days=pl.col("days"))
    dead_since = pl.max_horizontal("sms_dead", "email_dead")
    return people.with_columns(
        dead_since=dead_since,
        unreachable=pl.col("sms_dead").is_not_null()
        & pl.col("email_dead").is_not_null()
        & (dead_since <= edge)
        & (pl.col("last_through").is_null() | (pl.col("last_through") < edge)),
    ).select("customer_id", "unreachable", "sms", "email", "dead_since", "last_through")


def same_person(contacts: pl.DataFrame, wanted: pl.Series) -> pl.DataFrame:
    """``contact_id, other_id``: each wanted contact with itself and every contact of ``contacts`` with
    the same phone (whatever the channel) or the same e-mail: one person imported under several ids."""
    known = contacts.select("contact_id", "phone", "email").unique("contact_id")
    pairs = [pl.DataFrame({"contact_id": wanted, "other_id": wanted}).cast(pl.String())]
    for column in ("phone", "email"):
        have = known.filter(pl.col(column).fill_null("") != "").select("contact_id", column)
        pairs.append(
            have.join(have.rename({"contact_id": "other_id"}), on=column).select("contact_id", "other_id")
        )
    return pl.concat(pairs).unique().filter(pl.col("contact_id").is_in(wanted.implode()))


def screen(rows: pl.DataFrame, inputs: ThirdPartyInputs, as_of: dt.date) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The third parties' own rules (the module's text, 1 to 6) on planned messages to contacts
    (``rows``: the governor's ``PLANNED`` columns and ``contact_id``): the rows that pass on to the
    governor, and the decisions (``governor.DECISIONS``) on the others, suppressed, with the rule, its
    citation, the reason and what was seen."""
    from duecourse.engine import governor

    if rows.is_empty():
        return rows, pl.DataFrame(schema=governor.DECISIONS)
    rules = _rules_frame(rows["jurisdiction"].to_list(), inputs.opened)
    same = same_person(inputs.contacts, rows["contact_id"])
    stopped = (
        inputs.stopped.rename({"contact_id": "other_id"})
        .join(same, on="other_id")
        .sort("stopped_at", pl.col("other_id") != pl.col("contact_id"), "other_id")  # its own stop first
        .group_by("contact_id")
        .agg(pl.col("stopped_at").first(), pl.col("other_id").first().alias("stopped_as"))
    )
    earlier = (
        inputs.earlier.join(rows.select("key"), on="key", how="anti")  # a message already there is itself
        .rename({"contact_id": "other_id"})
        .join(same, on="other_id")
        .sort("planned_on", pl.col("other_id") != pl.col("contact_id"), "other_id")
        .group_by("contact_id")
        .agg(
            pl.col("planned_on").first().alias("first_contacted"),
            pl.col("other_id").first().alias("contacted_as"),
            pl.len().alias("contacted"),
        )
    )
    person = same.group_by("contact_id").agg(pl.col("other_id").min().alias("person"))
    seen = rows.join(rules, on="jurisdiction", how="left").join(person, on="contact_id", how="left")
    reach = reachability(inputs, as_of, seen.select("customer_id", "days"))
    seen = (
        seen.join(
            inputs.contacts.rename({"phone": "c_phone", "email": "c_email"}), on="contact_id", how="left"
        )
        .join(stopped, on="contact_id", how="left")
        .join(earlier, on="contact_id", how="left")
        .join(reach, on="customer_id", how="left")
        .with_columns(
            address=pl.when(pl.col("channel") == "sms")
            .then(pl.col("c_phone"))
            .otherwise(pl.col("c_email"))
            .fill_null(""),
        )
    )
    # a contact's own phone or e-mail found bad (a message to it bounced): not used again
    found_bad = inputs.bad.select(
        "customer_id", "channel", pl.col("address"), pl.col("since").alias("address_bad")
    ).unique(["customer_id", "channel", "address"])
    seen = seen.join(found_bad, on=["customer_id", "channel", "address"], how="left")
    collector = (
        pl.col("jurisdiction").is_in(COLLECTOR_JURISDICTIONS)
        & pl.col("third_party").fill_null(True)
        & ~pl.col("jurisdiction").is_in(list(inputs.agents))
    )
    refused = pl.col("stopped_at").is_not_null()
    no_address = (pl.col("address") == "") | pl.col("address_bad").is_not_null()
    again = pl.col("once") & pl.col("first_contacted").is_not_null()
    reachable = ~pl.col("unreachable").fill_null(False)
    blocked = ~pl.col("allowed") | collector | refused | no_address | again | reachable
    # of one run's messages to one person (any of their contact ids), the first (priority, then key) goes;
    # one in the outbox already (a re-run of the same day) comes first: the message planned stays the one
    # that goes, and the decision recorded says so
    planned = pl.col("key").is_in(inputs.earlier["key"].implode())
    seen = seen.sort("person", ~planned, "priority", "key").with_columns(
        first=(~blocked).cum_sum().over("person") == 1
    )
    repeated = ~blocked & ~pl.col("first")
    jurisdiction = pl.col("jurisdiction")
    rule = (
        pl.when(~pl.col("allowed"))
        .then(pl.col("rule"))
        .when(collector)
        .then(pl.lit(COLLECTOR_RULE))
        .when(refused)
        .then(pl.col("refused_rule"))
        .when(no_address)
        .then(pl.col("rule"))
        .when(again)
        .then(pl.col("once_rule"))
        .when(reachable)
        .then(pl.col("unreach_rule"))
        .otherwise(pl.col("freq_rule"))
    )
    citation = (
        pl.when(~pl.col("allowed"))
        .then(pl.col("cite"))
        .when(collector)
        .then(pl.lit(COLLECTOR_CITATION))
        .when(refused)
        .then(pl.col("refused_cite"))
        .when(no_address)
        .then(pl.col("cite"))
        .when(again)
        .then(pl.col("once_cite"))
        .when(reachable)
        .then(pl.col("unreach_cite"))
        .otherwise(pl.col("freq_cite"))
    )
    contact = pl.format("contact {}", pl.col("contact_id"))

    def as_other(column: str) -> pl.Expr:
        """Who it was, when another contact id of the same phone or e-mail: "contact K2 (same phone ...)"."""
        return (
            pl.when(pl.col(column) != pl.col("contact_id"))
            .then(pl.format(" (as contact {}, the same phone or e-mail)", pl.col(column)))
            .otherwise(pl.lit(""))
        )

    reason = (
        pl.when(~pl.col("allowed"))
        .then(
            pl.format("no third party is contacted for customers in {} (the customer is not)", jurisdiction)
        )
        .when(collector)
        .then(
            pl.format(
                "account {} is collected as a third party ([governor] third_party_products) and no "
                "[location_agent.{}] is set: a collector asks a third party for location information in "
                "his own name, without naming his employer",
                pl.col("account_id"),
                jurisdiction,
            )
        )
        .when(refused)
        .then(
            pl.format(
                "{} asked to hear no more on {}{}: never contacted again",
                contact,
                pl.col("stopped_at").dt.date().cast(pl.String),
                as_other("stopped_as"),
            )
        )
        .when(pl.col("address") == "")
        .then(pl.format("{} has no {} address", contact, pl.col("channel")))
        .when(no_address)
        .then(
            pl.format(
                "{}'s {} {} was found bad on {}: not used again",
                contact,
                pl.col("channel"),
                pl.col("address"),
                pl.col("address_bad").cast(pl.String),
            )
        )
        .when(again)
        .then(
            pl.format(
                "{} was contacted on {}{} already: once only",
                contact,
                pl.col("first_contacted").cast(pl.String),
                as_other("contacted_as"),
            )
        )
        .when(reachable)
        .then(
            pl.format(
                "customer {} is not shown unreachable for {} days (phone: {}; e-mail: {}; last message that "
                "went or may go through: {}): a contact only when the customer cannot be reached",
                pl.col("customer_id"),
                pl.col("days"),
                pl.col("sms"),
                pl.col("email"),
                pl.col("last_through").cast(pl.String).fill_null("none"),
            )
        )
        .otherwise(pl.format("{} gets one message a day at most: another goes to them in this run", contact))
    )
    seen_json = pl.struct(
        contact_id=pl.col("contact_id"),
        allowed=pl.col("allowed"),
        opened_by_config=pl.col("opened"),
        stopped_on=pl.col("stopped_at").dt.date().cast(pl.String),
        stopped_as=pl.col("stopped_as"),
        address=pl.col("address"),
        first_contacted=pl.col("first_contacted").cast(pl.String),
        contacted_as=pl.col("contacted_as"),
        once=pl.col("once"),
        unreachable=pl.struct(
            days=pl.col("days"),
            phone=pl.col("sms"),
            email=pl.col("email"),
            dead_since=pl.col("dead_since").cast(pl.String),
            last_through=pl.col("last_through").cast(pl.String),
            holds=pl.col("unreachable").fill_null(False),
        ),
    ).struct.json_encode()
    out = seen.filter(blocked | repeated).select(
        "key",
        verdict=pl.lit("suppressed"),
        scheduled_at=pl.lit(None, pl.Datetime("us", "UTC")),
        rule_id=rule,
        citation=citation,
        reason=reason,
        seen=pl.format('{{"third_party":{}}}', seen_json),
    )
    passed = rows.join(out.select("key"), on="key", how="anti")
    return passed, out.cast(pl.Schema(governor.DECISIONS))


def as_governed(rows: pl.DataFrame, holds: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Messages to contacts as the governor takes them: each counted against ``"CUSTOMER, contact ID"``
    (its own daily cap), with the customer's holds that stop all contact with the customer (none on one
    channel: the customer's opt-out of a channel is about the customer's phone or mailbox) copied to
    it. Returns the rows and those holds."""
    pairs = rows.select("customer_id", "contact_id").unique()
    whole = holds.filter(pl.col("channel").is_null() & (pl.col("scope") != "channel"))
    copied = (
        whole.join(pairs, on="customer_id", how="inner")
        .with_columns(
            pl.format("{}, contact {}", pl.col("customer_id"), pl.col("contact_id")).alias("customer_id")
        )
        .select(holds.columns)
    )
    governed = rows.with_columns(
        pl.format("{}, contact {}", pl.col("customer_id"), pl.col("contact_id")).alias("customer_id")
    )
    return governed, copied
