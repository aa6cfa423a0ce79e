"""A minimal SMPP 3.4 SMSC for tests, written from the specification with ``struct`` (not smpplib, so the
adapter is held to the protocol rather than to its own library).

It listens on 127.0.0.1 in a thread and serves one session at a time: bind_transceiver (refused with
ESME_RINVPASWD for a wrong password), submit_sm (answered with ``MSG0001``, ``MSG0002``, ... or with the
status the test set for that destination), a delivery receipt as deliver_sm with esm_class 0x04 after each
accepted part that asked for one, enquire_link, unbind. A test can also make it send a customer's reply,
an enquire_link, or drop the connection on the next submit_sm.
"""

from __future__ import annotations

import queue
import select
import socket
import struct
import threading
from dataclasses import dataclass, field

BIND_TRANSCEIVER = 0x00000009
SUBMIT_SM = 0x00000004
DELIVER_SM = 0x00000005
UNBIND = 0x00000006
ENQUIRE_LINK = 0x00000015
GENERIC_NACK = 0x80000000
RESP = 0x80000000

ESME_RINVPASWD = 0x0000000E


@dataclass(frozen=True)
class Submitted:
    """A submit_sm as the peer parsed it."""

    source_ton: int
    source_npi: int
    source_addr: str
    dest_ton: int
    dest_npi: int
    destination: str
    esm_class: int
    registered_delivery: int
    data_coding: int
    short_message: bytes


@dataclass
class Log:
    """What the peer saw, for the test to check."""

    binds: list[tuple[str, str]] = field(default_factory=list)
    submitted: list[Submitted] = field(default_factory=list)
    acked: list[tuple[int, int]] = field(default_factory=list)  # (command_id, sequence) of responses
    unbinds: int = 0


def _cstring(body: bytes, pos: int) -> tuple[str, int]:
    end = body.index(b"\x00", pos)
    return body[pos:end].decode("latin-1"), end + 1


def _pdu(command_id: int, status: int, sequence: int, body: bytes = b"") -> bytes:
    return struct.pack(">LLLL", 16 + len(body), command_id, status, sequence) + body


def parse_submit(body: bytes) -> Submitted:
    """submit_sm's mandatory fields (SMPP 3.4 §4.4.1)."""
    _service, pos = _cstring(body, 0)
    source_ton, source_npi = body[pos], body[pos + 1]
    source, pos = _cstring(body, pos + 2)
    dest_ton, dest_npi = body[pos], body[pos + 1]
    destination, pos = _cstring(body, pos + 2)
    esm_class = body[pos]
    pos += 3  # esm_class, protocol_id, priority_flag
    _schedule, pos = _cstring(body, pos)
    _validity, pos = _cstring(body, pos)
    registered, data_coding = body[pos], body[pos + 2]
    length = body[pos + 4]
    message = body[pos + 5 : pos + 5 + length]
    return Submitted(
        source_ton,
        source_npi,
        source,
        dest_ton,
        dest_npi,
        destination,
        esm_class,
        registered,
        data_coding,
        message,
    )


def deliver_sm_body(source: str, destination: str, esm_class: int, data_coding: int, message: bytes) -> bytes:
    """A deliver_sm body (SMPP 3.4 §4.6.1): the handset's number is the source."""
    return (
        b"\x00"  # service_type
        + bytes([1, 1])
        + source.encode()
        + b"\x00"
        + bytes([5, 0])
        + destination.encode()
        + b"\x00"
        + bytes([esm_class, 0, 0])
        + b"\x00\x00"  # schedule_delivery_time, validity_period
        + bytes([0, 0, data_coding, 0, len(message)])
        + message
    )


class SmppPeer:
    """The SMSC. Use as a context manager; ``port`` is where it listens."""

    def __init__(self, password: str = "secret") -> None:
        self.password = password
        self.log = Log()
        self.statuses: dict[str, int] = {}  # destination -> command_status for its submit_sm
        self.receipt_stats: dict[str, str] = {}  # destination -> stat of its receipt (default DELIVRD)
        self.drop_on_submit = False
        self._outbox: queue.Queue[tuple[int, bytes]] = queue.Queue()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._message_number = 0
        self._sequence = 1000
        self._bound = False

    def __enter__(self) -> SmppPeer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._server.close()

    def send_reply(self, sender: str, text: str) -> None:
        """Make the SMSC deliver a customer's text (a mobile-originated deliver_sm) to the bound client
        (at once, or as soon as a client binds)."""
        body = deliver_sm_body(sender, "BANK", 0x00, 0x08, text.encode("utf-16-be"))
        self._outbox.put((DELIVER_SM, body))

    def send_enquire_link(self) -> None:
        self._outbox.put((ENQUIRE_LINK, b""))

    # -- the server thread

    def _serve(self) -> None:
        while not self._stop.is_set():
            if not select.select([self._server], [], [], 0.05)[0]:
                continue
            connection, _ = self._server.accept()
            with connection:
                self._session(connection)

    def _next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence

    def _session(self, connection: socket.socket) -> None:
        buffer = b""
        self._bound = False
        while not self._stop.is_set():
            while self._bound and not self._outbox.empty():  # an SMSC delivers to a bound session only
                command_id, body = self._outbox.get()
                connection.sendall(_pdu(command_id, 0, self._next_sequence(), body))
            if not select.select([connection], [], [], 0.02)[0]:
                continue
            chunk = connection.recv(65536)
            if not chunk:
                return
            buffer += chunk
            while len(buffer) >= 16:
                (length,) = struct.unpack(">L", buffer[:4])
                if len(buffer) < length:
                    break
                pdu, buffer = buffer[:length], buffer[length:]
                if not self._handle(connection, pdu):
                    return

    def _handle(self, connection: socket.socket, pdu: bytes) -> bool:
        """Answer one PDU; False when the session ends."""
        _, command_id, _status, sequence = struct.unpack(">LLLL", pdu[:16])
        body = pdu[16:]
        if command_id & RESP:
            self.log.acked.append((command_id, sequence))
            return True
        if command_id == BIND_TRANSCEIVER:
            system_id, pos = _cstring(body, 0)
            password, _ = _cstring(body, pos)
            self.log.binds.append((system_id, password))
            status = 0 if password == self.password else ESME_RINVPASWD
            connection.sendall(_pdu(BIND_TRANSCEIVER | RESP, status, sequence, b"SMSC\x00"))
            self._bound = status == 0
            return self._bound
        if command_id == SUBMIT_SM:
            return self._submit(connection, sequence, parse_submit(body))
        if command_id == ENQUIRE_LINK:
            connection.sendall(_pdu(ENQUIRE_LINK | RESP, 0, sequence))
            return True
        if command_id == UNBIND:
            self.log.unbinds += 1
            connection.sendall(_pdu(UNBIND | RESP, 0, sequence))
            return False
        connection.sendall(_pdu(GENERIC_NACK, 0x00000003, sequence))
        return True

    def _submit(self, connection: socket.socket, sequence: int, submitted: Submitted) -> bool:
        if self.drop_on_submit:
            self.drop_on_submit = False
            return False
        self.log.submitted.append(submitted)
        status = self.statuses.get(submitted.destination, 0)
        if status:
            connection.sendall(_pdu(SUBMIT_SM | RESP, status, sequence, b"\x00"))
            return True
        self._message_number += 1
        message_id = f"MSG{self._message_number:04d}"
        connection.sendall(_pdu(SUBMIT_SM | RESP, 0, sequence, message_id.encode() + b"\x00"))
        if submitted.registered_delivery & 0x01:
            stat = self.receipt_stats.get(submitted.destination, "DELIVRD")
            err = "000" if stat == "DELIVRD" else "001"
            text = (
                f"id:{message_id} sub:001 dlvr:{'001' if stat == 'DELIVRD' else '000'} "
                f"submit date:2501021030 done date:2501021031 stat:{stat} err:{err} text:hello"
            )
            body = deliver_sm_body(submitted.destination, submitted.source_addr, 0x04, 0x00, text.encode())
            connection.sendall(_pdu(DELIVER_SM, 0, self._next_sequence(), body))
        return True
