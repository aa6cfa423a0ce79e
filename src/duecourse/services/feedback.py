"""Delivery feedback: e-mail bounces (DSNs), SMS delivery receipts and returned letters update the outbox.

Each event is matched to its outbox row by the id the channel gave back (the e-mail Message-ID, the SMS
gateway's message id, the letter's reference). ``delivered`` moves a sent message to ``delivered``;
``bounced`` moves it to ``bounced``, marks the contact point bad (not used again for the customer until
the address changes) and plans the action's next channel, as a failure at sending would; ``failed``
(temporary or unknown) is recorded on the message and changes nothing else.

What an SMSC delivers on the dispatcher's session (customers' replies, delivery receipts) is stored in
``inbound`` by :func:`store_inbound` before the SMSC is told it arrived, then acted on by
:func:`handle_inbound`, which marks each row handled in the transaction that acted on it: an opt-out
reply becomes a hold, a receipt is applied as above. A row stored by a dispatcher that died before
handling it is handled by the next one. The HTTP receiver (``api/``) stores what an HTTP gateway posts
(its delivery callbacks and the customers' replies) the same way, and honours the opt-out links that
e-mails and texts carry (:func:`opt_out_by_link`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, insert, select, update

from duecourse.bootstrap import App
from duecourse.channels.base import DeliveryEvent
from duecourse.domain.errors import DuecourseError, Problem, ProblemsError
from duecourse.services import third_parties
from duecourse.store import outbox as store
from duecourse.store.tables import customers, holds, inbound, opt_out_links

if TYPE_CHECKING:
    from duecourse.channels.sms import InboundSms


@dataclass(slots=True)
class FeedbackResult:
    delivered: int = 0
    bounced: int = 0
    noted: int = 0
    fallbacks: int = 0
    unmatched: list[str] = field(default_factory=list)


def apply_feedback(app: App, events: Sequence[DeliveryEvent], now: dt.datetime) -> FeedbackResult:
    """Apply the events in one transaction; those matching no sent message are listed, not guessed."""
    result = FeedbackResult()
    with store.write_transaction(app.engine) as connection:
        for event in events:
            if not _apply(connection, event, now, result):
                result.unmatched.append(event.provider_id or event.key or event.recipient)
    return result


def _apply(connection: Connection, event: DeliveryEvent, now: dt.datetime, result: FeedbackResult) -> bool:
    """Apply one event within the caller's transaction; False when it matches no message."""
    message = _match(connection, event)
    if message is None:
        return False
    detail = {"feedback": event.outcome, "reason": event.reason, "at": event.at}
    if event.outcome == "delivered" and message.state == "sent":
        store.apply(connection, [store.Change(message.id, "sent", "delivered", "delivered", {}, detail)], now)
        result.delivered += 1
    elif event.outcome == "bounced" and message.state in ("sent", "delivered"):
        reason = f"bounced: {event.reason}" if event.reason else "bounced"
        store.apply(connection, [store.Change(message.id, message.state, "bounced", reason, {}, detail)], now)
        store.mark_bad(
            connection,
            message.customer_id,
            message.channel,
            message.recipient,
            event.reason or "bounced",
            f"outbox {message.id}",
            now,
        )
        result.bounced += 1
        if message.fallback:
            added = store.plan_in(
                connection, [store.fallback_for(message, now)], now, f"fallback: {message.channel} bounced"
            )
            result.fallbacks += added.added
    else:
        # Recorded in the history; the message keeps its state and the reason for it.
        note = f"feedback {event.outcome}: {event.reason}".rstrip(": ")
        keep = {"reason": message.reason}
        change = store.Change(message.id, message.state, message.state, note, keep, detail)
        store.apply(connection, [change], now)
        result.noted += 1
    return True


def _match(connection: Connection, event: DeliveryEvent) -> store.Message | None:
    if event.provider_id:
        found = store.find(connection, provider_id=event.provider_id)
        if found is not None:
            return found
        if not event.provider_id.startswith("<"):  # a bare e-mail reference: our Message-ID is <ref@domain>
            found = store.find(connection, provider_id_prefix=f"<{event.provider_id}@")
            if found is not None:
                return found
    if event.key:
        return store.find(connection, key=event.key)
    return None


def record_opt_outs(app: App, senders: Sequence[str], channel: str, now: dt.datetime, how: str) -> int:
    """Customers who asked to hear no more on ``channel`` (a STOP/退订 reply from their number): a channel
    hold without end for each customer with that contact point; the number of holds added.

    12 CFR 1006.14(h) (US-ELEC-01): an opt-out of a medium is honoured for that medium. The hold is what
    the dispatcher checks before every message, so the next message on the channel falls back instead.
    """
    with store.write_transaction(app.engine) as connection:
        return _opt_outs(connection, senders, channel, now, how)


def _opt_outs(
    connection: Connection, senders: Sequence[str], channel: str, now: dt.datetime, how: str
) -> int:
    """:func:`record_opt_outs` within the caller's transaction."""
    column = customers.c.phone if channel == "sms" else customers.c.email
    added = 0
    for sender in sorted(set(senders)):
        found = connection.execute(
            select(customers.c.customer_id, customers.c.timezone).where(column == sender)
        ).all()
        for customer_id, timezone in found:
            added += _add_opt_out(connection, customer_id, timezone, channel, now, how)
    return added


def _opted_out(connection: Connection, customer_id: str, channel: str) -> bool:
    """Whether an opt-out of ``channel`` without end is on record for the customer."""
    existing = connection.execute(
        select(holds.c.id).where(
            holds.c.customer_id == customer_id,
            holds.c.scope == "channel",
            holds.c.channel == channel,
            holds.c.kind == "opt_out",
            holds.c.ends_on.is_(None),
        )
    ).first()
    return existing is not None


def _add_opt_out(
    connection: Connection, customer_id: str, timezone: str, channel: str, now: dt.datetime, how: str
) -> bool:
    """A channel hold without end for the customer, unless one is there; whether it was added.

    On PostgreSQL the customer's row is locked first, so that two opt-outs at once (the mail client's
    one-click and the customer's own click) add one hold, not two; SQLite's writer holds the whole file."""
    if connection.dialect.name == "postgresql":
        connection.execute(
            select(customers.c.customer_id).where(customers.c.customer_id == customer_id).with_for_update()
        )
    if _opted_out(connection, customer_id, channel):
        return False
    connection.execute(
        insert(holds).values(
            scope="channel",
            customer_id=customer_id,
            account_id=None,
            channel=channel,
            kind="opt_out",
            # The customer's own date (holds are read on it): in force from now, in every zone.
            starts_on=now.astimezone(ZoneInfo(timezone)).date(),
            ends_on=None,
            reason=f"opted out of {channel}: {how}",
            created_at=now,
        )
    )
    return True


# ------------------------------------------------------------------------------------ opt-out links


class OptOutLinkError(DuecourseError):
    """An opt-out link that cannot be honoured as it is: tampered with, or not one of ours."""


@dataclass(frozen=True, slots=True)
class OptOutLink:
    """Whom an opt-out link is for, and what it is about.

    Attributes:
        customer_id: the customer the link was sent to.
        channel: the medium it opts out of (``email``, ``sms``, ``push``).
        locale: the customer's language, for the page that answers.
        issuer: the legal name of the sender, as the customer knows it.
        opted_out: whether the customer has opted out of the channel (before or by this request).
        subject: what the link's token signs.
    """

    customer_id: str
    channel: str
    locale: str
    issuer: str
    opted_out: bool
    subject: str = ""


def read_opt_out_link(app: App, channel: str, token: str) -> OptOutLink:
    """What an opt-out link is for (a GET of the link: nothing changes). ``OptOutLinkError`` names why a
    link is refused."""
    with app.engine.connect() as connection:
        return _link(app, connection, channel, token)


def opt_out_by_link(
    app: App, channel: str, token: str, now: dt.datetime, how: str
) -> tuple[OptOutLink, bool]:
    """Honour an opt-out link (RFC 8058 one-click POST, or the button of its page): the customer's
    opt-out of the channel, once (12 CFR 1006.6(e), 1006.14(h); US-ELEC-01). The link is honoured
    however old it is: its expiry is not checked, since a missed opt-out is a breach while an extra one
    only moves the account to another channel. Returns the link and whether a hold was added."""
    with store.write_transaction(app.engine) as connection:
        link = _link(app, connection, channel, token)
        if channel == CONTACT_LINK:
            added = bool(third_parties.stop_by_subject(connection, link.subject, now, how))
            return dataclasses.replace(link, opted_out=True), added
        timezone = connection.execute(
            select(customers.c.timezone).where(customers.c.customer_id == link.customer_id)
        ).scalar_one()
        added = _add_opt_out(connection, link.customer_id, timezone, channel, now, how)
    return dataclasses.replace(link, opted_out=True), added


def _link(app: App, connection: Connection, channel: str, token: str) -> OptOutLink:
    from duecourse.letters.token import BadToken, portal_secret, verify_token

    secret, _ = portal_secret()
    try:
        subject = verify_token(token, dt.date.min, secret)  # never expired: see opt_out_by_link
    except BadToken as error:
        raise OptOutLinkError(f"this opt-out link is not valid: {error}") from None
    if channel == CONTACT_LINK:
        return _contact_link(app, connection, subject)
    found = connection.execute(
        select(opt_out_links.c.customer_id, opt_out_links.c.channel).where(opt_out_links.c.subject == subject)
    ).first()
    if found is None:
        raise OptOutLinkError("this opt-out link was not sent by us (no message carried it)")
    customer_id, linked = str(found[0]), str(found[1])
    if linked != channel:
        raise OptOutLinkError(f"this opt-out link is for {linked}, not {channel}")
    person = connection.execute(
        select(customers.c.locale, customers.c.jurisdiction).where(customers.c.customer_id == customer_id)
    ).first()
    if person is None:
        raise OptOutLinkError("the customer this link was sent to is no longer on record")
    locale, jurisdiction = str(person[0]), str(person[1])
    issuer = app.config.issuers.get(jurisdiction)
    name = issuer.legal_name if issuer is not None else ""
    return OptOutLink(
        customer_id, channel, locale, name, _opted_out(connection, customer_id, channel), subject
    )


# A third party's opt-out link: /opt-out/contact/TOKEN (``services/third_parties.py``).
CONTACT_LINK = "contact"


def _contact_link(app: App, connection: Connection, subject: str) -> OptOutLink:
    """Whom a third party's opt-out link is for: the contact (``customer_id`` is the customer who named
    them, for the issuer; ``locale``: the contact's language)."""
    from duecourse.store.tables import third_parties as contacts

    found = connection.execute(
        select(contacts.c.contact_id, contacts.c.customer_id, contacts.c.locale).where(
            contacts.c.link_subject == subject
        )
    ).first()
    if found is None:
        raise OptOutLinkError("this opt-out link was not sent by us (no message carried it)")
    contact_id, customer_id, locale = str(found[0]), str(found[1]), str(found[2])
    person = connection.execute(
        select(customers.c.locale, customers.c.jurisdiction).where(customers.c.customer_id == customer_id)
    ).first()
    jurisdiction = str(person[1]) if person is not None else ""
    issuer = app.config.issuers.get(jurisdiction)
    name = issuer.legal_name if issuer is not None else ""
    language = locale or (str(person[0]) if person is not None else "")
    opted_out = contact_id in third_parties.stopped(connection, [contact_id])
    return OptOutLink(customer_id, CONTACT_LINK, language, name, opted_out, subject)


# --------------------------------------------------------------------------------------------- inbound

# A receipt can overtake the "sent" record of its message (another worker's session may read it first):
# one that matches no sent message is kept unhandled this long before it is given up as unmatched.
RECEIPT_GRACE = dt.timedelta(minutes=10)


def store_inbound(engine: Engine, items: Sequence[InboundSms], now: dt.datetime) -> None:
    """Store what an SMSC delivered (replies and receipts), committed and flushed to disk when this returns:
    the SMPP transport acknowledges the deliver_sm only after (``channels/sms.SmppTransport``).

    The dispatcher's sessions commit asynchronously (``synchronous_commit = off``: a lost "sent" record
    only means a copy under the same Message-ID); an acknowledged STOP must survive a crash of the
    database server as well, so this transaction waits for its WAL flush.
    """
    if not items:
        return
    rows = [
        {
            "channel": "sms",
            "sender": item.sender,
            "recipient": item.recipient,
            "text": item.text,
            "received_at": now,
            "provider_id": item.receipt.provider_id if item.receipt is not None else "",
            "handled_at": None,
            "detail": json.dumps(_inbound_detail(item), ensure_ascii=False, sort_keys=True),
        }
        for item in items
    ]
    with store.write_transaction(engine) as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SET LOCAL synchronous_commit TO on")
        connection.execute(insert(inbound), rows)


def _inbound_detail(item: InboundSms) -> dict[str, Any]:
    if item.receipt is None:
        return {"kind": "reply", "opt_out": item.opt_out}
    event = item.receipt
    at = event.at.isoformat() if event.at is not None else None
    return {"kind": "receipt", "outcome": event.outcome, "reason": event.reason, "at": at}


@dataclass(slots=True)
class InboundResult:
    """What :func:`handle_inbound` did."""

    handled: int = 0
    opt_out_holds: int = 0  # holds added for opt-out replies
    contacts_stopped: int = 0  # third parties the customers named who replied with an opt-out
    feedback: FeedbackResult = field(default_factory=FeedbackResult)
    waiting: int = 0  # receipts matching no sent message yet, left for a later pass (RECEIPT_GRACE)


def handle_inbound(app: App, now: dt.datetime, limit: int = 1000) -> InboundResult:
    """Act on up to ``limit`` stored inbound rows not handled yet, oldest first, in one transaction that
    marks each handled (with what was done in its detail), so each row is acted on once.

    On PostgreSQL the rows are locked with SKIP LOCKED: several workers handle different rows.
    """
    result = InboundResult()
    with store.write_transaction(app.engine) as connection:
        # Replies first (a receipt's provider id is never empty when it can be matched): an opt-out is
        # never left for later behind receipts waiting for their messages.
        query = (
            select(inbound)
            .where(inbound.c.handled_at.is_(None))
            .order_by((inbound.c.provider_id == "").desc(), inbound.c.id)
            .limit(limit)
        )
        if connection.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        for row in connection.execute(query).mappings().all():
            detail = json.loads(row["detail"])
            done = _handle_one(connection, row, detail, now, result)
            if done is None:
                result.waiting += 1
                continue
            connection.execute(
                update(inbound)
                .where(inbound.c.id == row["id"])
                .values(handled_at=now, detail=json.dumps({**detail, "handled": done}, ensure_ascii=False))
            )
            result.handled += 1
    return result


def _handle_one(
    connection: Connection, row: Any, detail: dict[str, Any], now: dt.datetime, result: InboundResult
) -> str | None:
    """Act on one inbound row; what was done, in words, or None to leave it for later."""
    if detail.get("kind") == "receipt":
        at = dt.datetime.fromisoformat(detail["at"]) if detail.get("at") else None
        event = DeliveryEvent(
            row["channel"],
            str(detail.get("outcome", "failed")),
            provider_id=row["provider_id"],
            recipient=row["sender"],
            at=at,
            reason=str(detail.get("reason", "")),
        )
        if _apply(connection, event, now, result.feedback):
            return f"receipt applied: {event.outcome}"
        if now - row["received_at"] < RECEIPT_GRACE:
            return None
        result.feedback.unmatched.append(event.provider_id)
        return "receipt matches no sent message"
    if detail.get("opt_out"):
        how = "replied with an opt-out keyword"
        added = _opt_outs(connection, [row["sender"]], row["channel"], now, how)
        result.opt_out_holds += added
        # a third party the customer named, replying from their own number: never contacted again
        stopped = third_parties.stop_by_sender(connection, [row["sender"]], row["channel"], now, how)
        result.contacts_stopped += stopped
        done = (
            f"opt-out: {added} hold(s) added" if added else "opt-out: already opted out or no such customer"
        )
        return done + (f"; {stopped} contact(s) the customers named stopped" if stopped else "")
    return "reply without an opt-out keyword: nothing to do"


# ------------------------------------------------------------------------- an HTTP gateway's posts

# Where an HTTP gateway's posts hold what we read (dotted paths; ``[channels.sms]`` may name others).
GATEWAY_FIELDS: dict[str, str] = {
    "receipt_id_field": "id",
    "receipt_status_field": "status",
    "reply_from_field": "from",
    "reply_to_field": "to",
    "reply_text_field": "text",
}
GATEWAY_POSTS = ("receipts", "replies")


@dataclass(frozen=True, slots=True)
class GatewayPosts:
    """What :func:`receive_gateway_posts` did: rows stored, then what handling them did."""

    stored: int
    handled: InboundResult


def gateway_field(app: App, name: str) -> str:
    """The dotted path ``[channels.sms]`` gives for ``name`` (``GATEWAY_FIELDS``), else the default."""
    settings = app.config.channels.get("sms")
    value = settings.values.get(name) if settings is not None else None
    return str(value) if value else GATEWAY_FIELDS[name]


def gateway_items(app: App, what: str, payloads: Sequence[Any], where: str = "body") -> list[InboundSms]:
    """An HTTP gateway's delivery callbacks (``receipts``) or customers' texts (``replies``) as inbound
    items; every bad one reported at once as ``body[N].FIELD: reason`` (``ProblemsError``)."""
    from duecourse.channels.sms import InboundSms, is_opt_out

    items: list[InboundSms] = []
    problems: list[Problem] = []
    for number, payload in enumerate(payloads):
        at = f"{where}[{number}]"
        if not isinstance(payload, dict):
            problems.append(
                Problem("gateway.bad_item", f"must be a JSON object, not {type(payload).__name__}", at)
            )
            continue
        if what == "receipts":
            event = _gateway_receipt(app, payload, at, problems)
            if event is not None:
                text = json.dumps(payload, ensure_ascii=False, sort_keys=True)
                items.append(InboundSms(sender="", text=text, opt_out=False, receipt=event))
            continue
        values: dict[str, str] = {}
        for name in ("reply_from_field", "reply_to_field", "reply_text_field"):
            path = gateway_field(app, name)
            value = _dotted_value(payload, path)
            if value is None and name != "reply_to_field":
                problems.append(Problem("gateway.missing_field", f"no {path!r} in the reply", f"{at}.{path}"))
            values[name] = "" if value is None else str(value)
        if len(values["reply_from_field"]) > 64:
            problems.append(Problem("gateway.bad_field", "the sender is longer than 64 characters", at))
        if not problems:
            text = values["reply_text_field"]
            items.append(
                InboundSms(
                    sender=values["reply_from_field"].strip(),
                    text=text,
                    opt_out=is_opt_out(text),
                    recipient=values["reply_to_field"].strip(),
                )
            )
    if problems:
        raise ProblemsError(problems)
    return items


# A gateway's words for a message on its way: noted in the message's history, nothing changes.
PENDING_STATUSES = ("accepted", "buffered", "enroute", "pending", "queued", "scheduled", "sent", "submitted")


def receipt_statuses(app: App) -> dict[str, str]:
    """Status word (folded to lower case) → outcome: the defaults, the words of a message on its way,
    and ``[channels.sms] receipt_statuses`` over them."""
    from duecourse.channels.sms import DEFAULT_HTTP_STATUSES

    found = dict.fromkeys(PENDING_STATUSES, "pending") | dict(DEFAULT_HTTP_STATUSES)
    settings = app.config.channels.get("sms")
    configured = settings.values.get("receipt_statuses", {}) if settings is not None else {}
    return found | {str(word).lower(): str(outcome) for word, outcome in dict(configured).items()}


def _gateway_receipt(app: App, payload: Any, at: str, problems: list[Problem]) -> DeliveryEvent | None:
    """One delivery callback as an event. A status the mapping does not know is kept (outcome
    ``unrecognised``: noted in the message's history, never lost, never acted on) rather than refusing the
    gateway's whole post, which it would send again for ever."""
    id_field, status_field = (
        gateway_field(app, "receipt_id_field"),
        gateway_field(app, "receipt_status_field"),
    )
    provider_id, status = _dotted_value(payload, id_field), _dotted_value(payload, status_field)
    missing = [f for f, v in ((id_field, provider_id), (status_field, status)) if v in (None, "")]
    if missing or not isinstance(status, str | int):
        for name in missing or [status_field]:
            problems.append(
                Problem("gateway.missing_field", f"no {name!r} in the delivery callback", f"{at}.{name}")
            )
        return None
    word = str(status)
    outcome = receipt_statuses(app).get(word.lower(), "unrecognised")
    return DeliveryEvent(
        channel="sms", outcome=outcome, provider_id=str(provider_id), reason=f"status:{word}"
    )


def _dotted_value(payload: Any, path: str) -> Any:
    value = payload
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def receive_gateway_posts(app: App, what: str, payloads: Sequence[Any], now: dt.datetime) -> GatewayPosts:
    """Store what an HTTP gateway posted (all of it or, when any item is bad, none), durably, then act
    on it as on what an SMSC delivers: a receipt moves its message to delivered or bounced, an opt-out
    reply becomes a hold."""
    items = gateway_items(app, what, payloads)
    store_inbound(app.engine, items, now)
    return GatewayPosts(len(items), handle_inbound(app, now))
