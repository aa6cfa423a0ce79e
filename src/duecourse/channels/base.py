"""What every channel adapter shares: the item it sends, what it answers, and the two kinds of failure.

The outbox (``channels/outbox.py``) renders each message once into the exact bytes to send
(:class:`Outgoing.content`) and stores them, so that ``outbox show`` prints what was sent and a retry
after a crash sends the same bytes. An adapter (:class:`Transport`) only moves those bytes over its
protocol and translates what goes wrong into one of two errors:

- :class:`TransientError`: try again later (connection refused or dropped, timeouts, SMTP 4xx, SMPP
  throttling, HTTP 429/5xx). The dispatcher backs off with jitter and retries.
- :class:`PermanentError`: this message cannot go this way (SMTP 5xx on the recipient, an invalid number,
  HTTP 4xx other than 408/429). The dispatcher fails it at once and falls back to the action's next
  channel.
- :class:`ChannelDown` (a PermanentError): the channel's settings are wrong (login refused, certificate
  not trusted, STARTTLS missing). The dispatcher stops the channel for the rest of its life, keeps its
  messages waiting, and reports it.

Each adapter sits beside a fake (``channels/fake.py``) used by unit tests; the adapters themselves are
tested against real peers started by the tests (an aiosmtpd server, an SMPP peer, an HTTP server).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from duecourse.domain.errors import DuecourseError

CHANNELS: tuple[str, ...] = ("email", "sms", "push", "letter")


class ChannelError(DuecourseError):
    """A message could not be sent; ``code`` is the protocol's own code when there is one."""

    def __init__(self, reason: str, *, code: str = "") -> None:
        self.reason = reason
        self.code = code
        super().__init__(f"{code} {reason}".strip())


class TransientError(ChannelError):
    """Worth trying again later: the peer was busy, unreachable or said 'try later'."""


class PermanentError(ChannelError):
    """Never worth trying again this way: the address or the content is refused."""


class ChannelDown(PermanentError):
    """The channel itself cannot work as configured (a wrong password, an untrusted certificate, a
    missing capability): no message can go this way until someone fixes the settings. The dispatcher
    stops using the channel and leaves its messages waiting, rather than fail each one in turn."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message, rendered, as handed to an adapter.

    Attributes:
        id: the outbox row's id.
        key: the idempotency key (account, stage, action, date, channel); the e-mail Message-ID and the
            SMS/push reference are derived from it, so a message sent twice after a crash is recognisable
            by the receiver as the same message.
        channel: one of :data:`CHANNELS`.
        recipient: an e-mail address, an E.164 phone number, the customer id (push) or the customer id
            (post: the address is printed in the letter itself).
        content: the exact bytes: a whole RFC 5322 message (e-mail), the UTF-8 text (SMS), the JSON body
            (push), the letter's PDF (post).
        meta: channel-specific extras that are not part of the bytes (e.g. ``letter_sha256`` for post,
            ``reference`` for SMS and push).
    """

    id: int
    key: str
    channel: str
    recipient: str
    content: bytes
    meta: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the peer answered on acceptance: its id for the message (for delivery receipts) and words."""

    provider_id: str = ""
    detail: str = ""


class Transport(Protocol):
    """An adapter for one channel. ``send`` raises TransientError or PermanentError, nothing else."""

    channel: str

    def send(self, item: Outgoing) -> Receipt: ...

    def close(self) -> None: ...


@runtime_checkable
class Staged(Protocol):
    """A transport that can hand over all of a message but its last step before the peer accepts it.

    ``send_staged(item, before_accept)`` does what ``send`` does, but calls ``before_accept()`` once, just
    before the step that makes the peer accept the message (for SMTP: the "." that ends DATA), and not at
    all when the peer refused the message earlier. The dispatcher records the previous message's "sent"
    there, while the peer is still reading this one, so that a worker never has more than one message
    accepted and not yet recorded. An exception from ``before_accept`` is raised unchanged, and the
    message is then not accepted (the transport abandons it).
    """

    def send_staged(self, item: Outgoing, before_accept: Callable[[], None]) -> Receipt: ...


@dataclass(frozen=True, slots=True)
class DeliveryEvent:
    """Feedback from a channel after sending: a bounce, a delivery receipt, a returned letter.

    Attributes:
        channel: the channel it concerns.
        outcome: ``delivered``, ``bounced`` (permanent: the contact point is bad) or ``failed``
            (temporary or unknown; the contact point stays usable).
        key: the idempotency key of the message, when the feedback carries it (e-mail DSNs quote our
            Message-ID; our SMS and push references are derived from the key).
        provider_id: the peer's id of the message (SMS delivery receipts carry only this).
        recipient: the address or number concerned, when known.
        at: when it happened, if the feedback says.
        reason: the peer's words (status code and diagnostic).
    """

    channel: str
    outcome: str
    key: str = ""
    provider_id: str = ""
    recipient: str = ""
    at: dt.datetime | None = None
    reason: str = ""


def reference_for(key: str) -> str:
    """A short reference for a message, stable for its idempotency key: 20 hex digits of its sha256.

    SMS gateways and push receivers get this instead of the key itself (which names the account).
    """
    return hashlib.sha256(key.encode()).hexdigest()[:20]
