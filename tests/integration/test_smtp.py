"""SmtpTransport against a real SMTP server (aiosmtpd, in a thread on 127.0.0.1), read back byte for byte.

The server's handler records each envelope and answers what a test tells it to (550 for one recipient,
451 at DATA); STARTTLS, implicit TLS and AUTH run with a self-signed certificate made by the openssl
command in the test's temporary directory.
"""

from __future__ import annotations

import datetime as dt
import email
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from duecourse.channels.base import Outgoing, PermanentError, Receipt, TransientError, reference_for
from duecourse.channels.email import Attachment, EmailSettings, SmtpTransport, build_email, message_id_for
from duecourse.letters.render import compile_pdf

SENDER = "Acme Bank <collections@acme.example>"
WHEN = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    peer: object


@dataclass
class Recorder:
    """An aiosmtpd handler: keeps what arrives; refuses what the test says."""

    received: list[Received] = field(default_factory=list)
    refuse_rcpt: dict[str, str] = field(default_factory=dict)
    data_reply: str = ""

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse_rcpt:
            return self.refuse_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply:
            return self.data_reply
        assert isinstance(envelope.content, bytes)
        assert envelope.mail_from is not None
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content, session.peer)
        )
        return f"250 2.0.0 Ok: queued as Q{len(self.received)}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Servers:
    """Starts aiosmtpd servers on free ports; the fixture stops whatever is still running."""

    def __init__(self) -> None:
        self._controllers: list[Controller] = []

    def __call__(
        self, *, port: int = 0, recorder: Recorder | None = None, **smtp_kwargs: Any
    ) -> tuple[Recorder, int]:
        handler = recorder or Recorder()
        port = port or free_port()
        controller = Controller(
            handler, hostname="127.0.0.1", port=port, server_hostname="mx.test", **smtp_kwargs
        )
        controller.start()
        self._controllers.append(controller)
        return handler, port

    def stop(self) -> None:
        while self._controllers:
            self._controllers.pop().stop()


@pytest.fixture
def smtp_server() -> Iterator[Servers]:
    servers = Servers()
    try:
        yield servers
    finally:
        servers.stop()


def settings(port: int, **changes: Any) -> EmailSettings:
    args: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "from_address": SENDER,
        "local_hostname": "client.test",
        "starttls": False,
        "timeout_seconds": 5,
    }
    args.update(changes)
    return EmailSettings(**args)


def message(key: str, recipient: str, **changes: Any) -> bytes:
    args: dict[str, Any] = {
        "key": key,
        "sender": SENDER,
        "recipient": recipient,
        "subject": "A message about your Acme account",
        "text": "Dear customer,\nplease sign in to read it.\n",
        "html": "<p>Dear customer,</p><p>please sign in to read it.</p>",
        "attachments": [],
        "unsubscribe_url": "https://acme.example/unsubscribe/t0k3n",
        "unsubscribe_mailto": "unsubscribe@acme.example",
        "date": WHEN,
        "domain": "acme.example",
    }
    args.update(changes)
    return build_email(**args)


def outgoing(key: str, recipient: str, content: bytes, item_id: int = 1) -> Outgoing:
    return Outgoing(id=item_id, key=key, channel="email", recipient=recipient, content=content)


def parsed(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def body(msg: EmailMessage, kind: str) -> str:
    part = msg.get_body(preferencelist=(kind,))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content


@pytest.fixture(scope="module")
def letter_pdf() -> bytes:
    """A real letter-sized PDF from typst, about 40 KB."""
    markup = "\n\n".join(
        f"= Section {i}\n*Bold {i}* _italic {i}_ " + " ".join(f"word{i * j}" for j in range(80))
        for i in range(22)
    )
    return compile_pdf(markup, dt.date(2026, 3, 2))


# ---------------------------------------------------------------- delivery


def test_three_messages_arrive_byte_for_byte_over_one_connection(
    smtp_server: Servers, letter_pdf: bytes
) -> None:
    recorder, port = smtp_server()
    assert 35_000 < len(letter_pdf) < 60_000
    plain = message("acct-1/M1/email/2026-03-02/email", "jane@example.com")
    chinese = message(
        "acct-2/M1/email/2026-03-02/email",
        "zhang.wei@example.cn",
        subject="您的招商银行账户有一条新的重要消息，请登录手机银行查看详情",
        text="张伟先生您好：\n请登录手机银行查看您的账户信息。\n",
        html="<p>张伟先生您好：</p><p>请登录手机银行查看您的账户信息。</p>",
    )
    with_pdf = message(
        "acct-3/M2/email/2026-03-02/email",
        "john@example.org",
        attachments=[Attachment("letter.pdf", letter_pdf, "application/pdf")],
    )
    sent = [
        ("acct-1/M1/email/2026-03-02/email", "jane@example.com", plain),
        ("acct-2/M1/email/2026-03-02/email", "zhang.wei@example.cn", chinese),
        ("acct-3/M2/email/2026-03-02/email", "john@example.org", with_pdf),
    ]
    with SmtpTransport(settings(port)) as transport:
        receipts = [transport.send(outgoing(key, rcpt, content)) for key, rcpt, content in sent]

    assert receipts == [
        Receipt(
            provider_id=message_id_for(key, "acme.example"),
            detail=f"250 2.0.0 Ok: queued as Q{n}",
        )
        for n, (key, _, _) in enumerate(sent, start=1)
    ]
    assert [(r.mail_from, r.rcpt_tos, r.content) for r in recorder.received] == [
        ("collections@acme.example", [rcpt], content) for _, rcpt, content in sent
    ]
    assert len({str(r.peer) for r in recorder.received}) == 1  # one connection kept open

    first, second, third = (parsed(r.content) for r in recorder.received)
    assert first["Subject"] == "A message about your Acme account"
    assert first["From"] == SENDER
    assert first["To"] == "jane@example.com"
    assert first["Date"] == "Mon, 02 Mar 2026 09:30:00 +0800"
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert first["X-Duecourse-Key"] == reference_for("acct-1/M1/email/2026-03-02/email")
    assert body(first, "plain") == "Dear customer,\r\nplease sign in to read it.\r\n"
    assert body(first, "html") == "<p>Dear customer,</p><p>please sign in to read it.</p>\r\n"

    assert second["Subject"] == "您的招商银行账户有一条新的重要消息，请登录手机银行查看详情"
    assert body(second, "plain") == "张伟先生您好：\r\n请登录手机银行查看您的账户信息。\r\n"
    assert body(second, "html") == "<p>张伟先生您好：</p><p>请登录手机银行查看您的账户信息。</p>\r\n"

    assert third.get_content_type() == "multipart/mixed"
    assert body(third, "plain") == "Dear customer,\r\nplease sign in to read it.\r\n"
    (attachment,) = third.iter_attachments()
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename() == "letter.pdf"
    assert attachment.get_content() == letter_pdf


def test_a_resend_after_a_crash_is_the_same_message(smtp_server: Servers) -> None:
    recorder, port = smtp_server()
    key = "acct-1/M1/email/2026-03-02/email"
    with SmtpTransport(settings(port)) as transport:
        once = transport.send(outgoing(key, "jane@example.com", message(key, "jane@example.com")))
    with SmtpTransport(settings(port)) as transport:
        twice = transport.send(outgoing(key, "jane@example.com", message(key, "jane@example.com")))
    assert once.provider_id == twice.provider_id == message_id_for(key, "acme.example")
    first, second = recorder.received
    assert first.content == second.content
    assert parsed(first.content)["Message-ID"] == parsed(second.content)["Message-ID"]
    assert first.peer != second.peer


# ---------------------------------------------------------------- refusals


def test_an_unknown_user_is_permanent_and_the_connection_serves_the_next_one(smtp_server: Servers) -> None:
    recorder, port = smtp_server()
    recorder.refuse_rcpt["nobody@example.net"] = "550 5.1.1 no such user"
    with SmtpTransport(settings(port)) as transport:
        with pytest.raises(PermanentError) as refused:
            transport.send(outgoing("k1", "nobody@example.net", message("k1", "nobody@example.net")))
        receipt = transport.send(outgoing("k2", "jane@example.com", message("k2", "jane@example.com")))
    assert refused.value.code == "550"
    assert refused.value.reason == "recipient refused: 5.1.1 no such user"
    assert receipt.detail == "250 2.0.0 Ok: queued as Q1"
    assert [r.rcpt_tos for r in recorder.received] == [["jane@example.com"]]


def test_try_later_at_data_is_transient(smtp_server: Servers) -> None:
    recorder, port = smtp_server()
    recorder.data_reply = "451 4.3.0 try later"
    with SmtpTransport(settings(port)) as transport, pytest.raises(TransientError) as deferred:
        transport.send(outgoing("k1", "jane@example.com", message("k1", "jane@example.com")))
    assert deferred.value.code == "451"
    assert deferred.value.reason == "message refused: 4.3.0 try later"
    assert recorder.received == []


def test_a_stopped_server_is_transient_and_a_restarted_one_is_found_again(smtp_server: Servers) -> None:
    recorder, port = smtp_server()
    item = outgoing("k1", "jane@example.com", message("k1", "jane@example.com"))
    with SmtpTransport(settings(port)) as transport:
        transport.send(item)
        smtp_server.stop()
        with pytest.raises(TransientError) as unreachable:
            transport.send(item)
        assert unreachable.value.reason.startswith(
            f"cannot reach the SMTP server (127.0.0.1:{port}): ConnectionRefusedError"
        )
        smtp_server(port=port, recorder=recorder)
        receipt = transport.send(item)
    assert receipt.detail == "250 2.0.0 Ok: queued as Q2"
    assert [r.content for r in recorder.received] == [item.content, item.content]


def test_a_connection_the_server_closed_while_idle_is_replaced_without_an_error(smtp_server: Servers) -> None:
    recorder, port = smtp_server()
    first = outgoing("k1", "jane@example.com", message("k1", "jane@example.com"))
    second = outgoing("k2", "jane@example.com", message("k2", "jane@example.com"))
    with SmtpTransport(settings(port)) as transport:
        transport.send(first)
        smtp_server.stop()  # closes the open connection, as a relay's idle timeout would
        smtp_server(port=port, recorder=recorder)
        receipt = transport.send(second)  # no NOOP first (used a moment ago): MAIL fails, sent afresh
    assert receipt.provider_id == message_id_for("k2", "acme.example")
    assert [r.content for r in recorder.received] == [first.content, second.content]


def test_nobody_listening_is_transient() -> None:
    with socket.socket() as taken:  # a port held (no other process of a parallel run takes it), unheard
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with SmtpTransport(settings(port)) as transport, pytest.raises(TransientError, match="Connection"):
            transport.send(outgoing("k1", "jane@example.com", message("k1", "jane@example.com")))


# ---------------------------------------------------------------- TLS and AUTH


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made by the openssl command (no Python dependency)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def only_jane(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: object
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"jane",
        b"correct horse",
    )
    # handled=False: let aiosmtpd answer 535 itself.
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def tls_server(smtp_server: Servers, certificate: tuple[Path, Path]) -> tuple[Recorder, int]:
    """A submission server: STARTTLS required, then AUTH."""
    return smtp_server(tls_context=server_tls(certificate), require_starttls=True, authenticator=only_jane)


def test_starttls_with_a_verified_certificate_and_login(
    tls_server: tuple[Recorder, int], certificate: tuple[Path, Path]
) -> None:
    recorder, port = tls_server
    config = settings(port, starttls=True, cafile=str(certificate[0]), user="jane", password="correct horse")
    item = outgoing("k1", "jane@example.com", message("k1", "jane@example.com"))
    with SmtpTransport(config) as transport:
        assert transport.send(item).detail == "250 2.0.0 Ok: queued as Q1"
    assert [r.content for r in recorder.received] == [item.content]


def test_a_wrong_password_is_a_permanent_misconfiguration(
    tls_server: tuple[Recorder, int], certificate: tuple[Path, Path]
) -> None:
    recorder, port = tls_server
    config = settings(port, starttls=True, cafile=str(certificate[0]), user="jane", password="wrong")
    with SmtpTransport(config) as transport, pytest.raises(PermanentError) as refused:
        transport.send(outgoing("k1", "jane@example.com", message("k1", "jane@example.com")))
    assert refused.value.code == "535"
    assert refused.value.reason == (
        f"authentication failed (127.0.0.1:{port}): check the SMTP user and password "
        "(5.7.8 Authentication credentials invalid)"
    )
    assert recorder.received == []


def test_an_untrusted_certificate_is_refused(tls_server: tuple[Recorder, int]) -> None:
    _, port = tls_server
    config = settings(port, starttls=True, user="jane", password="correct horse")  # system roots only
    with SmtpTransport(config) as transport, pytest.raises(PermanentError) as refused:
        transport.send(outgoing("k1", "jane@example.com", message("k1", "jane@example.com")))
    assert refused.value.reason == (
        f"TLS certificate (127.0.0.1:{port}) not trusted: self-signed certificate; set cafile or fix the host"
    )


def test_sending_in_clear_to_a_server_that_requires_starttls_is_refused(
    tls_server: tuple[Recorder, int],
) -> None:
    _, port = tls_server
    with SmtpTransport(settings(port)) as transport, pytest.raises(PermanentError) as refused:
        transport.send(outgoing("k1", "jane@example.com", message("k1", "jane@example.com")))
    assert refused.value.code == "530"
    assert (
        refused.value.reason == "sender collections@acme.example refused: Must issue a STARTTLS command first"
    )


def test_starttls_wanted_but_not_offered_is_refused(smtp_server: Servers) -> None:
    _, port = smtp_server()
    with SmtpTransport(settings(port, starttls=True)) as transport, pytest.raises(PermanentError) as refused:
        transport.send(outgoing("k1", "jane@example.com", message("k1", "jane@example.com")))
    assert refused.value.reason == (
        f"server does not support what the settings need (127.0.0.1:{port}): "
        "STARTTLS extension not supported by server."
    )


def test_implicit_tls_delivers(smtp_server: Servers, certificate: tuple[Path, Path]) -> None:
    recorder, port = smtp_server(ssl_context=server_tls(certificate))
    config = settings(port, ssl=True, cafile=str(certificate[0]))
    item = outgoing("k1", "jane@example.com", message("k1", "jane@example.com"))
    with SmtpTransport(config) as transport:
        assert transport.send(item).provider_id == message_id_for("k1", "acme.example")
    assert [r.content for r in recorder.received] == [item.content]
