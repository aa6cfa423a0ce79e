"""Render outbox messages into the exact bytes each channel sends, from the same letter data as the PDF.

For each message the account's records are read (in bulk for the batch), the letter data of its kind is
built as of the day the action fell (``services/letters.build_data``: the snapshot of the readable
specification, as ``explain`` computes it), and then:

- **letter**: the PDF, stored once in ``letters``; the bytes are the PDF;
- **email**: the words of ``channels/content.py`` (a subject that reveals no debt, text and HTML with the
  same figures as the letter) and the letter PDF attached, as one RFC 5322 message
  (``channels/email.build_email``) with a Message-ID derived from the idempotency key;
- **sms**: the text, UTF-8, with its encoding and segment count in ``meta`` (what the gateway bills);
- **push**: a JSON body: a title and body that reveal no debt and the link to the detail.

A debt that is time-barred where a state or a city requires a disclosure (US-TBD-01,
``services/time_barred.py``) has it in its letter and e-mail; a text or a push notification the rule
covers is not composed (the next channel goes), and one whose disclosure cannot be known (no period set
for the state) is not composed at all, with the reason.

Every e-mail and text carries an opt-out: a signed one-click link (12 CFR 1006.6(e), US-ELEC-01) and the
reply keyword. A contact point found bad (a hard bounce) is not used: the message is not composed and
falls back to the action's next channel.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from duecourse.bootstrap import App
from duecourse.channels import content as words
from duecourse.channels.base import reference_for
from duecourse.channels.dispatch import Composed, NotComposed
from duecourse.domain.errors import DuecourseError
from duecourse.letters.data import address_lines
from duecourse.letters.token import make_token, portal_secret
from duecourse.store import letters as letter_store
from duecourse.store import outbox as store
from duecourse.store.tables import opt_out_links

OPT_OUT_DAYS = 366  # an opt-out link keeps working for a year


class NoContactSender(Exception):
    """The channel has no sender of its own for third parties (``contact_from``, ``contact_source_addr``)."""


@dataclass(frozen=True, slots=True)
class _ContactSender:
    """Whom a message to a third party comes from: the base of its opt-out link, the SMS sender, the
    e-mail sender and reply-to, and the home page (the institution's, or a collector's agent's link
    base: never a page that names the employer)."""

    link_base: str
    sms_source: str
    email_from: str
    reply_to: str
    home: str


def _address(channel: str, customer: Any) -> str:
    """The contact point a message goes to: the e-mail address, the phone number, the customer (push),
    or the postal address in one line (a letter: a returned letter marks that address bad, and a new
    address is a new contact point)."""
    if channel == "email":
        return str(customer.email)
    if channel == "sms":
        return str(customer.phone)
    if channel == "push":
        return str(customer.customer_id)
    if not str(customer.address_line1).strip():
        return ""
    return " / ".join(address_lines(customer))


@dataclass(frozen=True)
class _Ready:
    """A message whose letter data is built: what the channel's bytes are made from."""

    message: store.Message
    customer: Any
    address: str
    data: dict[str, Any]


def opt_out_subject(customer_id: str, channel: str) -> str:
    """What an opt-out link's token signs: an opaque hash of the customer and the channel (the URL holds
    no personal data); ``opt_out_links`` says whom it stands for."""
    return "oo-" + hashlib.sha256(f"{customer_id}|{channel}".encode()).hexdigest()[:24]


def save_opt_out_links(
    connection: Connection, subjects: Mapping[str, tuple[str, str]], now: dt.datetime
) -> None:
    """Record whom the batch's opt-out links stand for (a link already recorded is kept as it is)."""
    rows = [
        {"subject": subject, "customer_id": customer_id, "channel": channel, "created_at": now}
        for subject, (customer_id, channel) in sorted(subjects.items())
    ]
    if connection.dialect.name == "postgresql":
        connection.execute(pg_insert(opt_out_links).on_conflict_do_nothing(), rows)
    else:
        connection.execute(sqlite_insert(opt_out_links).on_conflict_do_nothing(), rows)


class LetterComposer:
    """The composer the dispatcher uses (``channels/dispatch.Composer``)."""

    def __init__(self, app: App) -> None:
        self.app = app
        # The opt-out links of the batch being composed: subject -> (customer, channel).
        self._subjects: dict[str, tuple[str, str]] = {}

    def compose(
        self, messages: Sequence[store.Message], now: dt.datetime, connection: Connection
    ) -> dict[int, Composed | NotComposed]:
        """Compose a batch: the letter data of each message, then the PDFs of all its letters and
        e-mails together (``services/letters.render_many``: many letters to a typst document), then the
        bytes of each channel."""
        from duecourse.services import letters as letter_service

        self._subjects = {}
        bad = store.bad_addresses(connection, [m.customer_id for m in messages])
        made: dict[int, Composed | NotComposed] = {}
        to_contacts = [m for m in messages if m.contact_id]
        if to_contacts:
            made |= self._to_contacts(to_contacts, bad, now, connection)
            messages = [m for m in messages if not m.contact_id]
        records = letter_service.records_for(self.app, sorted({m.account_id for m in messages}))
        ready: list[_Ready] = []
        for message in messages:
            found = records.get(message.account_id)
            if found is None:
                made[message.id] = NotComposed(
                    f"account {message.account_id} is not in the store", fallback=False
                )
                continue
            try:
                prepared = self._prepare(message, found, bad)
            except DuecourseError as error:
                made[message.id] = NotComposed(
                    f"cannot render {message.kind} for {message.channel}: {error}", False
                )
                continue
            if isinstance(prepared, NotComposed):
                made[message.id] = prepared
            else:
                ready.append(prepared)
        letters = self._letters([r for r in ready if r.message.channel in {"letter", "email"}])
        stored: dict[str, letter_store.StoredLetter] = {}
        for item in ready:
            message = item.message
            try:
                letter = letters.get(message.id)
                if isinstance(letter, DuecourseError):
                    raise letter
                made[message.id] = self._finish(item, letter, now)
                if letter is not None:
                    stored[letter.sha256] = letter
            except words.ContentNotUsed as error:  # the kind goes by letter only: try the next channel
                made[message.id] = NotComposed(f"no {message.channel} words for {message.kind}: {error}")
            except DuecourseError as error:
                made[message.id] = NotComposed(
                    f"cannot render {message.kind} for {message.channel}: {error}", False
                )
        if stored:
            letter_store.save_letters_in(connection, list(stored.values()), now)
        if self._subjects:
            save_opt_out_links(connection, self._subjects, now)
            self._subjects = {}
        return made

    def _to_contacts(
        self,
        messages: Sequence[store.Message],
        bad: set[tuple[str, str, str]],
        now: dt.datetime,
        connection: Connection,
    ) -> dict[int, Composed | NotComposed]:
        """Messages to third parties the customers named: made from the contact's, the customer's and the
        institution's names only (``content.contact_data``: no account data at all), in the contact's
        language (the customer's when not given), to the contact's phone or e-mail, with the contact's
        own opt-out (``/opt-out/contact/TOKEN``, the reply keyword)."""
        from sqlalchemy import select

        from duecourse.services.third_parties import COLLECTOR_JURISDICTIONS
        from duecourse.store.tables import accounts, customers, third_parties

        contact_ids = sorted({m.contact_id for m in messages})
        customer_ids = sorted({m.customer_id for m in messages})
        contacts = {
            row.contact_id: row
            for row in connection.execute(
                select(third_parties).where(third_parties.c.contact_id.in_(contact_ids))
            )
        }
        people = {
            row.customer_id: row
            for row in connection.execute(
                select(
                    customers.c.customer_id, customers.c.name, customers.c.locale, customers.c.jurisdiction
                ).where(customers.c.customer_id.in_(customer_ids))
            )
        }
        # the accounts collected as a third party get a collector's words (12 CFR 1006.10(b)(1))
        third_party = set(self.app.config.governor.third_party_products)
        collected = (
            {
                row.account_id
                for row in connection.execute(
                    select(accounts.c.account_id).where(
                        accounts.c.account_id.in_(sorted({m.account_id for m in messages})),
                        accounts.c.product_code.in_(sorted(third_party)),
                    )
                )
            }
            if third_party
            else set()
        )
        made: dict[int, Composed | NotComposed] = {}
        for message in messages:
            contact, person = contacts.get(message.contact_id), people.get(message.customer_id)
            if contact is None or person is None or contact.customer_id != message.customer_id:
                made[message.id] = NotComposed(
                    f"contact {message.contact_id} of customer {message.customer_id} is not in the store",
                    False,
                )
                continue
            address = str(contact.phone if message.channel == "sms" else contact.email)
            if message.channel not in ("sms", "email") or not address:
                made[message.id] = NotComposed(
                    f"contact {contact.contact_id} has no {message.channel} address"
                )
                continue
            if (message.customer_id, message.channel, address) in bad:
                made[message.id] = NotComposed(f"{address} was found bad ({message.channel}); not used again")
                continue
            issuer = self.app.config.issuers.get(str(person.jurisdiction))
            if issuer is None:
                made[message.id] = NotComposed(
                    f"no [issuer.{person.jurisdiction}] in the configuration", False
                )
                continue
            locale = str(contact.locale or person.locale)
            jurisdiction = str(person.jurisdiction)
            try:
                if jurisdiction in COLLECTOR_JURISDICTIONS and message.account_id in collected:
                    agent = self.app.config.location_agents.get(jurisdiction)
                    if agent is None:
                        raise NoContactSender(
                            f"account {message.account_id} is collected as a third party and there is no "
                            f"[location_agent.{jurisdiction}] to ask for its location information "
                            "(12 CFR 1006.10(b)(1))"
                        )
                    data = words.collector_contact_data(
                        message.kind,
                        "en-US",  # the collector's words are written for US law, in its language
                        jurisdiction,
                        contact_name=str(contact.name),
                        relation=str(contact.relation),
                        customer_name=str(person.name),
                        agent=agent,
                    )
                    sender = _ContactSender(
                        agent.link_base, agent.sms_from, agent.email_from, "", agent.link_base
                    )
                else:
                    data = words.contact_data(
                        message.kind,
                        locale,
                        jurisdiction,
                        contact_name=str(contact.name),
                        relation=str(contact.relation),
                        customer_name=str(person.name),
                        issuer=issuer,
                    )
                    sender = self._contact_sender(message.channel, issuer)
                made[message.id] = self._contact_message(
                    message, data, str(data["locale"]), address, str(contact.link_subject), now, sender
                )
            except words.ContentNotUsed as error:
                made[message.id] = NotComposed(
                    f"no {message.channel} words for {message.kind}: {error}", False
                )
            except NoContactSender as error:
                made[message.id] = NotComposed(f"not sent to a contact: {error}", False)
            except DuecourseError as error:
                made[message.id] = NotComposed(
                    f"cannot render {message.kind} for {message.channel}: {error}", False
                )
        return made

    def _contact_sender(self, channel: str, issuer: Any) -> _ContactSender:
        """The institution's own sender to third parties: never the customer's sender, whose name or
        address may say "collections" (US-3P-01, 1006.22(f); CN-COL-07 Art 18); ``config check`` refuses
        an action to contacts on a channel without one."""
        settings = self.app.config.channels[channel].values
        source = str(settings.get("contact_source_addr", "")) if channel == "sms" else ""
        if channel == "sms" and not source:
            raise NoContactSender("[channels.sms] has no contact_source_addr")
        sender = str(settings.get("contact_from", "")) if channel == "email" else ""
        base = issuer.portal_url.rstrip("/")
        reply_to = str(settings.get("contact_reply_to", ""))
        return _ContactSender(base, source, sender, reply_to, issuer.website or base)

    def _contact_message(
        self,
        message: store.Message,
        data: dict[str, Any],
        locale: str,
        address: str,
        subject: str,
        now: dt.datetime,
        sender: _ContactSender,
    ) -> Composed:
        """The bytes of one message to a contact, under ``sender``; the words are those of ``data["kind"]``
        (a contact kind, or a collector's words for it)."""
        kind = str(data["kind"])
        base = sender.link_base.rstrip("/")
        secret, _ = portal_secret()
        token = make_token(subject, message.planned_on + dt.timedelta(days=OPT_OUT_DAYS), secret)
        keyword = words.OPT_OUT_KEYWORDS.get(locale, "STOP")
        # the Links' portal link is never shown to a contact (not in their templates' fields)
        links = words.Links(sender.home, f"{base}/opt-out/contact/{token}", keyword)
        reference = reference_for(message.key)
        if message.channel == "sms":
            from duecourse.channels.sms import sms_encoding

            source = sender.sms_source
            text = words.sms_text(kind, locale, data, links)
            shape = sms_encoding(text)
            meta = {
                "encoding": shape.encoding,
                "segments": shape.segments,
                "reference": reference,
                "source_addr": source,
            }
            return Composed(address, text.encode(), meta)
        from duecourse.channels import email

        # the opt-out mailbox is the contact sender's: the issuer's e-mail may be a collections address
        issuer_mail = email.address_of(sender.email_from)
        if not issuer_mail:
            raise NoContactSender("[channels.email] has no contact_from")
        content = words.email_content(kind, locale, data, links)
        domain = issuer_mail.rpartition("@")[2]
        body = email.build_email(
            key=message.key,
            sender=sender.email_from,
            recipient=address,
            subject=content.subject,
            text=content.text,
            html=content.html,
            attachments=[],
            unsubscribe_url=links.opt_out_url,
            unsubscribe_mailto=f"mailto:{issuer_mail}?subject=unsubscribe",
            date=now,
            domain=domain,
            reply_to=sender.reply_to,
        )
        meta = {
            "subject": content.subject,
            "reference": reference,
            "message_id": email.message_id_for(message.key, domain),
            # the SMTP MAIL FROM (the Return-Path the contact's mailbox shows): the contact sender's too
            "envelope_from": issuer_mail,
        }
        return Composed(address, body, meta)

    def _prepare(
        self, message: store.Message, found: tuple[Any, Any, Any, Any], bad: set[tuple[str, str, str]]
    ) -> _Ready | NotComposed:
        """The letter data of a message as of the day its action fell, or why it is not composed."""
        from duecourse.services import letters as letter_service
        from duecourse.services import time_barred

        account, customer, dues, payments = found
        address = _address(message.channel, customer)
        if not address:
            what = "postal" if message.channel == "letter" else message.channel
            return NotComposed(f"the customer has no {what} address")
        if (customer.customer_id, message.channel, address) in bad:
            return NotComposed(f"{address} was found bad ({message.channel}); not used until it changes")
        day = message.planned_on
        data = letter_service.build_data(self.app, account, customer, dues, payments, message.kind, day)
        # US-TBD-01: a text or a push notification cannot carry a time-barred debt's disclosure; where the
        # rule covers the channel, the action's next channel goes (a letter or an e-mail carries it).
        held = time_barred.covered_but_not_carried(data, message.channel)
        if held:
            return NotComposed(held)
        return _Ready(message, customer, address, data)

    def _letters(self, items: Sequence[_Ready]) -> dict[int, letter_store.StoredLetter | DuecourseError]:
        """The letter PDF of each message that sends one, rendered together; when the batch fails (a
        letter that cannot be rendered), each alone, so that only the bad one fails."""
        from duecourse.services import letters as letter_service

        jobs = [(i.data, i.message.planned_on, i.message.account_id, i.customer.customer_id) for i in items]
        try:
            rendered = letter_service.render_many(jobs, workers=1)
            return {i.message.id: letter for i, letter in zip(items, rendered, strict=True)}
        except DuecourseError:
            pass  # one of them cannot be rendered: each alone below, so that only that one fails
        out: dict[int, letter_store.StoredLetter | DuecourseError] = {}
        for item, job in zip(items, jobs, strict=True):
            try:
                out[item.message.id] = letter_service.render_many([job], workers=1)[0]
            except DuecourseError as error:
                out[item.message.id] = error
        return out

    def _finish(self, item: _Ready, letter: letter_store.StoredLetter | None, now: dt.datetime) -> Composed:
        """The bytes a channel sends for a prepared message (its letter PDF rendered when it has one)."""
        message, customer, address, data = item.message, item.customer, item.address, item.data
        day = message.planned_on
        locale = str(data["locale"])
        if message.channel == "letter":
            assert letter is not None
            meta = {
                "reference": letter.reference,
                "postal_code": customer.postal_code,
                "letter_sha256": letter.sha256,
                "pages": str(letter.pages),
            }
            return Composed(address, letter.pdf, meta)
        links = self._links(data, customer.customer_id, message.channel, day)
        if message.channel == "email":
            assert letter is not None
            return self._email(message, data, locale, links, address, letter, now)
        if message.channel == "sms":
            from duecourse.channels.sms import sms_encoding

            text = words.sms_text(message.kind, locale, data, links)
            shape = sms_encoding(text)
            meta = {
                "encoding": shape.encoding,
                "segments": shape.segments,
                "reference": reference_for(message.key),  # the gateway's reference: one per message
                "letter_reference": str(data["reference"]),
            }
            return Composed(address, text.encode(), meta)
        reference = reference_for(message.key)
        payload = {**words.push_payload(message.kind, locale, data, links), "reference": reference}
        body = json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()
        return Composed(address, body, {"reference": reference, "letter_reference": str(data["reference"])})

    def _links(self, data: dict[str, Any], customer_id: str, channel: str, day: dt.date) -> words.Links:
        issuer = data["issuer"]
        portal = str(data.get("portal", {}).get("url") or issuer.get("website", ""))
        base = self.app.config.issuers[str(data["jurisdiction"])].portal_url.rstrip("/")
        secret, _ = portal_secret()
        subject = opt_out_subject(customer_id, channel)
        self._subjects[subject] = (customer_id, channel)
        token = make_token(subject, day + dt.timedelta(days=OPT_OUT_DAYS), secret)
        keyword = words.OPT_OUT_KEYWORDS[str(data["locale"])]
        return words.Links(portal, f"{base}/opt-out/{channel}/{token}", keyword)

    def _email(
        self,
        message: store.Message,
        data: dict[str, Any],
        locale: str,
        links: words.Links,
        address: str,
        letter: letter_store.StoredLetter,
        now: dt.datetime,
    ) -> Composed:
        from duecourse.channels import email

        settings = self.app.config.channels["email"].values
        sender = str(settings["from"])
        text = words.email_content(message.kind, locale, data, links)
        issuer_mail = str(data["issuer"].get("email", "")) or email.address_of(sender)
        domain = email.address_of(sender).rpartition("@")[2]
        content = email.build_email(
            key=message.key,
            sender=sender,
            recipient=address,
            subject=text.subject,
            text=text.text,
            html=text.html,
            attachments=[email.Attachment(f"{letter.reference}.pdf", letter.pdf, "application/pdf")],
            unsubscribe_url=links.opt_out_url,
            unsubscribe_mailto=f"mailto:{issuer_mail}?subject=unsubscribe",
            date=now,
            domain=domain,
            reply_to=str(settings.get("reply_to", "")),
        )
        meta = {
            "subject": text.subject,
            "reference": letter.reference,
            "letter_sha256": letter.sha256,
            # The Message-ID in the bytes: the transport's receipt names it without parsing the message.
            "message_id": email.message_id_for(message.key, domain),
        }
        return Composed(address, content, meta)
