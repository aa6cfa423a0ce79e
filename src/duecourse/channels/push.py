"""App push through the bank's own notification service: a signed JSON webhook.

The body (``Outgoing.content``) is rendered by the outbox; this adapter signs it and POSTs it. The receiver
checks the signature with :func:`verify` (or its own copy of it) before it trusts anything in the body:

- ``X-Duecourse-Timestamp``: whole seconds since the epoch, from the dispatcher's clock.
- ``X-Duecourse-Signature``: ``v1=`` and the hex HMAC-SHA256, under the shared secret, of the timestamp, a
  dot and the body bytes. Signing the timestamp with the body means an old request cannot be replayed
  with a fresh timestamp; the receiver refuses timestamps outside its window and drops repeats inside it
  by ``Idempotency-Key`` (the message's :func:`reference_for`).

The same small HTTP client serves the SMS gateway adapter; its errors translate as everywhere::

    ChannelError
    ├── TransientError   connection refused/reset, timeouts, HTTP 408, 429 and 5xx
    └── PermanentError   HTTP 3xx (a redirect is a configuration error, never followed with a body),
                         other 4xx, a body that is not JSON
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from duecourse.channels.base import (
    ChannelDown,
    Outgoing,
    PermanentError,
    Receipt,
    TransientError,
    reference_for,
)

TIMESTAMP_HEADER = "X-Duecourse-Timestamp"
SIGNATURE_HEADER = "X-Duecourse-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
SIGNATURE_VERSION = "v1"
MIN_SECRET_BYTES = 16  # 128 bits: below that an HMAC key can be guessed offline from one signed request
_MAX_ANSWER = 1 << 20  # an answer is an id or an error message; more is not read


class BadSignature(ValueError):
    """A webhook request that must not be trusted: unsigned, signed with another secret, or too old/new."""


def _mac(body: bytes, secret: bytes, timestamp: int) -> str:
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: bytes, timestamp: int) -> dict[str, str]:
    """The two signature headers for ``body`` sent at ``timestamp`` (seconds since the epoch)."""
    if not secret:
        raise ValueError("a webhook secret is required")
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: f"{SIGNATURE_VERSION}={_mac(body, secret, timestamp)}",
    }


def verify(
    headers: Mapping[str, str], body: bytes, secret: bytes, now: int, window_seconds: int = 300
) -> None:
    """Accept a request only if it is signed with ``secret`` and its timestamp is within ``window_seconds``
    of ``now`` either way (clocks drift both ways). Header names are matched without regard to case; a
    signature header may list several ``v1=`` values (during a secret rotation), one must match.

    Raises:
        BadSignature: saying which check failed.
    """
    folded = {name.lower(): value for name, value in headers.items()}
    stamp = folded.get(TIMESTAMP_HEADER.lower())
    signature = folded.get(SIGNATURE_HEADER.lower())
    if stamp is None or signature is None:
        missing = [h for h, v in ((TIMESTAMP_HEADER, stamp), (SIGNATURE_HEADER, signature)) if v is None]
        raise BadSignature(f"missing header(s): {', '.join(missing)}")
    stamp = stamp.strip()
    if not stamp.isascii() or not stamp.isdigit():
        raise BadSignature(f"{TIMESTAMP_HEADER} is not whole seconds: {stamp!r}")
    timestamp = int(stamp)
    if abs(now - timestamp) > window_seconds:
        raise BadSignature(
            f"timestamp {timestamp} is {now - timestamp:+d} s from now ({now}); "
            f"the window is ±{window_seconds} s"
        )
    expected = _mac(body, secret, timestamp)
    offered = [
        part.strip()[len(SIGNATURE_VERSION) + 1 :]
        for part in signature.split(",")
        if part.strip().startswith(f"{SIGNATURE_VERSION}=")
    ]
    if not offered:
        raise BadSignature(f"{SIGNATURE_HEADER} has no {SIGNATURE_VERSION}= value")
    # compare_digest on every candidate: the time taken does not say how much of a guess was right.
    if not any(hmac.compare_digest(expected.encode(), value.encode()) for value in offered):
        raise BadSignature("signature does not match the body and timestamp")


# --------------------------------------------------------------------------------------------- HTTP


def http_request(
    method: str, url: str, body: bytes, headers: Mapping[str, str], timeout: float
) -> tuple[int, bytes, dict[str, str]]:
    """One request on its own connection: ``(status, answer, headers)``; redirects are not followed.

    Raises:
        TransientError: the peer could not be reached, reset the connection or timed out (it may have
            received the request: the idempotency key or reference lets it drop the repeat).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PermanentError(f"not an http(s) URL: {url!r}")
    target = parts.path or "/"
    if parts.query:
        target += f"?{parts.query}"
    conn_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = conn_class(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request(method, target, body=body, headers=dict(headers))
        response = connection.getresponse()
        answer = response.read(_MAX_ANSWER)
        return response.status, answer, {name.lower(): value for name, value in response.getheaders()}
    except (OSError, http.client.HTTPException) as exc:
        raise TransientError(
            f"{method} {parts.hostname}:{parts.port or ''}: {exc or type(exc).__name__}"
        ) from exc
    finally:
        connection.close()


def _message(answer: bytes) -> str:
    """The peer's own words about an error: a JSON ``message``/``error``/``detail``, else the text."""
    text = answer.decode("utf-8", errors="replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        for name in ("message", "error_description", "error", "detail", "title"):
            value = parsed.get(name)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return str(value["message"])
    return " ".join(text.split())[:300]


def raise_for_status(status: int, answer: bytes, headers: Mapping[str, str] | None = None) -> None:
    """Nothing for 2xx; TransientError for 408, 429 and 5xx; PermanentError for the rest."""
    if 200 <= status < 300:
        return
    message = _message(answer)
    reason = f"HTTP {status}: {message}" if message else f"HTTP {status}"
    retry_after = (headers or {}).get("retry-after")
    if retry_after:
        reason += f" (retry after {retry_after})"
    if status in (408, 429) or status >= 500:
        raise TransientError(reason, code=str(status))
    if status in (401, 403):  # our credentials (the shared secret, a gateway token) are refused
        raise ChannelDown(f"{reason}: check the channel's secret or token", code=str(status))
    raise PermanentError(reason, code=str(status))


# --------------------------------------------------------------------------------------------- webhook


@dataclass(frozen=True, slots=True)
class PushSettings:
    """Where the push service listens and the secret shared with it (at least 16 bytes, from config)."""

    url: str
    secret: bytes = field(repr=False)
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"push url must be http:// or https://, not {self.url!r}")
        if len(self.secret) < MIN_SECRET_BYTES:
            raise ValueError(f"push secret must be at least {MIN_SECRET_BYTES} bytes")
        if self.timeout <= 0:
            raise ValueError("push timeout must be positive")


class WebhookTransport:
    """POSTs each rendered push body, signed, to the push service; ``clock()`` is seconds since the epoch."""

    channel = "push"

    def __init__(self, settings: PushSettings, clock: Callable[[], int]) -> None:
        self.settings = settings
        self.clock = clock

    def request_for(self, item: Outgoing) -> dict[str, str]:
        """The headers ``item`` is sent with (signed at ``clock()``)."""
        headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: reference_for(item.key)}
        headers.update(sign(item.content, self.settings.secret, self.clock()))
        return headers

    def send(self, item: Outgoing) -> Receipt:
        """Sign and POST ``item.content``; the reference (our Idempotency-Key) is the receipt's id."""
        try:
            json.loads(item.content)
        except ValueError as exc:
            raise PermanentError(f"push body is not JSON: {exc}") from exc
        headers = self.request_for(item)
        status, answer, answer_headers = http_request(
            "POST", self.settings.url, item.content, headers, self.settings.timeout
        )
        raise_for_status(status, answer, answer_headers)
        return Receipt(headers[IDEMPOTENCY_HEADER], f"HTTP {status}")

    def close(self) -> None:
        """Nothing to close: each request has its own connection."""
