"""Push webhooks: the signature (checked against a value computed by openssl), the replay window, and the
adapter against a local ``http.server`` receiver that verifies every request with :func:`verify`."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from duecourse.channels.base import ChannelDown, Outgoing, PermanentError, TransientError, reference_for
from duecourse.channels.push import BadSignature, PushSettings, WebhookTransport, sign, verify

SECRET = b"k3y-0123456789abcdef-0123456789ab"
BODY = b'{"title":"Reminder","body":"Please open the app"}'
NOW = 1_700_000_000
# printf '%s' '1700000000.{"title":"Reminder","body":"Please open the app"}' \
#   | openssl dgst -sha256 -hmac 'k3y-0123456789abcdef-0123456789ab'
EXPECTED = "c829ce997a1f5070b9e1b048f4088d3d49588ec18e9271937776d7f61970db2f"


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    assert sign(BODY, SECRET, NOW) == {
        "X-Duecourse-Timestamp": "1700000000",
        "X-Duecourse-Signature": f"v1={EXPECTED}",
    }


@pytest.mark.parametrize("skew", [-300, 0, 300], ids=["300s-early", "on-time", "300s-late"])
def test_a_signed_request_within_the_window_is_accepted(skew: int) -> None:
    verify(sign(BODY, SECRET, NOW), BODY, SECRET, now=NOW + skew)


def test_header_names_are_matched_without_case_and_any_listed_v1_may_match() -> None:
    headers = {"x-duecourse-timestamp": str(NOW), "X-DUECOURSE-SIGNATURE": f"v1={'0' * 64}, v1={EXPECTED}"}

    verify(headers, BODY, SECRET, now=NOW)


@pytest.mark.parametrize(
    ("headers", "body", "secret", "now", "message"),
    [
        pytest.param(
            sign(BODY, SECRET, NOW), BODY, SECRET, NOW + 301, r"is \+301 s from now", id="replayed-late"
        ),
        pytest.param(
            sign(BODY, SECRET, NOW), BODY, SECRET, NOW - 301, "is -301 s from now", id="from-the-future"
        ),
        pytest.param(sign(BODY, SECRET, NOW), BODY + b" ", SECRET, NOW, "does not match", id="body-changed"),
        pytest.param(
            sign(BODY, SECRET, NOW), BODY, b"another-secret-of-32-bytes-long!", NOW, "does not match"
        ),
        pytest.param(
            {**sign(BODY, SECRET, NOW), "X-Duecourse-Timestamp": str(NOW + 1)},
            BODY,
            SECRET,
            NOW,
            "does not match",
            id="timestamp-changed",
        ),
        pytest.param(
            {}, BODY, SECRET, NOW, "missing header.*Timestamp, X-Duecourse-Signature", id="unsigned"
        ),
        pytest.param(
            {"X-Duecourse-Timestamp": str(NOW)}, BODY, SECRET, NOW, "missing header.*: X-Duecourse-Signature$"
        ),
        pytest.param(
            {**sign(BODY, SECRET, NOW), "X-Duecourse-Timestamp": "1.7e9"},
            BODY,
            SECRET,
            NOW,
            "not whole seconds",
        ),
        pytest.param(
            {"X-Duecourse-Timestamp": str(NOW), "X-Duecourse-Signature": EXPECTED},
            BODY,
            SECRET,
            NOW,
            "has no v1= value",
            id="no-version",
        ),
    ],
)
def test_untrustworthy_requests_are_refused(
    headers: dict[str, str], body: bytes, secret: bytes, now: int, message: str
) -> None:
    with pytest.raises(BadSignature, match=message):
        verify(headers, body, secret, now=now)


def test_bad_signature_is_a_value_error() -> None:
    assert issubclass(BadSignature, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "ftp://push", "secret": SECRET}, "http:// or https://"),
        ({"url": "http://push", "secret": b"short"}, "at least 16 bytes"),
        ({"url": "http://push", "secret": SECRET, "timeout": -1}, "timeout must be positive"),
    ],
)
def test_settings_refuse_a_weak_secret_or_a_bad_url(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PushSettings(**kwargs)  # type: ignore[arg-type]


def test_settings_do_not_show_the_secret() -> None:
    assert "k3y" not in repr(PushSettings("http://push", SECRET))


# ------------------------------------------------------------------------------------------ receiver


class Receiver:
    """The bank's push service: verifies each request at its own ``now`` and records what it accepted."""

    def __init__(self) -> None:
        self.now = NOW
        self.accepted: list[tuple[dict[str, str], bytes]] = []
        self.refused: list[str] = []
        self.status = 202
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = dict(self.headers)
                try:
                    verify(headers, body, SECRET, now=receiver.now)
                except BadSignature as exc:
                    receiver.refused.append(str(exc))
                    self.answer(401, {"error": str(exc)})
                    return
                receiver.accepted.append((headers, body))
                self.answer(receiver.status, {"message": "stored"})

            def answer(self, status: int, payload: dict[str, str]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/push"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})

    def post(self, headers: dict[str, str], body: bytes) -> int:
        """Send a request as captured (what an attacker replaying it would do)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            connection.request("POST", "/push", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    running.thread.start()
    try:
        yield running
    finally:
        running.server.shutdown()
        running.thread.join(timeout=5)
        running.server.server_close()


KEY = "A1/M1/push_reminder/2025-01-02/push"


def push(content: bytes = BODY) -> Outgoing:
    return Outgoing(3, KEY, "push", "C1", content)


def test_the_receiver_gets_the_exact_body_signed_with_an_idempotency_key(receiver: Receiver) -> None:
    clock_calls: list[int] = []

    def clock() -> int:
        clock_calls.append(NOW)
        return NOW

    receipt = WebhookTransport(PushSettings(receiver.url, SECRET, timeout=2), clock).send(push())

    [(headers, body)] = receiver.accepted
    assert body == BODY
    assert headers["X-Duecourse-Timestamp"] == "1700000000"
    assert headers["X-Duecourse-Signature"] == f"v1={EXPECTED}"
    assert headers["Idempotency-Key"] == reference_for(KEY)
    assert headers["Content-Type"] == "application/json"
    assert (receipt.provider_id, receipt.detail) == (reference_for(KEY), "HTTP 202")
    assert clock_calls == [NOW]


def test_a_captured_request_replayed_after_the_window_is_refused(receiver: Receiver) -> None:
    WebhookTransport(PushSettings(receiver.url, SECRET), lambda: NOW).send(push())
    [(headers, body)] = receiver.accepted
    wire = {
        name: headers[name] for name in ("X-Duecourse-Timestamp", "X-Duecourse-Signature", "Content-Type")
    }

    receiver.now = NOW + 300
    assert receiver.post(wire, body) == 202  # inside the window: the Idempotency-Key drops the repeat
    receiver.now = NOW + 301
    assert receiver.post(wire, body) == 401

    assert receiver.refused == ["timestamp 1700000000 is +301 s from now (1700000301); the window is ±300 s"]


def test_a_sender_with_a_slow_clock_is_refused(receiver: Receiver) -> None:
    transport = WebhookTransport(PushSettings(receiver.url, SECRET), lambda: NOW - 3600)

    with pytest.raises(ChannelDown, match="HTTP 401: timestamp 1699996400 is \\+3600 s") as raised:
        transport.send(push())

    assert raised.value.code == "401"


@pytest.mark.parametrize(
    ("status", "kind"), [(500, TransientError), (429, TransientError), (404, PermanentError)]
)
def test_receiver_errors_translate(receiver: Receiver, status: int, kind: type[Exception]) -> None:
    receiver.status = status

    with pytest.raises(kind, match=f"HTTP {status}: stored"):
        WebhookTransport(PushSettings(receiver.url, SECRET), lambda: NOW).send(push())


def test_a_body_that_is_not_json_is_never_sent(receiver: Receiver) -> None:
    with pytest.raises(PermanentError, match="push body is not JSON"):
        WebhookTransport(PushSettings(receiver.url, SECRET), lambda: NOW).send(push(b"Dear customer"))

    assert receiver.accepted == []
    assert receiver.refused == []


def test_no_receiver_listening_is_transient(receiver: Receiver) -> None:
    url = receiver.url
    receiver.server.shutdown()
    receiver.server.server_close()

    with pytest.raises(TransientError, match="Connection refused"):
        WebhookTransport(PushSettings(url, SECRET), lambda: NOW).send(push())
