"""E-mail: building the exact message bytes, sending them over SMTP, and reading bounces back.

The outbox calls :func:`build_email` once per communication and stores the bytes; :class:`SmtpTransport`
only moves those bytes, so a retry after a crash sends the same message with the same Message-ID, which
a receiving system can recognise as a duplicate. Nothing here reads the clock: the Date header is a
parameter, the MIME boundaries and the Message-ID derive from the idempotency key.

What goes wrong in ``smtplib`` and ``ssl`` becomes one of the two errors of ``channels/base.py``::

    OSError (refused, reset, unreachable, timeout)      -> TransientError
    SMTPServerDisconnected                              -> TransientError
    SMTPResponseException with a 4xx code               -> TransientError  (code = the SMTP code)
    SMTPSenderRefused / SMTPRecipientsRefused /
      SMTPDataError with a 5xx code                     -> PermanentError  (code = the SMTP code)
    SMTPAuthenticationError (5xx)                       -> PermanentError  "authentication failed ..."
    ssl.SSLCertVerificationError                        -> PermanentError  "TLS certificate ... not trusted"
    SMTPNotSupportedError (no STARTTLS, AUTH, SMTPUTF8) -> PermanentError

A refused login, an untrusted certificate or a server without STARTTLS are configuration faults: retrying
them every few minutes would only hide them, so they are permanent and say what to fix.

Bounces (RFC 3464 delivery status notifications) are read by :func:`parse_bounce`, which gives one
:class:`DeliveryEvent` per recipient block, tied to the message by the Message-ID quoted in the returned
original.
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, HeaderParser
from pathlib import Path

from duecourse.channels.base import (
    ChannelDown,
    ChannelError,
    DeliveryEvent,
    Outgoing,
    PermanentError,
    Receipt,
    TransientError,
    reference_for,
)

CHANNEL = "email"

# policy.SMTP (CRLF line ends, 78-column folding) with 7-bit bodies: every part is 7bit, quoted-printable
# or base64, so the bytes never depend on a relay's 8BITMIME support and no relay re-encodes them.
_POLICY = policy.SMTP.clone(cte_type="7bit")

# RFC 8058: the one-click unsubscribe POST body a mailbox provider sends to the https URI.
_ONE_CLICK = "List-Unsubscribe=One-Click"

_ACTIONS_DELIVERED = frozenset({"delivered", "expanded"})
_STATUS = re.compile(r"^([245])\.\d{1,3}\.\d{1,3}$")
_ORIGINAL_TYPES = frozenset(
    {"message/rfc822", "text/rfc822-headers", "message/global", "message/global-headers"}
)
_STATUS_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})


# ---------------------------------------------------------------- settings


def address_of(mailbox: str) -> str:
    """The bare address of ``Name <addr>`` or ``addr``; empty when there is none."""
    _, address = email.utils.parseaddr(mailbox)
    return address if "@" in address else ""


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailSettings:
    """How to reach the SMTP relay and who the mail is from.

    Attributes:
        host, port: the relay (port 25 by default; 587 for submission with STARTTLS, 465 with ``ssl``).
        starttls: upgrade the connection with STARTTLS before anything else (refuse to go on without it);
            no default, so that sending in clear is a choice someone wrote down.
        ssl: implicit TLS from the first byte (port 465); exclusive with ``starttls``.
        user, password: login when ``user`` is set (the password comes from the environment, never code).
        from_address: the From header, e.g. ``Acme Bank <collections@acme.example>``.
        reply_to: the Reply-To header, when answers go elsewhere than From.
        timeout_seconds: for connecting and for each reply of the server.
        message_id_domain: the right-hand side of Message-IDs; the domain of ``from_address`` if empty.
        cafile: a PEM bundle to verify the server's certificate with, instead of the system's roots.
        envelope_from: the SMTP ``MAIL FROM`` (where bounces go); the address of ``from_address`` if empty.
        local_hostname: the name given in EHLO; the machine's FQDN if empty.
    """

    host: str
    port: int = 25
    starttls: bool
    ssl: bool = False
    user: str = ""
    password: str = field(default="", repr=False)
    from_address: str
    reply_to: str = ""
    timeout_seconds: float = 30
    message_id_domain: str = ""
    cafile: str = ""
    envelope_from: str = ""
    local_hostname: str = ""

    def __post_init__(self) -> None:
        sender = address_of(self.from_address)
        if not sender:
            raise ValueError(f"from_address {self.from_address!r} holds no e-mail address")
        if self.starttls and self.ssl:
            raise ValueError("starttls and ssl are exclusive: STARTTLS upgrades a plain connection")
        if not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} is not a TCP port")
        if self.timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        if not self.message_id_domain:
            object.__setattr__(self, "message_id_domain", sender.rpartition("@")[2])
        if not self.envelope_from:
            object.__setattr__(self, "envelope_from", sender)


# ---------------------------------------------------------------- building


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file attached to an e-mail, e.g. the letter's PDF."""

    filename: str
    content: bytes
    mime_type: str = "application/pdf"


def message_id_for(key: str, domain: str) -> str:
    """The Message-ID (with its angle brackets) of the message with this idempotency key.

    The left-hand side is :func:`reference_for` the key, so a bounce quoting the Message-ID names the
    message without naming the account.
    """
    return f"<{reference_for(key)}@{domain}>"


def reference_of(message_id: str) -> str:
    """The reference inside one of our Message-IDs (``<ref@domain>`` -> ``ref``); empty if not ours.

    A bare reference (what :func:`parse_bounce` reports when only X-Duecourse-Key came back) is
    returned as it is, so both shapes of ``provider_id`` map to one outbox row.
    """
    local = message_id.strip().strip("<>").partition("@")[0]
    return local if re.fullmatch(r"[0-9a-f]{20}", local) else ""


def _boundary(key: str, role: str, bodies: Sequence[str]) -> str:
    """A MIME boundary fixed by the key, so the same message always serialises to the same bytes.

    ``=_`` never occurs in quoted-printable or base64 output; a 7bit text body could hold anything, so
    the boundary moves on (deterministically) in the unlikely case a body contains it.
    """
    counter = 0
    while True:
        digest = hashlib.sha256(f"{key}\x00{role}\x00{counter}".encode()).hexdigest()[:24]
        candidate = f"=_dc_{role}_{digest}"
        if not any(candidate in body for body in bodies):
            return candidate
        counter += 1


def _list_unsubscribe(url: str, mailto: str) -> str:
    """The RFC 2369 List-Unsubscribe value: the mailto first, then the https one-click URI (RFC 8058)."""
    if not url.startswith("https://"):
        raise ValueError(f"unsubscribe_url {url!r} must be https (RFC 8058 one-click)")
    target = mailto if mailto.lower().startswith("mailto:") else f"mailto:{mailto}"
    if "@" not in target:
        raise ValueError(f"unsubscribe_mailto {mailto!r} holds no address")
    for uri in (url, target):
        if any(ch in uri for ch in "<>, \t\r\n"):
            raise ValueError(f"unsubscribe URI {uri!r} must be percent-encoded")
    return f"<{target}>, <{url}>"


def build_email(
    *,
    key: str,
    sender: str,
    recipient: str,
    subject: str,
    text: str,
    html: str,
    attachments: Sequence[Attachment],
    unsubscribe_url: str,
    unsubscribe_mailto: str,
    date: datetime,
    domain: str,
    reply_to: str = "",
) -> bytes:
    """The whole RFC 5322 message, byte for byte the same for the same inputs.

    multipart/mixed holding multipart/alternative (text/plain, text/html, UTF-8) then the attachments;
    multipart/alternative alone when there is no attachment. Every message carries List-Unsubscribe
    with one-click (12 CFR 1006.6(e): an opt-out in every electronic message); the subject is the
    template's, which must not reveal the debt (GDPR Art 5(1)(f): previews are seen by others).
    """
    if date.tzinfo is None or date.utcoffset() is None:
        raise ValueError("date must be timezone-aware")
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = sender
    msg["To"] = recipient
    if reply_to:
        msg["Reply-To"] = reply_to
    msg["Subject"] = subject
    msg["Date"] = email.utils.format_datetime(date)
    msg["Message-ID"] = message_id_for(key, domain)
    msg["List-Unsubscribe"] = _list_unsubscribe(unsubscribe_url, unsubscribe_mailto)
    msg["List-Unsubscribe-Post"] = _ONE_CLICK
    # RFC 3834: tells vacation responders not to answer.
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Duecourse-Key"] = reference_for(key)
    msg.set_content(text, subtype="plain", charset="utf-8")
    msg.add_alternative(html, subtype="html", charset="utf-8")
    bodies = (text, html)
    if not attachments:
        msg.set_boundary(_boundary(key, "alt", bodies))
        return _serialise(msg)
    msg.make_mixed()
    for attachment in attachments:
        maintype, _, subtype = attachment.mime_type.partition("/")
        if not maintype or not subtype:
            raise ValueError(f"attachment {attachment.filename!r}: bad MIME type {attachment.mime_type!r}")
        msg.add_attachment(attachment.content, maintype, subtype, filename=attachment.filename)
    msg.set_boundary(_boundary(key, "mixed", bodies))
    alternative = msg.get_payload(0)
    if not isinstance(alternative, Message):  # pragma: no cover - make_mixed always nests a part
        raise TypeError("multipart/alternative part missing")
    alternative.set_boundary(_boundary(key, "alt", bodies))
    return _serialise(msg)


def _serialise(msg: EmailMessage) -> bytes:
    """The bytes, without the MIME-Version the stdlib repeats in every part it creates (top level only)."""
    for part in msg.walk():
        if part is not msg:
            del part["MIME-Version"]
    return msg.as_bytes()


def _message_id_in(content: bytes) -> str:
    """The Message-ID header of stored message bytes (headers only are parsed)."""
    head = content.split(b"\r\n\r\n", 1)[0]
    headers = BytesHeaderParser(policy=policy.compat32).parsebytes(head + b"\r\n\r\n")
    return " ".join(str(headers.get("Message-ID", "")).split())


# ---------------------------------------------------------------- sending


def translate_smtp_error(exc: BaseException, *, server: str = "") -> ChannelError:
    """Our error for what ``smtplib``/``ssl``/the socket raised (the table in the module docstring)."""
    where = f" ({server})" if server else ""
    if isinstance(exc, ChannelError):
        return exc
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        # One recipient per message: its (code, reply) is the answer.
        code, reply = next(iter(exc.recipients.values()), (-1, b""))
        return _by_code(code, f"recipient refused: {_text(reply)}")
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        if 400 <= exc.smtp_code < 500:
            return TransientError(f"login deferred{where}: {_text(exc.smtp_error)}", code=str(exc.smtp_code))
        return ChannelDown(
            f"authentication failed{where}: check the SMTP user and password ({_text(exc.smtp_error)})",
            code=str(exc.smtp_code),
        )
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return _by_code(exc.smtp_code, f"sender {exc.sender} refused: {_text(exc.smtp_error)}")
    if isinstance(exc, smtplib.SMTPDataError):
        return _by_code(exc.smtp_code, f"message refused: {_text(exc.smtp_error)}")
    if isinstance(exc, smtplib.SMTPResponseException):
        return _by_code(exc.smtp_code, f"server replied{where}: {_text(exc.smtp_error)}")
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return TransientError(f"connection lost{where}: {exc}")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return ChannelDown(f"server does not support what the settings need{where}: {exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ChannelDown(
            f"TLS certificate{where} not trusted: {exc.verify_message or exc}; set cafile or fix the host"
        )
    if isinstance(exc, smtplib.SMTPException):  # before OSError: SMTPException is one
        # e.g. "No suitable authentication method found": a settings fault, not a busy server.
        return ChannelDown(f"SMTP session failed{where}: {exc}")
    if isinstance(exc, OSError):  # refused, reset, unreachable, DNS, timeouts (TimeoutError), TLS I/O
        return TransientError(f"cannot reach the SMTP server{where}: {exc.__class__.__name__}: {exc}")
    return TransientError(f"unexpected SMTP failure{where}: {exc.__class__.__name__}: {exc}")


def _by_code(code: int, reason: str) -> ChannelError:
    """4xx is 'try later', 5xx is 'never this way'; anything else is treated as transient."""
    if 500 <= code < 600:
        return PermanentError(reason, code=str(code))
    return TransientError(reason, code=str(code) if code > 0 else "")


def _text(reply: bytes | str) -> str:
    """An SMTP reply's text on one line."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())


# The server answered and the session goes on (``_reset`` already dropped it after a 421).
_ANSWERED = (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused, ChannelError)


# A connection used within this many seconds is reused without a NOOP first.
IDLE_CHECK_SECONDS = 5.0


class _Stale(Exception):
    """The connection was found closed at MAIL, before any of the message was sent."""


class _CallerFailed(Exception):
    """``before_accept`` raised: its exception is the caller's, not an SMTP failure to translate."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _nothing() -> None:
    """``before_accept`` for a plain :meth:`SmtpTransport.send`."""


def dot_stuffed(content: bytes) -> bytes:
    """The message as DATA carries it, without the final ".": a "." that starts a line is doubled
    (RFC 5321 §4.5.2) and the last line ends with CRLF.

    The same bytes as ``smtplib``'s own quoting (a regular expression: a line starts at the beginning and
    after every LF), with ``bytes.replace``, which is much faster on a message with a PDF attached.
    """
    stuffed = content.replace(b"\n.", b"\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed


class SmtpTransport:
    """Sends stored e-mail bytes through one SMTP relay, keeping the connection open between sends.

    Not thread-safe: give each dispatcher worker its own transport. A connection idle for more than
    :data:`IDLE_CHECK_SECONDS` is checked with NOOP before reuse; a busy one is not (a round trip per
    message would cost a fifth of the throughput), and if the server closed it meanwhile, the MAIL
    command fails before anything of the message was sent: the message goes again at once on a new
    connection.
    """

    channel = CHANNEL

    def __init__(self, settings: EmailSettings) -> None:
        self.settings = settings
        self._smtp: smtplib.SMTP | None = None
        self._last_used = 0.0

    @property
    def _server(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def send(self, item: Outgoing) -> Receipt:
        """Send ``item.content`` unchanged to ``item.recipient``; the receipt names its Message-ID."""
        return self.send_staged(item, _nothing)

    def send_staged(self, item: Outgoing, before_accept: Callable[[], None]) -> Receipt:
        """:meth:`send`, calling ``before_accept()`` once the whole message but the "." that ends DATA is
        written (see ``channels/base.Staged``): the server reads the message while the caller works."""
        recipient = item.recipient.strip()
        if not recipient or any(ch in recipient for ch in "<>\r\n \t") or "@" not in recipient:
            raise PermanentError(f"not an e-mail address: {item.recipient!r}")
        # The composer stores the Message-ID in meta; rows rendered before it did are read from the bytes.
        message_id = (
            item.meta.get("message_id")
            or _message_id_in(item.content)
            or message_id_for(item.key, self.settings.message_id_domain)
        )
        # A message to a third party names its own envelope sender (the Return-Path its mailbox shows).
        sender = item.meta.get("envelope_from") or self.settings.envelope_from
        try:
            reused = self._smtp is not None
            smtp = self._connection()
            try:
                reply = self._deliver(smtp, recipient, item.content, before_accept, sender)
            except _Stale:
                if not reused:
                    raise
                self._drop()  # closed by the server while idle: nothing was sent; once more, afresh
                reply = self._deliver(self._connection(), recipient, item.content, before_accept, sender)
        except _CallerFailed as failed:
            self._drop()  # DATA left unfinished: the server discards the message
            raise failed.error from None
        except Exception as exc:
            if not isinstance(exc, _ANSWERED):
                self._drop()  # the connection's state is unknown: start afresh next time
            cause = exc.__cause__ if isinstance(exc, _Stale) and exc.__cause__ is not None else exc
            raise translate_smtp_error(cause, server=self._server) from exc
        self._last_used = time.monotonic()
        return Receipt(provider_id=message_id, detail=reply)

    def close(self) -> None:
        """Say QUIT and close the socket; harmless when nothing is open."""
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            pass  # the peer is gone already; closing below is all that is left to do
        finally:
            smtp.close()

    def __enter__(self) -> SmtpTransport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

    def _connection(self) -> smtplib.SMTP:
        """The open connection (if idle for long, only if it still answers NOOP), else a new one."""
        if self._smtp is not None and time.monotonic() - self._last_used <= IDLE_CHECK_SECONDS:
            return self._smtp
        if self._smtp is not None:
            try:
                alive = self._smtp.noop()[0] == 250
            except (smtplib.SMTPException, OSError):
                alive = False
            if alive:
                return self._smtp
            self._drop()
        self._smtp = self._connect()
        return self._smtp

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        context = ssl.create_default_context(cafile=s.cafile or None)
        local = s.local_hostname or None
        smtp: smtplib.SMTP
        if s.ssl:
            smtp = smtplib.SMTP_SSL(
                s.host, s.port, local_hostname=local, timeout=s.timeout_seconds, context=context
            )
        else:
            smtp = smtplib.SMTP(s.host, s.port, local_hostname=local, timeout=s.timeout_seconds)
        try:
            # The "." that ends DATA is written on its own after the message: without NODELAY, Nagle's
            # algorithm would hold it until the server acknowledged the message (up to 40 ms).
            if smtp.sock is not None:
                smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            smtp.ehlo()
            if s.starttls:
                # starttls() raises SMTPNotSupportedError when not offered: we never fall back to clear.
                smtp.starttls(context=context)
                smtp.ehlo()
            if s.user:
                smtp.login(s.user, s.password)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _deliver(
        self,
        smtp: smtplib.SMTP,
        recipient: str,
        content: bytes,
        before_accept: Callable[[], None],
        sender: str,
    ) -> str:
        """MAIL, RCPT, DATA as ``smtplib.sendmail`` does, but keeping the DATA reply (the queue id)."""
        options: list[str] = []
        if smtp.has_extn("size"):
            options.append(f"SIZE={len(content)}")
        if not content.isascii() and smtp.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")
        if not recipient.isascii() or not sender.isascii():
            if not smtp.has_extn("smtputf8"):
                raise PermanentError(f"{recipient!r} needs SMTPUTF8, which {self._server} does not offer")
            options.append("SMTPUTF8")
        try:
            code, reply = smtp.mail(sender, options)
        except (smtplib.SMTPServerDisconnected, ConnectionError) as exc:
            raise _Stale from exc
        if code != 250:
            self._reset(smtp, code)
            raise smtplib.SMTPSenderRefused(code, reply, sender)
        code, reply = smtp.rcpt(recipient)
        if code not in (250, 251):
            self._reset(smtp, code)
            raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
        # DATA as smtplib.data() does it, in two writes: the message, then (after ``before_accept``) the "."
        # that makes the server accept it.
        smtp.putcmd("data")
        code, reply = smtp.getreply()
        if code != 354:
            self._reset(smtp, code)
            raise smtplib.SMTPDataError(code, reply)
        smtp.send(dot_stuffed(content))
        try:
            before_accept()
        except BaseException as exc:
            raise _CallerFailed(exc) from exc
        smtp.send(b".\r\n")
        code, reply = smtp.getreply()
        if code != 250:
            self._reset(smtp, code)
            raise smtplib.SMTPDataError(code, reply)
        return f"{code} {_text(reply)}"

    def _reset(self, smtp: smtplib.SMTP, code: int) -> None:
        """After a refusal: RSET so the connection serves the next message; 421 means it is closing."""
        if code == 421:
            self._drop()
            return
        try:
            smtp.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()


class EmailFileTransport:
    """Writes each message to ``{directory}/{reference}.eml`` instead of sending it (demos, no server).

    The same key always lands in the same file with the same bytes, so a repeated send is harmless.
    """

    channel = CHANNEL

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def path_for(self, key: str) -> Path:
        """Where the message with this key is written."""
        return self.directory / f"{reference_for(key)}.eml"

    def send(self, item: Outgoing) -> Receipt:
        """Write the exact bytes (via a temporary file and a rename, so a reader never sees half)."""
        target = self.path_for(item.key)
        partial = target.with_suffix(".eml.partial")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            partial.write_bytes(item.content)
            os.replace(partial, target)
        except OSError as exc:
            raise TransientError(f"cannot write {target}: {exc}") from exc
        message_id = item.meta.get("message_id") or _message_id_in(item.content)
        return Receipt(provider_id=message_id, detail=str(target))

    def close(self) -> None:
        """Nothing to release."""


# ---------------------------------------------------------------- bounces


def parse_bounce(raw: bytes) -> list[DeliveryEvent]:
    """The delivery events of an RFC 3464 bounce; [] for a message that is not one (an ordinary reply).

    ``key`` stays empty: the returned original quotes our Message-ID, which goes in ``provider_id``
    (the same value :class:`SmtpTransport` put in its receipt), or, when only our X-Duecourse-Key
    header came back, that reference. A ``multipart/report`` without a usable per-recipient Status gives
    one ``failed`` event: something went wrong, but nothing says the address is bad.
    """
    msg = email.message_from_bytes(raw, policy=policy.compat32)
    if msg.get_content_type() != "multipart/report":
        return _failed_recipients_header(msg)
    param = msg.get_param("report-type", "", header="content-type")
    report_type = email.utils.collapse_rfc2231_value(param).lower() if param else ""
    if report_type not in ("", "delivery-status", "global-delivery-status"):
        return []  # disposition notifications (read receipts), abuse feedback: not about delivery
    provider_id = ""
    blocks: list[Message] = []
    for part in msg.walk():
        content_type = part.get_content_type()
        if content_type in _STATUS_TYPES and not blocks:
            blocks = _status_blocks(part)
        elif content_type in _ORIGINAL_TYPES and not provider_id:
            provider_id = _original_id(part)
    at = _date(msg.get("Date"))
    events = [
        event
        for block in blocks[1:]  # the first block is per-message (Reporting-MTA, Arrival-Date)
        if (event := _recipient_event(block, provider_id, at)) is not None
    ]
    if events:
        return events
    recipients = _failed_recipients(msg) or [""]
    subject = _unfold(msg.get("Subject", ""))
    return [
        DeliveryEvent(
            channel=CHANNEL,
            outcome="failed",
            provider_id=provider_id,
            recipient=recipient,
            at=at,
            reason=f"report without per-recipient status: {subject}".rstrip(": "),
        )
        for recipient in recipients
    ]


def _recipient_event(block: Message, provider_id: str, at: datetime | None) -> DeliveryEvent | None:
    """One per-recipient block as an event; None when it has neither Action nor Status."""
    action = _unfold(block.get("Action", "")).lower()
    status = _unfold(block.get("Status", "")).split(" ")[0]
    if not action and not status:
        return None
    match = _STATUS.match(status)
    status_class = match.group(1) if match else ""
    if action == "failed":
        outcome = "bounced" if status_class == "5" else "failed"
    elif action in _ACTIONS_DELIVERED or (not action and status_class == "2"):
        outcome = "delivered"
    elif not action and status_class == "5":
        outcome = "bounced"
    else:  # delayed, relayed (no further news will come), an unknown action: nothing proves it bad
        outcome = "failed"
    recipient = _unfold(block.get("Final-Recipient", "") or block.get("Original-Recipient", ""))
    diagnostic = _unfold(block.get("Diagnostic-Code", ""))
    _, _, diagnostic_text = diagnostic.partition(";")
    reason = " ".join(part for part in (status, (diagnostic_text or diagnostic).strip()) if part)
    return DeliveryEvent(
        channel=CHANNEL,
        outcome=outcome,
        provider_id=provider_id,
        recipient=recipient.partition(";")[2].strip() if ";" in recipient else recipient,
        at=_date(block.get("Last-Attempt-Date")) or at,
        reason=reason or action,
    )


def _status_blocks(part: Message) -> list[Message]:
    """The header blocks of a delivery-status part (the parser splits message/delivery-status itself)."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    text = part.get_payload(decode=True)
    body = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(payload)
    chunks = re.split(r"\r?\n\s*\r?\n", body.strip())
    parser = HeaderParser(policy=policy.compat32)
    return [parser.parsestr(chunk + "\n\n") for chunk in chunks if chunk.strip()]


def _original_id(part: Message) -> str:
    """Our Message-ID (or X-Duecourse-Key reference) from the returned original or its headers."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        headers = payload[0]
    else:
        data = part.get_payload(decode=True)
        raw = data if isinstance(data, bytes) else str(payload).encode("utf-8", "replace")
        headers = BytesHeaderParser(policy=policy.compat32).parsebytes(raw)
    message_id = _unfold(headers.get("Message-ID", ""))
    if message_id:
        return message_id
    return _unfold(headers.get("X-Duecourse-Key", ""))


def _failed_recipients_header(msg: Message) -> list[DeliveryEvent]:
    """Exim and others name the failed addresses in X-Failed-Recipients even on plain-text bounces."""
    recipients = _failed_recipients(msg)
    subject = _unfold(msg.get("Subject", ""))
    return [
        DeliveryEvent(
            channel=CHANNEL,
            outcome="failed",
            recipient=recipient,
            at=_date(msg.get("Date")),
            reason=f"non-standard bounce: {subject}".rstrip(": "),
        )
        for recipient in recipients
    ]


def _failed_recipients(msg: Message) -> list[str]:
    values = [str(value) for value in msg.get_all("X-Failed-Recipients", [])]
    return [address for _, address in email.utils.getaddresses(values) if "@" in address]


def _unfold(value: object) -> str:
    """A header value on one line with single spaces."""
    return " ".join(str(value).split()) if value else ""


def _date(value: object) -> datetime | None:
    """An RFC 5322 date, aware (UTC when the sender wrote -0000); None when absent or unreadable."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(_unfold(value))
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
