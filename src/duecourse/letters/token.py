"""The portal link in a letter: a signed, expiring token that carries no personal data.

The token is ``<letter reference>.<expiry day as YYYYMMDD>.<signature>``; the signature is HMAC-SHA256 over
the first two parts with a secret from ``$DUECOURSE_PORTAL_SECRET``. The letter reference is an opaque id
of the stored letter (the portal looks the account up from it after the customer signs in), so neither
the URL nor the QR code holds a name, an account number or an amount. A token past its expiry, or with
any part changed, is refused by ``verify_token``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import os
import re

SECRET_ENV = "DUECOURSE_PORTAL_SECRET"
# Development only: the CLI warns on every letter signed with it. Never use it for letters that are posted.
DEV_SECRET = "duecourse-development-secret-not-for-production"
_REFERENCE = re.compile(r"^[A-Za-z0-9_-]{6,64}$")


class BadToken(ValueError):
    """A portal token that is malformed, tampered with, or expired."""


def portal_secret() -> tuple[bytes, bool]:
    """The signing secret and whether it is the development default."""
    value = os.environ.get(SECRET_ENV, "")
    if value:
        return value.encode("utf-8"), False
    return DEV_SECRET.encode("utf-8"), True


def _signature(secret: bytes, message: str) -> str:
    digest = hmac.new(secret, message.encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode("ascii")


def make_token(reference: str, expires: dt.date, secret: bytes) -> str:
    """The signed token for a letter reference, valid up to and including ``expires``."""
    if not _REFERENCE.match(reference):
        raise ValueError(f"a letter reference is 6-64 letters, digits, '-' or '_': {reference!r}")
    message = f"{reference}.{expires:%Y%m%d}"
    return f"{message}.{_signature(secret, message)}"


def verify_token(token: str, today: dt.date, secret: bytes) -> str:
    """The letter reference of a valid token; ``BadToken`` when it is malformed, tampered or expired."""
    parts = token.split(".")
    if len(parts) != 3:
        raise BadToken("malformed token")
    reference, expiry, signature = parts
    if not hmac.compare_digest(_signature(secret, f"{reference}.{expiry}"), signature):
        raise BadToken("the token's signature does not match")
    try:
        expires = dt.datetime.strptime(expiry, "%Y%m%d").date()
    except ValueError:
        raise BadToken("malformed expiry") from None
    if today > expires:
        raise BadToken(f"the token expired on {expires}")
    return reference


def portal_link(base_url: str, reference: str, expires: dt.date) -> str:
    """The URL printed and put in the QR code: the portal's base URL and the token, nothing else."""
    secret, _ = portal_secret()
    return f"{base_url.rstrip('/')}/l/{make_token(reference, expires, secret)}"
