"""E-mail without a server: the message bytes, the settings, the error table, the file transport, bounces."""

from __future__ import annotations

import datetime as dt
import email
import hashlib
import smtplib
import ssl
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from duecourse.channels.base import (
    ChannelDown,
    ChannelError,
    DeliveryEvent,
    Outgoing,
    PermanentError,
    Receipt,
    TransientError,
)
from duecourse.channels.email import (
    Attachment,
    EmailFileTransport,
    EmailSettings,
    SmtpTransport,
    build_email,
    dot_stuffed,
    message_id_for,
    parse_bounce,
    reference_of,
    translate_smtp_error,
)

KEY = "acct-1/M1/email/2026-03-02/email"
REF = hashlib.sha256(KEY.encode()).hexdigest()[:20]
BEIJING = dt.timezone(dt.timedelta(hours=8))
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 8 + b"\n%%EOF\n"


def build(**changes: object) -> bytes:
    args: dict[str, object] = {
        "key": KEY,
        "sender": "Acme Bank <collections@acme.example>",
        "recipient": "Jane Roe <jane@example.com>",
        "subject": "A message about your Acme account",
        "text": "Dear Jane,\nplease sign in to read it.\n",
        "html": "<p>Dear Jane,</p><p>please sign in to read it.</p>",
        "attachments": [Attachment("letter.pdf", PDF, "application/pdf")],
        "unsubscribe_url": "https://acme.example/unsubscribe/t0k3n",
        "unsubscribe_mailto": "unsubscribe@acme.example?subject=t0k3n",
        "date": dt.datetime(2026, 3, 2, 9, 30, tzinfo=BEIJING),
        "domain": "acme.example",
    }
    args.update(changes)
    return build_email(**args)  # type: ignore[arg-type]


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def parts(message: EmailMessage) -> list[str]:
    return [part.get_content_type() for part in message.walk()]


def crlf(text: str) -> str:
    """Text bodies travel in canonical form (RFC 2045): CRLF line ends."""
    return text.replace("\n", "\r\n")


# ---------------------------------------------------------------- building


def test_the_headers_say_who_when_and_how_to_opt_out() -> None:
    message = parse(build(reply_to="Acme Help <help@acme.example>"))
    assert message["From"] == "Acme Bank <collections@acme.example>"
    assert message["To"] == "Jane Roe <jane@example.com>"
    assert message["Reply-To"] == "Acme Help <help@acme.example>"
    assert message["Subject"] == "A message about your Acme account"
    assert message["Date"] == "Mon, 02 Mar 2026 09:30:00 +0800"
    assert message["Message-ID"] == f"<{REF}@acme.example>"
    assert message["List-Unsubscribe"] == (
        "<mailto:unsubscribe@acme.example?subject=t0k3n>, <https://acme.example/unsubscribe/t0k3n>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-Duecourse-Key"] == REF
    assert message["MIME-Version"] == "1.0"


def test_the_raw_key_which_names_the_account_never_appears() -> None:
    raw = build()
    assert KEY.encode() not in raw
    assert b"acct-1" not in raw


def test_the_same_inputs_give_the_same_bytes_and_another_key_other_ids() -> None:
    first, again, other = build(), build(), build(key="acct-2/M1/email/2026-03-02/email")
    assert first == again
    assert other != first
    assert parse(other)["Message-ID"] != parse(first)["Message-ID"]
    assert parse(other).get_boundary() != parse(first).get_boundary()


def test_a_mixed_message_holds_the_two_alternatives_then_the_pdf() -> None:
    message = parse(build())
    assert parts(message) == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "application/pdf",
    ]
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    assert plain.get_content() == crlf("Dear Jane,\nplease sign in to read it.\n")
    assert html.get_content() == crlf("<p>Dear Jane,</p><p>please sign in to read it.</p>\n")
    assert plain.get_content_charset() == "utf-8"
    assert html.get_content_charset() == "utf-8"
    (attachment,) = message.iter_attachments()
    assert attachment.get_filename() == "letter.pdf"
    assert attachment.get_content_disposition() == "attachment"
    assert attachment.get_content() == PDF


def test_without_attachments_the_alternative_is_the_whole_message() -> None:
    message = parse(build(attachments=[]))
    assert parts(message) == ["multipart/alternative", "text/plain", "text/html"]


def test_mime_version_is_written_once_at_the_top() -> None:
    assert build().count(b"MIME-Version:") == 1


def test_the_bytes_are_7bit_with_crlf_line_ends_and_short_lines() -> None:
    raw = build(subject="您的账户有一条新消息", text="您好：\n请登录网上银行查看。\n", html="<p>您好</p>")
    assert raw.isascii()
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78


def test_a_long_chinese_subject_and_body_round_trip() -> None:
    subject = "您的招商银行信用卡账户有一条新的重要消息，请尽快登录网上银行或手机银行查看详情，谢谢您的配合"
    text = "张伟先生您好：\n请登录手机银行查看您的账户信息。\n如有疑问请致电客服。\n"
    html = "<p>张伟先生您好：</p><p>请登录手机银行查看您的账户信息。</p>"
    message = parse(build(subject=subject, text=text, html=html, recipient="张伟 <zhang.wei@example.cn>"))
    assert message["Subject"] == subject
    assert message["To"] == "张伟 <zhang.wei@example.cn>"
    assert message["To"].addresses[0].addr_spec == "zhang.wei@example.cn"
    plain = message.get_body(preferencelist=("plain",))
    rich = message.get_body(preferencelist=("html",))
    assert plain is not None and rich is not None
    assert plain.get_content() == crlf(text)
    assert rich.get_content() == crlf(html + "\n")


def test_a_non_ascii_attachment_name_survives() -> None:
    message = parse(build(attachments=[Attachment("催收函-2026.pdf", PDF, "application/pdf")]))
    (attachment,) = message.iter_attachments()
    assert attachment.get_filename() == "催收函-2026.pdf"
    assert attachment.get_content() == PDF


def test_a_body_that_contains_the_boundary_moves_the_boundary() -> None:
    usual = parse(build(attachments=[])).get_boundary()
    assert usual is not None
    text = f"Trick line:\n--{usual}\nend\n"
    message = parse(build(attachments=[], text=text))
    assert message.get_boundary() not in (None, usual)
    plain = message.get_body(preferencelist=("plain",))
    assert plain is not None
    assert plain.get_content() == crlf(text)


def test_a_bare_unsubscribe_address_becomes_a_mailto_uri() -> None:
    message = parse(build(unsubscribe_mailto="unsubscribe@acme.example"))
    # Folding may put the whole value on the next line; the leading space is folding white space.
    assert message["List-Unsubscribe"].strip() == (
        "<mailto:unsubscribe@acme.example>, <https://acme.example/unsubscribe/t0k3n>"
    )


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        pytest.param({"date": dt.datetime(2026, 3, 2, 9, 30)}, "timezone-aware", id="naive-date"),
        pytest.param({"unsubscribe_url": "http://acme.example/u"}, "must be https", id="http-unsubscribe"),
        pytest.param({"unsubscribe_mailto": "nobody"}, "holds no address", id="mailto-without-address"),
        pytest.param({"unsubscribe_url": "https://acme.example/u u"}, "percent-encoded", id="space-in-url"),
        pytest.param({"subject": "Hello\r\nBcc: x@evil.example"}, "linefeed", id="header-injection"),
        pytest.param(
            {"attachments": [Attachment("a.bin", b"x", "pdf")]}, "bad MIME type", id="bad-mime-type"
        ),
    ],
)
def test_bad_inputs_are_refused(changes: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        build(**changes)


def test_message_ids_are_stable_and_carry_the_reference() -> None:
    assert message_id_for(KEY, "acme.example") == f"<{REF}@acme.example>"
    assert message_id_for(KEY, "acme.example") == message_id_for(KEY, "acme.example")
    assert reference_of(f"<{REF}@acme.example>") == REF
    assert reference_of(REF) == REF
    assert reference_of("<CAF00bar@mail.gmail.com>") == ""


# ---------------------------------------------------------------- settings


def test_settings_derive_the_domain_and_envelope_sender_from_the_from_address() -> None:
    settings = EmailSettings(
        host="smtp.acme.example", starttls=False, from_address="Acme Bank <collections@acme.example>"
    )
    assert settings.port == 25
    assert settings.message_id_domain == "acme.example"
    assert settings.envelope_from == "collections@acme.example"


def test_settings_never_show_the_password() -> None:
    settings = EmailSettings(
        host="h", starttls=True, from_address="c@acme.example", user="u", password="s3cret-pw"
    )
    assert "s3cret-pw" not in repr(settings)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        pytest.param({"from_address": "Acme Bank"}, "no e-mail address", id="no-address"),
        pytest.param({"starttls": True, "ssl": True}, "exclusive", id="starttls-and-ssl"),
        pytest.param({"port": 0}, "not a TCP port", id="port-0"),
        pytest.param({"timeout_seconds": 0}, "positive", id="no-timeout"),
    ],
)
def test_bad_settings_are_refused(changes: dict[str, object], words: str) -> None:
    args: dict[str, object] = {"host": "h", "starttls": False, "from_address": "c@acme.example"}
    args.update(changes)
    with pytest.raises(ValueError, match=words):
        EmailSettings(**args)  # type: ignore[arg-type]


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("error", "kind", "code", "reason"),
    [
        pytest.param(
            smtplib.SMTPRecipientsRefused({"a@x.example": (550, b"5.1.1 no such user")}),
            PermanentError,
            "550",
            "recipient refused: 5.1.1 no such user",
            id="rcpt-550",
        ),
        pytest.param(
            smtplib.SMTPRecipientsRefused({"a@x.example": (450, b"4.2.1 mailbox busy")}),
            TransientError,
            "450",
            "recipient refused: 4.2.1 mailbox busy",
            id="rcpt-450",
        ),
        pytest.param(
            smtplib.SMTPDataError(554, b"5.7.1 spam"),
            PermanentError,
            "554",
            "message refused: 5.7.1 spam",
            id="data-554",
        ),
        pytest.param(
            smtplib.SMTPDataError(451, b"4.3.0 try later"),
            TransientError,
            "451",
            "message refused: 4.3.0 try later",
            id="data-451",
        ),
        pytest.param(
            smtplib.SMTPSenderRefused(553, b"5.7.1 not our domain", "c@acme.example"),
            PermanentError,
            "553",
            "sender c@acme.example refused: 5.7.1 not our domain",
            id="mail-553",
        ),
        pytest.param(
            smtplib.SMTPAuthenticationError(535, b"5.7.8 Authentication credentials invalid"),
            ChannelDown,
            "535",
            "authentication failed (mx:25): check the SMTP user and password "
            "(5.7.8 Authentication credentials invalid)",
            id="auth-535",
        ),
        pytest.param(
            smtplib.SMTPAuthenticationError(454, b"4.7.0 temporary authentication failure"),
            TransientError,
            "454",
            "login deferred (mx:25): 4.7.0 temporary authentication failure",
            id="auth-454",
        ),
        pytest.param(
            smtplib.SMTPServerDisconnected("Connection unexpectedly closed"),
            TransientError,
            "",
            "connection lost (mx:25): Connection unexpectedly closed",
            id="disconnected",
        ),
        pytest.param(
            smtplib.SMTPResponseException(421, b"4.3.2 shutting down"),
            TransientError,
            "421",
            "server replied (mx:25): 4.3.2 shutting down",
            id="helo-421",
        ),
        pytest.param(
            smtplib.SMTPNotSupportedError("STARTTLS extension not supported by server."),
            ChannelDown,
            "",
            "server does not support what the settings need (mx:25): "
            "STARTTLS extension not supported by server.",
            id="no-starttls",
        ),
        pytest.param(
            smtplib.SMTPException("No suitable authentication method found."),
            ChannelDown,
            "",
            "SMTP session failed (mx:25): No suitable authentication method found.",
            id="no-auth-method",
        ),
        pytest.param(
            ConnectionRefusedError(111, "Connection refused"),
            TransientError,
            "",
            "cannot reach the SMTP server (mx:25): ConnectionRefusedError: [Errno 111] Connection refused",
            id="refused",
        ),
        pytest.param(
            TimeoutError("timed out"),
            TransientError,
            "",
            "cannot reach the SMTP server (mx:25): TimeoutError: timed out",
            id="timeout",
        ),
    ],
)
def test_smtp_failures_become_transient_or_permanent(
    error: BaseException, kind: type[ChannelError], code: str, reason: str
) -> None:
    translated = translate_smtp_error(error, server="mx:25")
    assert type(translated) is kind
    assert translated.code == code
    assert translated.reason == reason


def test_an_untrusted_certificate_is_a_permanent_misconfiguration() -> None:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_message = "self-signed certificate"
    translated = translate_smtp_error(error, server="mx:587")
    assert type(translated) is ChannelDown
    assert translated.reason == (
        "TLS certificate (mx:587) not trusted: self-signed certificate; set cafile or fix the host"
    )


@pytest.mark.parametrize(
    "recipient", ["", "jane", "Jane <jane@example.com>", "jane@example.com\r\nRCPT TO:<x@y>"]
)
def test_a_bad_recipient_is_refused_before_connecting(recipient: str) -> None:
    # Port 9 (discard) on a documentation address: reaching it would fail differently (TransientError).
    settings = EmailSettings(
        host="192.0.2.1", port=9, starttls=False, from_address="c@acme.example", timeout_seconds=0.01
    )
    with SmtpTransport(settings) as transport, pytest.raises(PermanentError, match="not an e-mail address"):
        transport.send(Outgoing(id=1, key=KEY, channel="email", recipient=recipient, content=build()))


# ---------------------------------------------------------------- DATA


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"line\r\n.starts with a dot\r\n", id="dot-line"),
        pytest.param(b".first line\r\n", id="dot-first"),
        pytest.param(b"no final line end", id="no-crlf"),
        pytest.param(b"..\r\n.\r\n\n.bare lf\r\n", id="dots-and-bare-lf"),
        pytest.param(b"", id="empty"),
    ],
)
def test_data_is_dot_stuffed_exactly_as_smtplib_does_it(content: bytes) -> None:
    expected = smtplib._quote_periods(content)  # what smtplib.SMTP.data() sends before its "."
    if not expected.endswith(b"\r\n"):
        expected += b"\r\n"
    assert dot_stuffed(content) == expected


def test_a_whole_message_with_a_pdf_is_dot_stuffed_as_smtplib_does_it() -> None:
    content = build(text=".a line that starts with a dot\n" * 3)
    assert dot_stuffed(content) == smtplib._quote_periods(content)


# ---------------------------------------------------------------- file transport


def test_the_file_transport_writes_the_exact_bytes_under_the_reference(tmp_path: Path) -> None:
    transport = EmailFileTransport(tmp_path / "outbox")
    content = build()
    item = Outgoing(id=7, key=KEY, channel="email", recipient="jane@example.com", content=content)
    receipt = transport.send(item)
    target = tmp_path / "outbox" / f"{REF}.eml"
    assert receipt == Receipt(provider_id=f"<{REF}@acme.example>", detail=str(target))
    assert target.read_bytes() == content
    assert transport.send(item) == receipt
    assert target.read_bytes() == content
    assert sorted(p.name for p in (tmp_path / "outbox").iterdir()) == [f"{REF}.eml"]
    assert transport.channel == "email"
    transport.close()


def test_the_file_transport_reports_an_unwritable_directory_as_transient(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    transport = EmailFileTransport(blocker)
    item = Outgoing(id=7, key=KEY, channel="email", recipient="jane@example.com", content=build())
    with pytest.raises(TransientError, match="cannot write"):
        transport.send(item)


# ---------------------------------------------------------------- bounces

POSTFIX_BOUNCE = f"""\
Return-Path: <>
Received: by mx.example.net (Postfix) id 4Q9xYz1abc; Tue,  3 Mar 2026 10:15:02 +0100 (CET)
Date: Tue,  3 Mar 2026 10:15:02 +0100 (CET)
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: collections@acme.example
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="4Q9xYz1abc.1772529302/mx.example.net"
Message-Id: <20260303091502.4Q9xYz1abc@mx.example.net>

This is a MIME-encapsulated message.

--4Q9xYz1abc.1772529302/mx.example.net
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<nobody@example.net>: host mail.example.net[203.0.113.5] said: 550 5.1.1
    <nobody@example.net>: Recipient address rejected: User unknown in local
    recipient table (in reply to RCPT TO command)

--4Q9xYz1abc.1772529302/mx.example.net
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
X-Postfix-Queue-ID: 4Q9xYz1abc
X-Postfix-Sender: rfc822; collections@acme.example
Arrival-Date: Tue,  3 Mar 2026 10:15:01 +0100 (CET)

Final-Recipient: rfc822; nobody@example.net
Original-Recipient: rfc822;nobody@example.net
Action: failed
Status: 5.1.1
Remote-MTA: dns; mail.example.net
Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.net>: Recipient address
    rejected: User unknown in local recipient table

--4Q9xYz1abc.1772529302/mx.example.net
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

Return-Path: <collections@acme.example>
From: Acme Bank <collections@acme.example>
To: nobody@example.net
Subject: A message about your Acme account
Date: Mon, 02 Mar 2026 09:30:00 +0800
Message-ID: <{REF}@acme.example>
X-Duecourse-Key: {REF}

--4Q9xYz1abc.1772529302/mx.example.net--
"""

EXCHANGE_BOUNCE = f"""\
From: postmaster@contoso.example
To: collections@acme.example
Date: Wed, 4 Mar 2026 02:10:44 +0000
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="cb7e2a1f-0e3d-4b8e-9a5c-1d2f3e4a5b6c"
X-MS-Exchange-Message-Is-Ndr:
Content-Language: en-US
Message-ID: <4f5e6d7c-ndr@CO1PR01MB1234.namprd01.prod.example>
Subject: Undeliverable: A message about your Acme account
Auto-Submitted: auto-replied

--cb7e2a1f-0e3d-4b8e-9a5c-1d2f3e4a5b6c
Content-Type: multipart/alternative; differences=Content-Type;
\tboundary="7a8b9c0d-1e2f-3a4b-5c6d-7e8f9a0b1c2d"

--7a8b9c0d-1e2f-3a4b-5c6d-7e8f9a0b1c2d
Content-Type: text/plain; charset="us-ascii"

Your message to j.doe@contoso.example couldn't be delivered.
j.doe wasn't found at contoso.example.

--7a8b9c0d-1e2f-3a4b-5c6d-7e8f9a0b1c2d
Content-Type: text/html; charset="us-ascii"

<html><body><b>Your message to j.doe@contoso.example couldn't be delivered.</b></body></html>

--7a8b9c0d-1e2f-3a4b-5c6d-7e8f9a0b1c2d--

--cb7e2a1f-0e3d-4b8e-9a5c-1d2f3e4a5b6c
Content-Type: message/delivery-status

Reporting-MTA: dns;CO1PR01MB1234.namprd01.prod.example
Received-From-MTA: dns;mail.acme.example
Arrival-Date: Wed, 4 Mar 2026 02:10:43 +0000

Original-Recipient: rfc822;j.doe@contoso.example
Final-Recipient: rfc822;j.doe@contoso.example
Action: failed
Status: 5.1.10
Diagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not
 found by SMTP address lookup
Last-Attempt-Date: Wed, 4 Mar 2026 02:10:44 +0000
X-Display-Name: J Doe

Original-Recipient: rfc822;m.roe@contoso.example
Final-Recipient: rfc822;m.roe@contoso.example
Action: delayed
Status: 4.4.7
Diagnostic-Code: smtp;450 4.4.7 Message delayed
Will-Retry-Until: Thu, 5 Mar 2026 02:10:43 +0000

--cb7e2a1f-0e3d-4b8e-9a5c-1d2f3e4a5b6c
Content-Type: message/rfc822

Received: from mail.acme.example (192.0.2.25) by CO1PR01MB1234.namprd01.prod.example
From: Acme Bank <collections@acme.example>
To: j.doe@contoso.example, m.roe@contoso.example
Subject: A message about your Acme account
Date: Mon, 02 Mar 2026 09:30:00 +0800
Message-ID:
 <{REF}@acme.example>
X-Duecourse-Key: {REF}
MIME-Version: 1.0
Content-Type: text/plain; charset="utf-8"

Dear customer,
please sign in to read it.

--cb7e2a1f-0e3d-4b8e-9a5c-1d2f3e4a5b6c--
"""


def bounce(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("ascii")


def test_a_postfix_bounce_for_an_unknown_user_is_a_bounce_of_our_message() -> None:
    assert parse_bounce(bounce(POSTFIX_BOUNCE)) == [
        DeliveryEvent(
            channel="email",
            outcome="bounced",
            key="",
            provider_id=f"<{REF}@acme.example>",
            recipient="nobody@example.net",
            at=dt.datetime(2026, 3, 3, 10, 15, 2, tzinfo=dt.timezone(dt.timedelta(hours=1))),
            reason="5.1.1 550 5.1.1 <nobody@example.net>: Recipient address rejected: "
            "User unknown in local recipient table",
        )
    ]


def test_an_exchange_report_gives_one_event_per_recipient_block() -> None:
    assert parse_bounce(bounce(EXCHANGE_BOUNCE)) == [
        DeliveryEvent(
            channel="email",
            outcome="bounced",
            provider_id=f"<{REF}@acme.example>",
            recipient="j.doe@contoso.example",
            at=dt.datetime(2026, 3, 4, 2, 10, 44, tzinfo=dt.UTC),
            reason="5.1.10 550 5.1.10 RESOLVER.ADR.RecipientNotFound; "
            "Recipient not found by SMTP address lookup",
        ),
        DeliveryEvent(
            channel="email",
            outcome="failed",
            provider_id=f"<{REF}@acme.example>",
            recipient="m.roe@contoso.example",
            at=dt.datetime(2026, 3, 4, 2, 10, 44, tzinfo=dt.UTC),
            reason="4.4.7 450 4.4.7 Message delayed",
        ),
    ]


def status_report(*blocks: str, original: str = f"Message-ID: <{REF}@acme.example>\n") -> bytes:
    return bounce(
        "From: MAILER-DAEMON@mx.example.net\n"
        "Date: Tue, 3 Mar 2026 10:15:02 -0000\n"
        "Subject: Delivery Status Notification\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="R"\n'
        "\n--R\nContent-Type: text/plain\n\nSee below.\n"
        "\n--R\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\n"
        + "\n".join(blocks)
        + "\n--R\nContent-Type: text/rfc822-headers\n\n"
        + original
        + "\n--R--\n"
    )


@pytest.mark.parametrize(
    ("block", "outcome", "reason"),
    [
        pytest.param(
            "Final-Recipient: rfc822; a@x.example\nAction: failed\nStatus: 4.2.2\n"
            "Diagnostic-Code: smtp; 452 4.2.2 mailbox full\n",
            "failed",
            "4.2.2 452 4.2.2 mailbox full",
            id="failed-4xx-is-not-a-bad-address",
        ),
        pytest.param(
            "Final-Recipient: rfc822; a@x.example\nAction: delivered\nStatus: 2.0.0\n",
            "delivered",
            "2.0.0",
            id="success-dsn",
        ),
        pytest.param(
            "Final-Recipient: rfc822; a@x.example\nAction: relayed\nStatus: 2.0.0\n",
            "failed",
            "2.0.0",
            id="relayed-means-no-news",
        ),
        pytest.param(
            "Final-Recipient: rfc822; a@x.example\nAction: failed\n",
            "failed",
            "failed",
            id="failed-without-status",
        ),
        pytest.param(
            "Final-Recipient: rfc822; a@x.example\nStatus: 5.2.1\n",
            "bounced",
            "5.2.1",
            id="status-without-action",
        ),
    ],
)
def test_action_and_status_decide_the_outcome(block: str, outcome: str, reason: str) -> None:
    assert parse_bounce(status_report(block)) == [
        DeliveryEvent(
            channel="email",
            outcome=outcome,
            provider_id=f"<{REF}@acme.example>",
            recipient="a@x.example",
            at=dt.datetime(2026, 3, 3, 10, 15, 2, tzinfo=dt.UTC),
            reason=reason,
        )
    ]


def test_only_our_key_header_returned_gives_the_reference() -> None:
    raw = status_report(
        "Final-Recipient: rfc822; a@x.example\nAction: failed\nStatus: 5.1.1\n",
        original=f"Subject: hi\nX-Duecourse-Key: {REF}\n",
    )
    (event,) = parse_bounce(raw)
    assert event.provider_id == REF
    assert reference_of(event.provider_id) == REF


def test_a_report_without_per_recipient_status_is_a_failure_of_unknown_cause() -> None:
    raw = bounce(
        "From: postmaster@odd.example\n"
        "Subject: Returned mail\n"
        "X-Failed-Recipients: a@x.example\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="R"\n'
        "\n--R\nContent-Type: text/plain\n\nCould not deliver.\n"
        "\n--R\nContent-Type: message/rfc822\n\n"
        f"Message-ID: <{REF}@acme.example>\nSubject: x\n\nbody\n"
        "\n--R--\n"
    )
    assert parse_bounce(raw) == [
        DeliveryEvent(
            channel="email",
            outcome="failed",
            provider_id=f"<{REF}@acme.example>",
            recipient="a@x.example",
            reason="report without per-recipient status: Returned mail",
        )
    ]


def test_a_plain_bounce_naming_failed_recipients_is_a_failure() -> None:
    raw = bounce(
        "From: Mail Delivery System <Mailer-Daemon@exim.example>\n"
        "Date: Tue, 3 Mar 2026 10:15:02 +0000\n"
        "Subject: Mail delivery failed: returning message to sender\n"
        "X-Failed-Recipients: a@x.example, b@x.example\n"
        "\nThis message was created automatically by mail delivery software.\n"
    )
    assert parse_bounce(raw) == [
        DeliveryEvent(
            channel="email",
            outcome="failed",
            recipient=address,
            at=dt.datetime(2026, 3, 3, 10, 15, 2, tzinfo=dt.UTC),
            reason="non-standard bounce: Mail delivery failed: returning message to sender",
        )
        for address in ("a@x.example", "b@x.example")
    ]


def test_an_ordinary_reply_is_not_a_bounce() -> None:
    raw = bounce(
        "From: Jane Roe <jane@example.com>\n"
        "To: collections@acme.example\n"
        "Subject: Re: A message about your Acme account\n"
        f"In-Reply-To: <{REF}@acme.example>\n"
        "\nI paid yesterday.\n"
    )
    assert parse_bounce(raw) == []


def test_a_read_receipt_is_not_a_bounce() -> None:
    raw = bounce(
        "From: jane@example.com\n"
        'Content-Type: multipart/report; report-type=disposition-notification; boundary="R"\n'
        "\n--R\nContent-Type: text/plain\n\nDisplayed.\n"
        "\n--R\nContent-Type: message/disposition-notification\n\n"
        "Final-Recipient: rfc822; jane@example.com\nDisposition: manual-action/MDN-sent-manually; displayed\n"
        "\n--R--\n"
    )
    assert parse_bounce(raw) == []
