"""The SMS adapters against real peers on 127.0.0.1: an SMPP 3.4 SMSC (``smpp_peer``) and a JSON HTTP
gateway (``http.server``), both started by the tests in threads."""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from smpp_peer import ESME_RINVPASWD, SmppPeer

from duecourse.channels.base import (
    ChannelDown,
    DeliveryEvent,
    Outgoing,
    PermanentError,
    TransientError,
    reference_for,
)
from duecourse.channels.sms import HttpSmsTransport, InboundSms, SmppTransport, SmsSettings

NUMBER = "+8613800138000"
KEY = "A1/M1/sms_reminder/2025-01-02/sms"


def item(text: str, recipient: str = NUMBER, key: str = KEY) -> Outgoing:
    return Outgoing(7, key, "sms", recipient, text.encode())


# ------------------------------------------------------------------------------------------ SMPP


@pytest.fixture
def peer() -> Iterator[SmppPeer]:
    with SmppPeer(password="s3cret") as running:
        yield running


def smpp(port: int, password: str = "s3cret") -> SmppTransport:
    return SmppTransport(
        SmsSettings(
            "smpp",
            host="127.0.0.1",
            port=port,
            system_id="bank",
            password=password,
            source_addr="BANK",
            timeout=2.0,
        )
    )


def test_a_short_text_is_submitted_once_with_a_receipt_requested(peer: SmppPeer) -> None:
    transport = smpp(peer.port)
    try:
        receipt = transport.send(item("Your statement is ready. Reply STOP to opt out"))
        events = transport.poll_receipts(2.0)
    finally:
        transport.close()

    assert (receipt.provider_id, receipt.detail) == ("MSG0001", "1 part(s): MSG0001")
    assert peer.log.binds == [("bank", "s3cret")]
    [submitted] = peer.log.submitted
    assert (submitted.source_ton, submitted.source_npi, submitted.source_addr) == (5, 0, "BANK")
    assert (submitted.dest_ton, submitted.dest_npi, submitted.destination) == (1, 1, "8613800138000")
    assert (submitted.esm_class, submitted.registered_delivery, submitted.data_coding) == (0, 1, 0)
    assert submitted.short_message == b"Your statement is ready. Reply STOP to opt out"
    assert events == [
        DeliveryEvent(
            channel="sms",
            outcome="delivered",
            provider_id="MSG0001",
            recipient=NUMBER,
            at=dt.datetime(2025, 1, 2, 10, 31, tzinfo=dt.UTC),
            reason="stat:DELIVRD err:000",
        )
    ]
    assert (0x80000005, 1001) in peer.log.acked  # the receipt's deliver_sm_resp
    assert peer.log.unbinds == 1


def test_a_long_chinese_text_goes_in_ucs2_parts_that_reassemble(peer: SmppPeer) -> None:
    text = "您的账户有一笔款项待处理，请登录手机银行查看详情。" * 4  # 100 characters
    transport = smpp(peer.port)
    try:
        receipt = transport.send(item(text))
        events = transport.poll_receipts(2.0)
    finally:
        transport.close()

    parts = [s.short_message for s in peer.log.submitted]
    reference = int(reference_for(KEY)[:2], 16)
    assert [p[:6] for p in parts] == [bytes([5, 0, 3, reference, 2, 1]), bytes([5, 0, 3, reference, 2, 2])]
    assert b"".join(p[6:] for p in parts).decode("utf-16-be") == text
    assert [(s.esm_class, s.data_coding) for s in peer.log.submitted] == [(0x40, 8), (0x40, 8)]
    assert (receipt.provider_id, receipt.detail) == ("MSG0001", "2 part(s): MSG0001,MSG0002")
    assert [(e.provider_id, e.outcome) for e in events] == [
        ("MSG0001", "delivered"),
        ("MSG0002", "delivered"),
    ]


def test_the_session_stays_bound_between_messages(peer: SmppPeer) -> None:
    transport = smpp(peer.port)
    try:
        first = transport.send(item("one"))
        second = transport.send(item("two", key="other"))
    finally:
        transport.close()

    assert (first.provider_id, second.provider_id) == ("MSG0001", "MSG0002")
    assert len(peer.log.binds) == 1


def test_an_undeliverable_number_comes_back_bounced(peer: SmppPeer) -> None:
    peer.receipt_stats["8613800138000"] = "UNDELIV"
    transport = smpp(peer.port)
    try:
        transport.send(item("hello"))
        [event] = transport.poll_receipts(2.0)
    finally:
        transport.close()

    assert (event.outcome, event.provider_id, event.reason) == ("bounced", "MSG0001", "stat:UNDELIV err:001")


@pytest.mark.parametrize(
    ("status", "kind", "words"),
    [
        pytest.param(0x58, TransientError, "Throttling error", id="throttled"),
        pytest.param(0x14, TransientError, "Message Queue is full", id="queue-full"),
        pytest.param(0x08, TransientError, "System Error", id="system-error"),
        pytest.param(0x0B, PermanentError, "Invalid Destination Address", id="bad-destination"),
        pytest.param(0x0A, ChannelDown, "Invalid Source Address", id="bad-source"),
    ],
)
def test_smsc_refusals_translate(peer: SmppPeer, status: int, kind: type[Exception], words: str) -> None:
    peer.statuses["8613800138000"] = status
    transport = smpp(peer.port)
    try:
        with pytest.raises(kind) as raised:
            transport.send(item("hello"))
        ok = transport.send(item("hello", recipient="+8613900139000"))  # the session is still good
    finally:
        transport.close()

    assert getattr(raised.value, "code", "") == f"0x{status:08X}"
    assert words in str(raised.value)
    assert ok.provider_id == "MSG0001"


def test_a_wrong_password_is_permanent(peer: SmppPeer) -> None:
    transport = smpp(peer.port, password="wrong")
    try:
        with pytest.raises(ChannelDown) as raised:
            transport.send(item("hello"))
    finally:
        transport.close()

    assert raised.value.code == f"0x{ESME_RINVPASWD:08X}"
    assert "bind_transceiver: Invalid Password" in str(raised.value)
    assert peer.log.submitted == []


def test_no_smsc_listening_is_transient() -> None:
    with socket.socket() as taken:
        # A port held (so no other process of a parallel run can take it) where nothing listens.
        taken.bind(("127.0.0.1", 0))
        transport = smpp(taken.getsockname()[1])
        with pytest.raises(TransientError, match="cannot bind to SMSC"):
            transport.send(item("hello"))
        transport.close()


def test_a_dropped_connection_is_transient_and_the_next_send_binds_again(peer: SmppPeer) -> None:
    peer.drop_on_submit = True
    transport = smpp(peer.port)
    try:
        with pytest.raises(TransientError, match="SMSC connection lost"):
            transport.send(item("hello"))
        receipt = transport.send(item("hello"))
    finally:
        transport.close()

    assert receipt.provider_id == "MSG0001"
    assert len(peer.log.binds) == 2


def test_replies_and_enquire_links_from_the_smsc_are_answered(peer: SmppPeer) -> None:
    transport = smpp(peer.port)
    try:
        transport.send(item("Reply STOP to opt out"))
        peer.send_enquire_link()
        peer.send_reply("8613800138000", "退订")
        events: list[DeliveryEvent] = []
        for _ in range(20):
            events += transport.poll_receipts(0.2)
            if len(peer.log.acked) >= 3:
                break
        inbound = transport.take_inbound()
    finally:
        transport.close()

    assert [e.provider_id for e in events] == ["MSG0001"]
    assert inbound == [InboundSms(NUMBER, "退订", opt_out=True, recipient="BANK")]
    assert sorted(command for command, _ in peer.log.acked) == [0x80000005, 0x80000005, 0x80000015]
    assert transport.take_inbound() == []


DELIVER_SM_RESP = 0x80000005


def _acked_deliveries(peer: SmppPeer) -> int:
    return sum(1 for command, _ in peer.log.acked if command == DELIVER_SM_RESP)


def test_a_reply_is_acknowledged_only_after_the_sink_has_it(peer: SmppPeer) -> None:
    handed: list[tuple[list[InboundSms], int]] = []  # what the sink got, and the acks the SMSC had then

    def sink(items: Sequence[InboundSms]) -> None:
        handed.append((list(items), _acked_deliveries(peer)))

    transport = SmppTransport(smpp(peer.port).settings, inbound=sink)
    try:
        transport.send(item("Reply STOP to opt out"))  # a receipt follows the submit_sm_resp
        peer.send_reply("8613800138000", "STOP please")
        for _ in range(40):
            assert transport.poll_receipts(0.1) == []  # receipts go to the sink, not back here
            if _acked_deliveries(peer) == 2:
                break
        assert transport.take_inbound() == []
    finally:
        transport.close()

    arrived = [one for items, _ in handed for one in items]
    assert [(one.sender, one.opt_out, one.receipt is not None) for one in arrived] == [
        (NUMBER, False, True),
        (NUMBER, True, False),
    ]
    assert arrived[0].receipt is not None and arrived[0].receipt.provider_id == "MSG0001"
    assert (arrived[1].text, arrived[1].recipient) == ("STOP please", "BANK")
    acks_when_handed = [acked for _, acked in handed]
    assert acks_when_handed == sorted(acks_when_handed)
    assert all(acked < 2 for acked in acks_when_handed)  # none was acknowledged before the sink had it
    assert _acked_deliveries(peer) == 2


def test_a_sink_that_fails_leaves_the_reply_unacknowledged_and_gets_it_again(peer: SmppPeer) -> None:
    calls: list[list[str]] = []

    def sink(items: Sequence[InboundSms]) -> None:
        calls.append([one.text for one in items])
        if len(calls) == 1:
            raise RuntimeError("the database is down")

    transport = SmppTransport(smpp(peer.port).settings, inbound=sink)
    try:
        transport.poll_receipts(0.0)  # binds
        peer.send_reply("8613800138000", "TD")
        with pytest.raises(RuntimeError, match="the database is down"):
            for _ in range(40):
                transport.poll_receipts(0.1)
        assert _acked_deliveries(peer) == 0
        transport.poll_receipts(0.0)
        deadline = time.monotonic() + 30
        while _acked_deliveries(peer) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)  # the peer reads the acknowledgement in its own thread
    finally:
        transport.close()

    assert calls == [["TD"], ["TD"]]
    assert _acked_deliveries(peer) == 1


def test_a_bad_number_is_refused_before_connecting(peer: SmppPeer) -> None:
    transport = smpp(peer.port)
    with pytest.raises(PermanentError, match="not an E.164"):
        transport.send(item("hello", recipient="0044 20 7946 0000"))
    transport.close()

    assert peer.log.binds == []


# ------------------------------------------------------------------------------------------ HTTP gateway


class Gateway:
    """A JSON SMS gateway: records each request and answers with the next queued (status, body, delay)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.answers: list[tuple[int, bytes, float]] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                gateway.requests.append(("POST", self.path, dict(self.headers), body))
                status, answer, delay = gateway.answers.pop(0) if gateway.answers else (200, b"{}", 0.0)
                time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                if status == 429:
                    self.send_header("Retry-After", "30")
                if 300 <= status < 400:
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/sms?account=bank"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})

    def __enter__(self) -> Gateway:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)
        self.server.server_close()


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    with Gateway() as running:
        yield running


def http_settings(url: str, timeout: float = 2.0) -> SmsSettings:
    return SmsSettings(
        "http",
        url=url,
        source_addr="BANK",
        headers={"Authorization": "Bearer t0k", "X-Request-Ref": "{reference}"},
        body={
            "messages": [{"destination": "{to}", "content": "{text}", "sender": "{from}"}],
            "ref": "{reference}",
        },
        id_field="messages.0.message-id",
        timeout=timeout,
    )


def test_the_gateway_gets_the_configured_json_and_its_id_comes_back(gateway: Gateway) -> None:
    gateway.answers.append((201, b'{"messages": [{"message-id": "gw-77", "status": "0"}]}', 0.0))
    text = "您好 {to}, pay € 5"

    receipt = HttpSmsTransport(http_settings(gateway.url)).send(item(text))

    [(method, path, headers, body)] = gateway.requests
    reference = reference_for(KEY)
    assert (method, path) == ("POST", "/v1/sms?account=bank")
    assert json.loads(body) == {
        "messages": [{"destination": NUMBER, "content": text, "sender": "BANK"}],
        "ref": reference,
    }
    assert (headers["Authorization"], headers["X-Request-Ref"]) == ("Bearer t0k", reference)
    assert headers["Content-Type"] == "application/json"
    assert (receipt.provider_id, receipt.detail) == ("gw-77", "HTTP 201")


def test_an_answer_without_an_id_is_still_accepted(gateway: Gateway) -> None:
    gateway.answers.append((200, b"queued", 0.0))

    receipt = HttpSmsTransport(http_settings(gateway.url)).send(item("hello"))

    assert (receipt.provider_id, receipt.detail) == ("", "HTTP 200; no 'messages.0.message-id' in the answer")


@pytest.mark.parametrize(
    ("status", "answer", "kind", "reason"),
    [
        pytest.param(
            429, b'{"error": "rate limited"}', TransientError, "HTTP 429: rate limited (retry after 30)"
        ),
        pytest.param(408, b"", TransientError, "HTTP 408", id="408"),
        pytest.param(503, b"<html>down for maintenance</html>", TransientError, "HTTP 503: <html>down for"),
        pytest.param(
            400, b'{"message": "invalid destination number"}', PermanentError, "HTTP 400: invalid dest"
        ),
        pytest.param(401, b'{"error": {"message": "bad token"}}', PermanentError, "HTTP 401: bad token"),
        pytest.param(301, b"", PermanentError, "HTTP 301", id="redirect"),
    ],
)
def test_gateway_errors_translate(
    gateway: Gateway, status: int, answer: bytes, kind: type[Exception], reason: str
) -> None:
    gateway.answers.append((status, answer, 0.0))

    with pytest.raises(kind) as raised:
        HttpSmsTransport(http_settings(gateway.url)).send(item("hello"))

    assert str(raised.value).startswith(f"{status} {reason}")
    assert len(gateway.requests) == 1  # a redirect is not followed


def test_a_gateway_that_does_not_answer_in_time_is_transient(gateway: Gateway) -> None:
    gateway.answers.append((200, b"{}", 0.5))

    with pytest.raises(TransientError, match="timed out"):
        HttpSmsTransport(http_settings(gateway.url, timeout=0.1)).send(item("hello"))


def test_no_gateway_listening_is_transient() -> None:
    with socket.socket() as taken:  # a port held where nothing listens (see above)
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(TransientError, match="Connection refused"):
            HttpSmsTransport(http_settings(f"http://127.0.0.1:{port}/sms")).send(item("hello"))
