"""Delivery feedback: e-mail bounces (DSNs), SMS delivery receipts and returned letters update the outbox.

Each event is matched to its outbox row by the id the channel gave back (the e-mail Message-ID, the SMS
gateway's message id, the letter's reference). ``delivered`` moves a sent message to ``delivered``;
``bounced`` moves it to ``bounced``, marks the contact point bad (not used again for the customer until
the address changes) and plans the action's next channel, as a failure at sending would; ``failed``
(temporary or unknown) is recorded on the message and changes nothing else.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from duecourse.bootstrap import App
from duecourse.channels.base import DeliveryEvent
from duecourse.store import outbox as store


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
            message = _match(connection, event)
            if message is None:
                result.unmatched.append(event.provider_id or event.key or event.recipient)
                continue
            detail = {"feedback": event.outcome, "reason": event.reason, "at": event.at}
            if event.outcome == "delivered" and message.state == "sent":
                store.apply(
                    connection, [store.Change(message.id, "sent", "delivered", "delivered", {}, detail)], now
                )
                result.delivered += 1
            elif event.outcome == "bounced" and message.state in ("sent", "delivered"):
                reason = f"bounced: {event.reason}" if event.reason else "bounced"
                store.apply(
                    connection, [store.Change(message.id, message.state, "bounced", reason, {}, detail)], now
                )
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
                        connection,
                        [store.fallback_for(message, now)],
                        now,
                        f"fallback: {message.channel} bounced",
                    )
                    result.fallbacks += added.added
            else:
                # Recorded in the history; the message keeps its state and the reason for it.
                note = f"feedback {event.outcome}: {event.reason}".rstrip(": ")
                keep = {"reason": message.reason}
                change = store.Change(message.id, message.state, message.state, note, keep, detail)
                store.apply(connection, [change], now)
                result.noted += 1
    return result


def _match(connection: object, event: DeliveryEvent) -> store.Message | None:
    from sqlalchemy import Connection

    assert isinstance(connection, Connection)
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
    from sqlalchemy import insert, select

    from duecourse.store.tables import customers, holds

    column = customers.c.phone if channel == "sms" else customers.c.email
    added = 0
    with store.write_transaction(app.engine) as connection:
        for sender in sorted(set(senders)):
            ids = connection.execute(select(customers.c.customer_id).where(column == sender)).scalars().all()
            for customer_id in ids:
                existing = connection.execute(
                    select(holds.c.id).where(
                        holds.c.customer_id == customer_id,
                        holds.c.scope == "channel",
                        holds.c.channel == channel,
                        holds.c.kind == "opt_out",
                        holds.c.ends_on.is_(None),
                    )
                ).first()
                if existing is not None:
                    continue
                connection.execute(
                    insert(holds).values(
                        scope="channel",
                        customer_id=customer_id,
                        account_id=None,
                        channel=channel,
                        kind="opt_out",
                        starts_on=now.date(),
                        ends_on=None,
                        reason=f"opted out of {channel}: {how}",
                        created_at=now,
                    )
                )
                added += 1
    return added
