"""The portal token: signed, expiring, no personal data; tampered and expired tokens are refused."""

from __future__ import annotations

import datetime as dt

import pytest

from duecourse.letters.token import BadToken, make_token, portal_link, verify_token

SECRET = b"test-secret"
DAY = dt.date(2025, 9, 26)


def test_a_fresh_token_verifies_to_its_letter_reference() -> None:
    token = make_token("LABCDEF123", DAY + dt.timedelta(days=60), SECRET)
    assert verify_token(token, DAY, SECRET) == "LABCDEF123"
    assert verify_token(token, DAY + dt.timedelta(days=60), SECRET) == "LABCDEF123"


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda t: t.replace("LABCDEF123", "LABCDEF124"), id="other-letter"),
        pytest.param(lambda t: t.replace(".20251125.", ".20261125."), id="longer-expiry"),
        pytest.param(lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"), id="signature"),
        pytest.param(lambda t: t + ".x", id="extra-part"),
    ],
)
def test_a_tampered_token_is_refused(tamper: object) -> None:
    token = make_token("LABCDEF123", dt.date(2025, 11, 25), SECRET)
    with pytest.raises(BadToken):
        verify_token(tamper(token), DAY, SECRET)  # type: ignore[operator]


def test_an_expired_token_is_refused() -> None:
    token = make_token("LABCDEF123", DAY, SECRET)
    with pytest.raises(BadToken, match="expired"):
        verify_token(token, DAY + dt.timedelta(days=1), SECRET)


def test_a_token_signed_with_another_secret_is_refused() -> None:
    token = make_token("LABCDEF123", DAY, b"other")
    with pytest.raises(BadToken, match="signature"):
        verify_token(token, DAY, SECRET)


def test_the_link_carries_only_the_reference_and_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUECOURSE_PORTAL_SECRET", "s3cret")
    link = portal_link("https://portal.example.cn/", "LABCDEF123", DAY)
    assert link.startswith("https://portal.example.cn/l/LABCDEF123.20250926.")
    assert verify_token(link.rsplit("/", 1)[1], DAY, b"s3cret") == "LABCDEF123"
