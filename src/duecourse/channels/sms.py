"""SMS: how a text is encoded and split, and three ways to send it (SMPP, an HTTP gateway, a file).

Encoding decides the price and what the customer sees, so it is computed here once, exactly as the network
will do it (3GPP TS 23.038 for the alphabet, TS 23.040 for concatenation):

- A text goes as GSM-7 only when every character is in the GSM 03.38 default alphabet or its basic
  extension table (``^{}\\[~]|€`` and form feed, each sent as ESC + a septet, so each counts 2). One
  message holds 160 septets; a concatenated one 153 per segment (the user-data header takes 7). An
  extension character is never split across two segments.
- Otherwise it goes as UCS-2 (UTF-16): 70 code units alone, 67 per segment. A character outside the BMP
  (an emoji) is a surrogate pair of 2 units and is never split either.

Errors, as every adapter raises them (see :mod:`duecourse.channels.base`)::

    ChannelError
    ├── TransientError   connection refused/dropped/timed out, ESME_RTHROTTLED, ESME_RMSGQFUL,
    │                    ESME_RSYSERR and other SMSC-side failures, ESME_RBINDFAIL, HTTP 408/429/5xx
    └── PermanentError   not an E.164 number, ESME_RINVDSTADR/RINVDSTTON/RINVDSTNPI,
                         ESME_RINVSRCADR/RINVSRCTON/RINVSRCNPI, ESME_RINVPASWD/RINVSYSID, text too
                         long for 255 segments, HTTP 3xx and 4xx other than 408/429

The references sent to gateways and put in the user-data header come from :func:`reference_for`, so a
message re-sent after a crash carries the same reference and the same concatenation number.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import select
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import smpplib.client  # type: ignore[import-untyped]
import smpplib.consts  # type: ignore[import-untyped]
import smpplib.exceptions  # type: ignore[import-untyped]
import smpplib.smpp  # type: ignore[import-untyped]

from duecourse.channels.base import (
    ChannelDown,
    DeliveryEvent,
    Outgoing,
    PermanentError,
    Receipt,
    TransientError,
    reference_for,
)
from duecourse.channels.push import http_request, raise_for_status

# --------------------------------------------------------------------------------------------- encoding

# 3GPP TS 23.038 §6.2.1: the default alphabet, by septet value. 0x1B is ESC (it introduces the extension
# table and is not a character of its own), so it is left out of the mapping below.
_GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# §6.2.1.1: the basic extension table, reached through ESC; every other position falls back to a space.
_GSM_EXTENSION = {
    "\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F,
    "[": 0x3C, "~": 0x3D, "]": 0x3E, "|": 0x40, "€": 0x65,
}  # fmt: skip
_ESC = 0x1B
_GSM_SEPTETS: dict[str, bytes] = {ch: bytes([n]) for n, ch in enumerate(_GSM_BASIC) if n != _ESC}
_GSM_SEPTETS.update({ch: bytes([_ESC, n]) for ch, n in _GSM_EXTENSION.items()})

GSM_SINGLE, GSM_SEGMENT = 160, 153  # TS 23.040 §9.2.3.24: a 6-octet concatenation header costs 7 septets
UCS2_SINGLE, UCS2_SEGMENT = 70, 67  # 140 octets; 134 after the 6-octet header
MAX_SEGMENTS = 255  # the header counts segments in one octet

DATA_CODING = {"GSM-7": 0x00, "UCS-2": 0x08}  # SMPP 3.4 §5.2.19


@dataclass(frozen=True, slots=True)
class SmsEncoding:
    """How a text travels.

    Attributes:
        encoding: ``GSM-7`` or ``UCS-2``.
        units: septets (GSM-7) or UTF-16 code units (UCS-2) of the whole text.
        segments: SMS the network bills for (an empty text is still one).
        per_segment: the units one segment holds: 160/70 alone, 153/67 when concatenated.
    """

    encoding: str
    units: int
    segments: int
    per_segment: int


def _tokens(text: str) -> tuple[str, list[bytes]]:
    """The encoding and each character's bytes: 1 or 2 septets (one octet each), or 2 or 4 UCS-2 octets."""
    if all(ch in _GSM_SEPTETS for ch in text):
        return "GSM-7", [_GSM_SEPTETS[ch] for ch in text]
    return "UCS-2", [ch.encode("utf-16-be") for ch in text]


def _unit_size(encoding: str) -> int:
    return 1 if encoding == "GSM-7" else 2


def _split(text: str) -> tuple[str, int, list[bytes]]:
    """The encoding, its per-segment capacity and the payload of each segment, never splitting a character."""
    encoding, tokens = _tokens(text)
    size = _unit_size(encoding)
    single, segment = (GSM_SINGLE, GSM_SEGMENT) if encoding == "GSM-7" else (UCS2_SINGLE, UCS2_SEGMENT)
    whole = b"".join(tokens)
    if len(whole) // size <= single:
        return encoding, single, [whole]
    parts: list[bytes] = []
    current = bytearray()
    for token in tokens:
        if (len(current) + len(token)) // size > segment:
            parts.append(bytes(current))
            current = bytearray()
        current += token
    parts.append(bytes(current))
    return encoding, segment, parts


def sms_encoding(text: str) -> SmsEncoding:
    """How ``text`` would be sent: encoding, length in units and the number of segments billed."""
    encoding, per_segment, parts = _split(text)
    size = _unit_size(encoding)
    return SmsEncoding(encoding, sum(len(p) for p in parts) // size, len(parts), per_segment)


def sms_parts(text: str, concat_ref: int) -> tuple[int, int, list[bytes]]:
    """``(data_coding, esm_class, short_messages)`` for SMPP: one unpacked septet per octet for GSM-7
    (SMPP's usual way to carry the default alphabet), UTF-16-BE for UCS-2, and a concatenation header
    (IEI 0x00, reference ``concat_ref`` mod 256) on each part of a long text.

    Raises:
        ValueError: more than 255 segments.
    """
    encoding, _, parts = _split(text)
    if len(parts) == 1:
        return DATA_CODING[encoding], 0x00, parts
    if len(parts) > MAX_SEGMENTS:
        raise ValueError(f"text needs {len(parts)} segments; at most {MAX_SEGMENTS} can be concatenated")
    header = bytes([0x05, 0x00, 0x03, concat_ref % 256, len(parts)])
    udh = [header + bytes([n]) + part for n, part in enumerate(parts, 1)]
    return DATA_CODING[encoding], smpplib.consts.SMPP_GSMFEAT_UDHI, udh


# --------------------------------------------------------------------------------------------- opt-outs

# CTIA Messaging Principles §5.1 keywords, and 退订/TD, the Chinese carriers' usual unsubscribe reply.
OPT_OUT_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "TD"})
_OPT_OUT_PHRASES = ("退订", "OPT OUT", "OPT-OUT")


def is_opt_out(text: str) -> bool:
    """Whether a reply asks to stop texts (US-ELEC-01: an opt-out must be honoured, 12 CFR 1006.14(h)).

    Generous on purpose: the first word is enough ("Stop texting me"), because a missed opt-out is a
    breach while an extra one only moves the account to another channel.
    """
    upper = text.strip().upper()
    if any(phrase in upper for phrase in _OPT_OUT_PHRASES):
        return True
    first = re.split(r"[^A-Z]+", upper, maxsplit=1)[0] if upper else ""
    return first in OPT_OUT_WORDS


@dataclass(frozen=True, slots=True)
class InboundSms:
    """What an SMSC delivered to us (a deliver_sm): a customer's text, or a delivery receipt.

    Attributes:
        sender: the handset's number (``+`` and digits when numeric).
        text: a customer's text as decoded; a receipt's text as it came.
        opt_out: a customer's text that asks to stop texts (:func:`is_opt_out`); never for a receipt.
        recipient: our address it was sent to (the short code or sender name).
        receipt: for a delivery receipt, what it says about our message; None for a customer's text.
    """

    sender: str
    text: str
    opt_out: bool
    recipient: str = ""
    receipt: DeliveryEvent | None = None


# --------------------------------------------------------------------------------------------- settings

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_DEFAULT_BODY: Mapping[str, Any] = {
    "to": "{to}",
    "from": "{from}",
    "text": "{text}",
    "reference": "{reference}",
}


@dataclass(frozen=True, slots=True)
class SmsSettings:
    """How to reach the SMS provider.

    Attributes:
        kind: ``smpp`` (a direct SMSC bind) or ``http`` (a JSON gateway).
        source_addr: the sender id customers see: a short code, a number or an alphanumeric name.
        source_ton, source_npi: its SMPP type of number and numbering plan (5/0 alphanumeric, 1/1 E.164).
        body: the gateway's JSON body; in every string ``{to}``, ``{from}``, ``{text}`` and ``{reference}``
            are replaced (once, so a text that contains ``{to}`` is sent as written). Header values too.
        id_field: where the gateway's answer holds its message id: ``id``, ``messages.0.message-id``.
        timeout: seconds for each network wait.
    """

    kind: str
    host: str = ""
    port: int = 2775
    system_id: str = ""
    password: str = field(default="", repr=False)
    system_type: str = ""
    source_addr: str = ""
    source_ton: int = 5
    source_npi: int = 0
    url: str = ""
    method: str = "POST"
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Mapping[str, Any] = field(default_factory=lambda: dict(_DEFAULT_BODY))
    id_field: str = "id"
    timeout: float = 10.0

    def __post_init__(self) -> None:
        missing: list[str] = []
        if self.kind == "smpp":
            missing = [name for name in ("host", "system_id", "source_addr") if not getattr(self, name)]
        elif self.kind == "http":
            missing = [name for name in ("url",) if not getattr(self, name)]
            if not self.url.startswith(("http://", "https://")):
                missing.append("url (http:// or https://)")
        else:
            raise ValueError(f"SMS kind must be 'smpp' or 'http', not {self.kind!r}")
        if missing:
            raise ValueError(f"SMS settings ({self.kind}) need: {', '.join(missing)}")
        if self.timeout <= 0:
            raise ValueError("SMS timeout must be positive")


def _text_of(item: Outgoing) -> str:
    if not _E164.match(item.recipient):
        raise PermanentError(f"{item.recipient!r} is not an E.164 phone number (+ and 7-15 digits)")
    try:
        return item.content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PermanentError(f"SMS content is not UTF-8: {exc}") from exc


def _reference(item: Outgoing) -> str:
    return item.meta.get("reference") or reference_for(item.key)


# ------------------------------------------------------------------------------------------ receipts

# SMPP 3.4 Appendix B: the receipt's stat field, 7 letters.
RECEIPT_OUTCOMES: Mapping[str, str] = {
    "DELIVRD": "delivered",
    "UNDELIV": "bounced",
    "REJECTD": "bounced",
    "EXPIRED": "failed",
    "DELETED": "failed",
    "UNKNOWN": "failed",
}
# SMPP 3.4 §5.2.28 message_state, for receipts that carry it only as a TLV.
_STATE_STATS = {2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV", 7: "UNKNOWN", 8: "REJECTD"}
_RECEIPT_FIELD = re.compile(r"(id|sub|dlvr|submit date|done date|stat|err):(\S*)", re.IGNORECASE)


def _receipt_time(value: str, tz: dt.tzinfo) -> dt.datetime | None:
    """YYMMDDhhmm (SMPP 3.4) or YYMMDDhhmmss (common), in the SMSC's zone; None when unreadable."""
    formats = {10: "%y%m%d%H%M", 12: "%y%m%d%H%M%S"}  # by length: strptime alone reads 1-digit fields
    if not value.isdigit() or len(value) not in formats:
        return None
    try:
        return dt.datetime.strptime(value, formats[len(value)]).replace(tzinfo=tz)
    except ValueError:
        return None


def parse_receipt(text: str, tz: dt.tzinfo = dt.UTC) -> DeliveryEvent:
    """A delivery receipt's text (``id:... sub:... dlvr:... submit date:... done date:... stat:... err:...
    text:...``) as an event; ``tz`` is the SMSC's clock zone (receipts carry none).

    Raises:
        ValueError: no ``id:``, no ``stat:`` or a stat this module does not know (e.g. ENROUTE).
    """
    head = re.split(r"\btext:", text, maxsplit=1, flags=re.IGNORECASE)[0]
    fields = {name.lower(): value for name, value in _RECEIPT_FIELD.findall(head)}
    provider_id, stat = fields.get("id", ""), fields.get("stat", "").upper()
    if not provider_id or not stat:
        raise ValueError(f"not a delivery receipt (needs id: and stat:): {text!r}")
    if stat not in RECEIPT_OUTCOMES:
        raise ValueError(f"unknown receipt stat {stat!r} (expected one of {', '.join(RECEIPT_OUTCOMES)})")
    reason = f"stat:{stat} err:{fields['err']}" if "err" in fields else f"stat:{stat}"
    return DeliveryEvent(
        channel="sms",
        outcome=RECEIPT_OUTCOMES[stat],
        provider_id=provider_id,
        at=_receipt_time(fields.get("done date", ""), tz),
        reason=reason,
    )


DEFAULT_HTTP_STATUSES: Mapping[str, str] = {
    "delivered": "delivered",
    "undelivered": "bounced",
    "failed": "failed",
}


def _dotted(payload: Any, path: str) -> Any:
    """``payload`` followed along ``a.b.0.c`` (a digit indexes a list); None where the path ends."""
    current = payload
    for part in path.split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
    return current


def parse_http_receipt(
    payload: Mapping[str, Any],
    *,
    id_field: str = "id",
    status_field: str = "status",
    statuses: Mapping[str, str] = DEFAULT_HTTP_STATUSES,
    recipient_field: str = "",
    reference_field: str = "",
) -> DeliveryEvent:
    """A gateway's JSON delivery callback as an event; field names are dotted paths, statuses are matched
    without regard to case.

    Raises:
        ValueError: the id or status is missing, or the status is not in ``statuses`` (an intermediate
            state such as ``queued`` is not an outcome; the caller answers the gateway and waits).
    """
    provider_id, status = _dotted(payload, id_field), _dotted(payload, status_field)
    if provider_id in (None, "") or not isinstance(status, str) or not status:
        raise ValueError(f"delivery callback needs {id_field!r} and {status_field!r}: {dict(payload)!r}")
    folded = {name.lower(): outcome for name, outcome in statuses.items()}
    if status.lower() not in folded:
        raise ValueError(f"unknown delivery status {status!r} (expected one of {', '.join(statuses)})")
    recipient = _dotted(payload, recipient_field) if recipient_field else None
    reference = _dotted(payload, reference_field) if reference_field else None
    return DeliveryEvent(
        channel="sms",
        outcome=folded[status.lower()],
        provider_id=str(provider_id),
        recipient=str(recipient) if recipient is not None else "",
        reason=f"status:{status}" + (f" reference:{reference}" if reference is not None else ""),
    )


# --------------------------------------------------------------------------------------------- SMPP

# What an SMSC's answer means for this message: the address or our account is wrong, for good.
# Statuses about our bind or our sender id, not about one message: the channel is down until fixed.
_SETTINGS_STATUSES = frozenset(
    {
        smpplib.consts.SMPP_ESME_RINVPASWD,
        smpplib.consts.SMPP_ESME_RINVSYSID,
        smpplib.consts.SMPP_ESME_RINVSYSTYP,
        smpplib.consts.SMPP_ESME_RINVSRCADR,
        smpplib.consts.SMPP_ESME_RINVSRCTON,
        smpplib.consts.SMPP_ESME_RINVSRCNPI,
    }
)
_PERMANENT_STATUSES = frozenset(
    {
        smpplib.consts.SMPP_ESME_RINVDSTADR,
        smpplib.consts.SMPP_ESME_RINVDSTTON,
        smpplib.consts.SMPP_ESME_RINVDSTNPI,
        smpplib.consts.SMPP_ESME_RINVSRCADR,
        smpplib.consts.SMPP_ESME_RINVSRCTON,
        smpplib.consts.SMPP_ESME_RINVSRCNPI,
        smpplib.consts.SMPP_ESME_RINVPASWD,
        smpplib.consts.SMPP_ESME_RINVSYSID,
        smpplib.consts.SMPP_ESME_RINVMSGLEN,
        smpplib.consts.SMPP_ESME_RINVESMCLASS,
        smpplib.consts.SMPP_ESME_RINVSYSTYP,
        smpplib.consts.SMPP_ESME_RX_P_APPN,
        smpplib.consts.SMPP_ESME_RX_R_APPN,
    }
)


# What breaks a session (the next send binds again): smpplib's own errors and the socket's.
_SESSION_ERRORS = (
    smpplib.exceptions.ConnectionError,
    smpplib.exceptions.PDUError,
    smpplib.exceptions.UnknownCommandError,
    OSError,
)


def smpp_error(status: int, command: str) -> TransientError | PermanentError:
    """The error an SMSC's non-zero command_status means; anything not known to be about this message or
    our credentials is worth a retry (throttling, a full queue, a system error, an unknown code)."""
    words = smpplib.consts.DESCRIPTIONS.get(status, "unknown status")
    reason = f"{command}: {words}"
    code = f"0x{status:08X}"
    if status in _SETTINGS_STATUSES:
        return ChannelDown(f"{reason}: check the SMS settings", code=code)
    if status in _PERMANENT_STATUSES:
        return PermanentError(reason, code=code)
    return TransientError(reason, code=code)


class SmppTransport:
    """Sends texts over one SMPP 3.4 transceiver session, bound on first use and kept bound.

    Not thread-safe: one dispatcher owns it. What the SMSC delivers unasked (delivery receipts and
    customers' replies, as deliver_sm) is read while sending and polling, and acknowledged (deliver_sm_resp)
    only once it is safe:

    - with ``inbound`` (the dispatcher's: it stores them in the database), after ``inbound(items)``
      returned, at the start of the next :meth:`send`, in :meth:`poll_receipts` and :meth:`close`. If it
      raises, nothing is acknowledged: the items are kept and handed over again next time, and an SMSC
      delivers again what was not acknowledged (a copy is harmless: an opt-out hold is added once);
    - without it, when they are kept in memory for :meth:`poll_receipts` and :meth:`take_inbound`; the
      caller must store what it gets before it exits.

    A deliver_sm read on a session that broke before it was acknowledged is still handed over (the SMSC
    will deliver it again on the next session).
    """

    channel = "sms"

    def __init__(
        self,
        settings: SmsSettings,
        receipt_tz: dt.tzinfo = dt.UTC,
        inbound: Callable[[Sequence[InboundSms]], None] | None = None,
    ) -> None:
        if settings.kind != "smpp":
            raise ValueError(f"SmppTransport needs SMPP settings, not {settings.kind!r}")
        self.settings = settings
        self.receipt_tz = receipt_tz
        self.inbound = inbound
        self._client: Any = None
        self._arrived: list[tuple[Any, int, InboundSms]] = []  # read, not acknowledged: session, sequence
        self._receipts: list[DeliveryEvent] = []
        self._inbound: list[InboundSms] = []

    # -- session

    def _bound(self) -> Any:
        if self._client is not None:
            return self._client
        s = self.settings
        client = smpplib.client.Client(s.host, s.port, timeout=s.timeout, allow_unknown_opt_params=True)
        try:
            client.connect()
            client.bind_transceiver(system_id=s.system_id, password=s.password, system_type=s.system_type)
        except smpplib.exceptions.PDUError as exc:
            client.disconnect()
            status = exc.args[1] if len(exc.args) > 1 else smpplib.consts.SMPP_ESME_RBINDFAIL
            raise smpp_error(int(status), "bind_transceiver") from exc
        except (smpplib.exceptions.ConnectionError, OSError) as exc:
            client.disconnect()
            raise TransientError(
                f"cannot bind to SMSC {s.host}:{s.port}: {exc or 'connection lost'}"
            ) from exc
        self._client = client
        return client

    def _drop(self) -> None:
        """Forget a broken session; the next send binds again."""
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()

    def _read(self, client: Any) -> Any:
        """One PDU; what the SMSC sends unasked is answered here (enquire_link, unbind) or kept to be
        acknowledged once handed over (deliver_sm, see :meth:`_hand_over`)."""
        pdu = client.read_pdu()
        if pdu.command == "deliver_sm":
            self._arrived.append((client, int(pdu.sequence), self._delivered(pdu)))
        elif pdu.command == "enquire_link":
            _answer(client, "enquire_link_resp", pdu.sequence)
        elif pdu.command == "unbind":
            _answer(client, "unbind_resp", pdu.sequence)
            raise smpplib.exceptions.ConnectionError("SMSC unbound the session")
        return pdu

    def _hand_over(self) -> None:
        """Give what arrived to ``inbound`` (or keep it in memory), then acknowledge each deliver_sm on its
        session if that session is still bound. Nothing is acknowledged when ``inbound`` raises."""
        if not self._arrived:
            return
        arrived = list(self._arrived)
        items = [item for _, _, item in arrived]
        if self.inbound is not None:
            self.inbound(items)
        else:
            self._receipts += [item.receipt for item in items if item.receipt is not None]
            self._inbound += [item for item in items if item.receipt is None]
        del self._arrived[: len(arrived)]
        for client, sequence, _ in arrived:
            if client is not self._client:
                continue  # that session broke: the SMSC delivers it again on the next one
            try:
                _answer(client, "deliver_sm_resp", sequence)
            except _SESSION_ERRORS:
                self._drop()  # what is stored and not acknowledged comes again: a harmless copy

    def _delivered(self, pdu: Any) -> InboundSms:
        raw = pdu.short_message or b""
        esm_class = int(pdu.esm_class or 0)
        sender = _decode(pdu.source_addr)
        number = f"+{sender}" if sender.isdigit() else sender
        ours = _decode(pdu.destination_addr)
        if esm_class & 0x04:  # SMPP 3.4 §5.2.12: an SMSC delivery receipt
            text = _decode(raw)
            return InboundSms(number, text, False, ours, self._receipt_of(pdu, text, sender))
        text = _decode_text(
            raw, int(pdu.data_coding or 0), bool(esm_class & smpplib.consts.SMPP_GSMFEAT_UDHI)
        )
        return InboundSms(number, text, is_opt_out(text), ours)

    def _receipt_of(self, pdu: Any, text: str, sender: str) -> DeliveryEvent:
        recipient = f"+{sender}" if sender.isdigit() else sender
        try:
            return replace(parse_receipt(text, self.receipt_tz), recipient=recipient)
        except ValueError as exc:
            state = getattr(pdu, "message_state", None)
            tlv_id = _decode(getattr(pdu, "receipted_message_id", None) or b"")
            stat = _STATE_STATS.get(int(state)) if state is not None else None
            if tlv_id and stat:
                outcome = RECEIPT_OUTCOMES[stat]
                return DeliveryEvent(
                    "sms", outcome, provider_id=tlv_id, recipient=recipient, reason=f"stat:{stat}"
                )
            # Kept, not dropped: an unreadable receipt is still evidence that something came back.
            return DeliveryEvent("sms", "failed", provider_id=tlv_id, recipient=recipient, reason=str(exc))

    # -- Transport

    def send(self, item: Outgoing) -> Receipt:
        """Submit the text (in segments when long), asking for delivery receipts; the first part's id."""
        text = _text_of(item)
        reference = _reference(item)
        try:
            data_coding, esm_class, parts = sms_parts(
                text, int(reference[:2], 16) if _is_hex(reference) else 0
            )
        except ValueError as exc:
            raise PermanentError(str(exc)) from exc
        s = self.settings
        self._hand_over()  # what arrived during the last send: stored and acknowledged before this one goes
        client = self._bound()
        ids: list[str] = []
        try:
            for part in parts:
                pdu = smpplib.smpp.make_pdu(
                    "submit_sm",
                    client=client,
                    source_addr_ton=s.source_ton,
                    source_addr_npi=s.source_npi,
                    source_addr=item.meta.get("source_addr") or s.source_addr,
                    dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
                    dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
                    destination_addr=item.recipient[1:],
                    esm_class=esm_class,
                    data_coding=data_coding,
                    registered_delivery=1,
                    short_message=part,
                )
                client.send_pdu(pdu)
                ids.append(self._await_resp(client, pdu.sequence))
        except _SESSION_ERRORS as exc:
            self._drop()
            done = f" after {len(ids)} of {len(parts)} parts" if ids else ""
            raise TransientError(f"SMSC connection lost{done}: {exc or type(exc).__name__}") from exc
        detail = f"{len(parts)} part(s): {','.join(ids)}"
        return Receipt(provider_id=ids[0], detail=detail)

    def _await_resp(self, client: Any, sequence: int) -> str:
        while True:
            pdu = self._read(client)
            if pdu.sequence != sequence or pdu.command not in ("submit_sm_resp", "generic_nack"):
                continue
            if pdu.is_error():
                raise smpp_error(int(pdu.status), "submit_sm")
            return _decode(pdu.message_id)

    def poll_receipts(self, timeout: float) -> list[DeliveryEvent]:
        """Delivery receipts kept so far and those arriving within ``timeout`` seconds of waiting for the
        first PDU (then whatever is already waiting); an empty list when none came.

        Raises:
            TransientError: the session broke (it binds again on the next call).
        """
        self._hand_over()  # what a broken session left behind
        client = self._client if self._client is not None else self._bound()
        self._wait_and_read(client, timeout)
        self._hand_over()
        events, self._receipts = self._receipts, []
        return events

    def _wait_and_read(self, client: Any, timeout: float) -> None:
        wait = timeout
        try:
            # smpplib has no public way to wait for a PDU with a timeout; its socket is the only handle.
            while select.select([client._socket], [], [], wait)[0]:
                self._read(client)
                wait = 0
        except _SESSION_ERRORS as exc:
            self._drop()
            raise TransientError(f"SMSC connection lost while reading receipts: {exc}") from exc

    def take_inbound(self) -> list[InboundSms]:
        """Customers' texts received so far (read by :meth:`poll_receipts` and :meth:`send`), when the
        transport has no ``inbound``."""
        inbound, self._inbound = self._inbound, []
        return inbound

    def close(self) -> None:
        """Hand over and acknowledge what is waiting, unbind and disconnect; safe to call twice.

        A deliver_sm that comes between our unbind and its answer is handed over but not acknowledged
        (the SMSC delivers it again on the next session).
        """
        client = self._client
        if client is None:
            self._hand_over()
            return
        try:
            self._wait_and_read(client, 0.0)
            self._hand_over()
            unbind = smpplib.smpp.make_pdu("unbind", client=client)
            client.send_pdu(unbind)
            while True:
                pdu = self._read(client)
                if pdu.command == "unbind_resp" and pdu.sequence == unbind.sequence:
                    break
        except (*_SESSION_ERRORS, TransientError):
            pass  # the session is being closed either way; nothing was being sent
        finally:
            self._drop()
            self._hand_over()


def _answer(client: Any, command: str, sequence: int) -> None:
    """Respond to the SMSC's request ``sequence`` (set after construction: smpplib ignores the keyword)."""
    resp = smpplib.smpp.make_pdu(command, client=client)
    resp.sequence = sequence
    client.send_pdu(resp)


def _is_hex(value: str) -> bool:
    return len(value) >= 2 and all(c in "0123456789abcdefABCDEF" for c in value[:2])


def _decode(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return "" if value is None else str(value)


_GSM_BY_SEPTET = {n: ch for n, ch in enumerate(_GSM_BASIC) if n != _ESC}
_GSM_EXT_BY_SEPTET = {n: ch for ch, n in _GSM_EXTENSION.items()}


def _decode_text(raw: bytes, data_coding: int, has_udh: bool) -> str:
    """A received short message's text: UDH skipped, UCS-2 or unpacked GSM-7 (anything else as Latin-1)."""
    if has_udh and raw:
        raw = raw[1 + raw[0] :]
    if data_coding == DATA_CODING["UCS-2"]:
        return raw.decode("utf-16-be", errors="replace")
    if data_coding == DATA_CODING["GSM-7"]:
        out: list[str] = []
        escaped = False
        for septet in raw:
            if escaped:
                out.append(_GSM_EXT_BY_SEPTET.get(septet, " "))
                escaped = False
            elif septet == _ESC:
                escaped = True
            else:
                out.append(_GSM_BY_SEPTET.get(septet, "?"))
        return "".join(out)
    return raw.decode("latin-1")


# --------------------------------------------------------------------------------------------- HTTP

_PLACEHOLDER = re.compile(r"\{(to|from|text|reference)\}")


def render_template(template: Any, values: Mapping[str, str]) -> Any:
    """``template`` with the placeholders replaced in every string, in one pass (so replaced text is never
    read again), through nested objects and arrays; other JSON values are kept."""
    if isinstance(template, str):
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)
    if isinstance(template, Mapping):
        return {key: render_template(value, values) for key, value in template.items()}
    if isinstance(template, Sequence):
        return [render_template(value, values) for value in template]
    return template


class HttpSmsTransport:
    """Sends each text as one JSON request to an SMS gateway; the gateway segments it."""

    channel = "sms"

    def __init__(self, settings: SmsSettings) -> None:
        if settings.kind != "http":
            raise ValueError(f"HttpSmsTransport needs HTTP settings, not {settings.kind!r}")
        self.settings = settings

    def request_for(self, item: Outgoing) -> tuple[bytes, dict[str, str]]:
        """The body and headers that would be sent for ``item``."""
        s = self.settings
        values = {
            "to": item.recipient,
            "from": item.meta.get("source_addr") or s.source_addr,  # a contact's message: its own
            "text": _text_of(item),
            "reference": _reference(item),
        }
        body = json.dumps(render_template(s.body, values), separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"}
        headers.update({name: render_template(value, values) for name, value in s.headers.items()})
        return body, headers

    def send(self, item: Outgoing) -> Receipt:
        """POST the body; the gateway's id for the message from ``id_field``."""
        body, headers = self.request_for(item)
        s = self.settings
        status, answer, answer_headers = http_request(s.method, s.url, body, headers, s.timeout)
        raise_for_status(status, answer, answer_headers)
        try:
            provider_id = _dotted(json.loads(answer), s.id_field)
        except ValueError:
            provider_id = None
        if provider_id in (None, ""):
            # Accepted all the same: raising would send the text twice.
            return Receipt("", f"HTTP {status}; no {s.id_field!r} in the answer")
        return Receipt(str(provider_id), f"HTTP {status}")

    def close(self) -> None:
        """Nothing to close: each request has its own connection."""


# --------------------------------------------------------------------------------------------- file


class SmsFileTransport:
    """Writes each text as one JSON line instead of sending it: the demo and manual tests need no servers.

    A message whose reference is already in the file is not written again, so a re-run shows each once.
    """

    channel = "sms"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._written: set[str] = set()
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    self._written.add(str(json.loads(line)["reference"]))
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a crash: its message is written again

    def send(self, item: Outgoing) -> Receipt:
        """Append the message's line unless its reference is written already."""
        text = _text_of(item)
        reference = _reference(item)
        if reference in self._written:
            return Receipt(reference, "already in the file")
        shape = sms_encoding(text)
        line = {
            "reference": reference,
            "to": item.recipient,
            "text": text,
            "encoding": shape.encoding,
            "segments": shape.segments,
        }
        if item.meta.get("source_addr"):
            line["from"] = item.meta["source_addr"]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a+b") as out:
                if out.seek(0, os.SEEK_END) and out.seek(-1, os.SEEK_END) >= 0 and out.read(1) != b"\n":
                    out.write(b"\n")  # end a line a crash cut short, so this one stays readable
                out.write(json.dumps(line, ensure_ascii=False).encode() + b"\n")
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            raise TransientError(f"cannot write {self.path}: {exc}") from exc
        self._written.add(reference)
        return Receipt(reference, f"written to {self.path}")

    def close(self) -> None:
        """Nothing to close: the file is opened for each message."""


__all__ = [
    "SmsEncoding",
    "SmsSettings",
    "SmppTransport",
    "HttpSmsTransport",
    "SmsFileTransport",
    "InboundSms",
    "sms_encoding",
    "sms_parts",
    "parse_receipt",
    "parse_http_receipt",
    "is_opt_out",
    "smpp_error",
]
