"""The words of an e-mail, a text message and a push notification, made from a letter's data.

A message is rendered from exactly the data of the letter of the same kind (``letters.data.letter_data``,
or ``letters.samples``), so the e-mail says the same figures, formatted the same way, as the letter would;
nothing is computed here. The templates live beside this module (or in a reviewed directory in front of
them, as for letters)::

    LOCALE/KIND.email.txt.j2          the plain-text e-mail
    LOCALE/KIND.email.html.j2         the HTML e-mail: the same facts, autoescaped, readable without images
    LOCALE/KIND.sms.j2                the text message
    LOCALE/_NAME.email.{txt,html}.j2  parts a locale's e-mails share: layout (footer with the opt-out
                                      link), how to pay, the customer's rights
    LOCALE/previews.toml              per kind: the e-mail ``subject``, ``push_title`` and ``push_body``

``previews.toml`` holds every word shown before the customer opens a message (an inbox list, a lock
screen), one file per locale, so the one file a privacy reviewer must read is the one the lint proves
reveals no debt (EU-GDPR-01, US-3P-01, CN-COL-07 Art 18). A kind has a channel when its files are there;
the others go by letter only, and asking for them raises ``ContentNotUsed``.

Every template is checked at load against its kind's fields (``letters.render.check_fields``) plus
``links`` (the portal and opt-out links a message carries) and ``subject``, so a misspelt field fails
before any message is sent. ``lint_content`` renders every kind, locale and channel with the letters'
sample accounts and checks what a customer will read against ``channels/checklists.toml`` and the
letters' prohibited words. Its rules, each finding ``template:line: rule: message``:

* ``element.missing``: what each e-mail and text must say (amount, deadline, ways to pay, hotline and
  hours, "ignore this if you have paid", the sender, the opt-out), in the text and in the HTML alike.
* ``preview.reveals`` / ``preview.length``: subjects and push lines name no amount, currency or debt word.
* ``sms.reveals`` / ``sms.segments``: a text shows whole on a lock screen, so it names no amount and never
  says the account is behind; at most 2 segments, counted by ``channels.sms.sms_encoding``.
* ``words.prohibited``: no threats or shaming, in any channel.
* ``figure.unknown`` / ``email.alternative``: every amount and date is the data's, and the HTML and the
  text state the same ones.
* ``readability.sentence`` / ``readability.grade``: the letters' limits, on the e-mail text.
* ``html.lang`` / ``html.image`` / ``html.script`` / ``html.opt_out``; ``push.url``.
* ``template.field`` / ``template.missing`` / ``template.error``: the load's problems, a kind a strategy
  sends electronically without its templates, a template that fails to render.

Exceptions::

    LetterError
     ├── ContentError          a message that cannot be made from what was given (data of another kind)
     ├── KindNotUsed
     │    └── ContentNotUsed   no template for the kind in this channel and locale: it goes by letter only
     └── TemplateError         a template that names a field its kind lacks, or fails to render
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta

from duecourse.config import Config, LocationAgent, load_config
from duecourse.domain import delinquency
from duecourse.domain.strategy import COLLECTOR_CONTACT_KINDS, CONTACT_CHANNELS, CONTACT_KINDS
from duecourse.letters import KindNotUsed, LetterError, TemplateError
from duecourse.letters.data import letter_data
from duecourse.letters.kinds import (
    COMMON_FIELDS,
    JURISDICTION_OF,
    KINDS,
    LEAF,
    LOCALE_OF,
    Schema,
    check_used,
    kind_named,
    schema_for,
)
from duecourse.letters.lint import AMOUNTS, DATES, Finding, field_value, flat, grade_level, sentences
from duecourse.letters.lint import checklists as letter_checklists
from duecourse.letters.render import FieldProblem, check_fields
from duecourse.letters.samples import sample_for
from duecourse.letters.settings import Issuer

SHIPPED = Path(__file__).resolve().parent / "templates"
PREVIEWS = "previews.toml"
LOCALES: tuple[str, ...] = tuple(LOCALE_OF.values())
CONTENT_CHANNELS: tuple[str, ...] = ("email", "sms", "push")
# The template files of a kind: the part of the file name after the kind, and the channel it serves.
FILE_PARTS = {"email.txt": "email", "email.html": "email", "sms": "sms"}
# The keys of a kind's table in previews.toml, and the channel each serves.
PREVIEW_KEYS = {"subject": "email", "push_title": "push", "push_body": "push"}
# What a channel needs before a kind can be sent by it.
NEEDS = {
    "email": ("email.txt", "email.html", "subject"),
    "sms": ("sms",),
    "push": ("push_title", "push_body"),
}
# The reply keyword each locale's customers know: 回复TD退订 is the Chinese carriers' convention.
OPT_OUT_KEYWORDS = {"zh-CN": "TD", "en-US": "STOP", "en-GB": "STOP"}

LINK_FIELDS: Schema = {"links": {"portal_url": LEAF, "opt_out_url": LEAF, "opt_out_sms": LEAF}}
# E-mail templates also get the rendered subject (the HTML title and heading).
MESSAGE_FIELDS: Schema = {**LINK_FIELDS, "subject": LEAF}
# What a message to a third party the customer named (``CONTACT_KINDS``) is made from: whom it is for,
# whom to pass the request on to, who asks, and the contact's own opt-out. No account, no amount, no
# date, no portal link (it would lead to the customer's account): a template for a contact cannot
# name the debt from the data, and the lint refuses words about it (``reveals.contact``).
CONTACT_FIELDS: Schema = {
    "kind": LEAF,
    "locale": LEAF,
    "jurisdiction": LEAF,
    "contact": {"name": LEAF, "relation": LEAF},
    "customer": {"name": LEAF},
    "issuer": {"legal_name": LEAF, "hotline": LEAF, "hours": LEAF, "website": LEAF},
}
CONTACT_LINK_FIELDS: Schema = {"links": {"opt_out_url": LEAF, "opt_out_sms": LEAF}}
# A third-party collector's words to a contact (``COLLECTOR_CONTACT_KINDS``): the person who asks and the
# number that person answers, instead of the institution (12 CFR 1006.10(b)(1): the employer is named
# only if expressly asked). No issuer field at all: a template cannot name the employer from the data.
COLLECTOR_KINDS: tuple[str, ...] = tuple(COLLECTOR_CONTACT_KINDS.values())
COLLECTOR_FIELDS: Schema = {
    "kind": LEAF,
    "locale": LEAF,
    "jurisdiction": LEAF,
    "contact": {"name": LEAF, "relation": LEAF},
    "customer": {"name": LEAF},
    "agent": {"name": LEAF, "phone": LEAF},
}
# Every kind whose words go to a third party: no account data, the contact's own opt-out.
THIRD_PARTY_KINDS: tuple[str, ...] = (*CONTACT_KINDS, *COLLECTOR_KINDS)
# The jurisdictions a collector's words are written for (the law that sets them apart: Reg F).
COLLECTOR_LOCALES: tuple[str, ...] = ("en-US",)


def _schema_of(kind: str) -> Schema:
    """The fields of ``kind``'s data: a letter kind's, a contact kind's (``CONTACT_FIELDS``) or a
    collector's words to a contact (``COLLECTOR_FIELDS``)."""
    if kind in CONTACT_KINDS:
        return dict(CONTACT_FIELDS)
    if kind in COLLECTOR_KINDS:
        return dict(COLLECTOR_FIELDS)
    return schema_for(KINDS[kind])


def _links_of(kind: str) -> Schema:
    return CONTACT_LINK_FIELDS if kind in THIRD_PARTY_KINDS else LINK_FIELDS


class ContentError(LetterError):
    """A message that cannot be made from what was given: data of another kind or locale."""


class ContentNotUsed(KindNotUsed):
    """A kind that has no content for a channel in a locale: it goes by letter only."""


@dataclass(frozen=True, slots=True)
class Links:
    """The links a message carries besides the letter data.

    Attributes:
        portal_url: where the customer sees the account and pays; the signed link in the letter data
            (``portal.url``) is used instead when the data has one, so the e-mail and the letter lead to
            the same page.
        opt_out_url: one click, no sign-in, no fee: 12 CFR 1006.6(e) (US-ELEC-01) wants it in every
            e-mail; an empty one is refused.
        opt_out_sms: the reply keyword of the text message's opt-out (``STOP``, ``TD``); the wording
            around it is the template's.
    """

    portal_url: str
    opt_out_url: str
    opt_out_sms: str

    def __post_init__(self) -> None:
        missing = [name for name in ("portal_url", "opt_out_url", "opt_out_sms") if not getattr(self, name)]
        if missing:
            raise ContentError(f"every message needs its links; empty: {', '.join(missing)} (US-ELEC-01)")


@dataclass(frozen=True, slots=True)
class EmailContent:
    """An e-mail's words: a subject that reveals no debt, and the same facts as text and as HTML."""

    subject: str
    text: str
    html: str


@dataclass(frozen=True, slots=True)
class Preview:
    """One line of ``previews.toml``: where it is written, and its template."""

    file: str
    line: int
    source: str
    template: jinja2.Template


# ---------------------------------------------------------------- templates


def _environment(directories: tuple[Path, ...]) -> jinja2.Environment:
    # Autoescape the HTML templates only: the text, the SMS and the previews are plain text, and a
    # customer called "Tom & Jerry" must read "Tom & Jerry" there.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in directories]),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html.j2",), default_for_string=False, default=False
        ),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@dataclass(frozen=True)
class ContentTemplates:
    """The message templates of every kind and locale, field-checked at load.

    Attributes:
        directories: where templates are looked up, the first first (a reviewed directory, then shipped).
        env: the Jinja2 environment (autoescape on for ``.html.j2``).
        previews: the lines of each locale's ``previews.toml``, by (locale, kind, key).
        problems: what the load found; ``load_content_templates`` refuses a set with problems.
    """

    directories: tuple[Path, ...]
    env: jinja2.Environment
    previews: Mapping[tuple[str, str, str], Preview]
    problems: tuple[FieldProblem, ...]

    def file_name(self, kind: str, locale: str, part: str) -> str:
        return f"{locale}/{kind}.{part}.j2"

    def source_path(self, name: str) -> Path:
        """The file a template name comes from (the reviewed directory first)."""
        for directory in self.directories:
            path = directory / name
            if path.is_file():
                return path
        raise TemplateError(f"no template {name}")

    def exists(self, kind: str, locale: str, part: str) -> bool:
        """Whether one part of a kind's content (a file, or a key of previews.toml) is there."""
        if part in PREVIEW_KEYS:
            return (locale, kind, part) in self.previews
        return any((d / self.file_name(kind, locale, part)).is_file() for d in self.directories)

    def has(self, kind: str, locale: str, channel: str) -> bool:
        """Whether ``kind`` can be sent by ``channel`` in ``locale``: every file it needs is there."""
        return all(self.exists(kind, locale, part) for part in NEEDS[channel])

    def parts_of(self, name: str) -> list[str]:
        """The template and every template it extends or includes, in order, each once."""
        seen: list[str] = []
        pending = [name]
        while pending:
            current = pending.pop(0)
            if current in seen:
                continue
            seen.append(current)
            tree = self.env.parse(self.source_path(current).read_text(encoding="utf-8"))
            pending += [ref for ref in meta.find_referenced_templates(tree) if ref]
        return seen

    def render_file(self, name: str, context: Mapping[str, Any]) -> str:
        try:
            return self.env.get_template(name).render(**context)
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(f"no template {exc.name}") from None
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"{name}: {exc.message}") from exc

    def render_preview(self, kind: str, locale: str, key: str, context: Mapping[str, Any]) -> str:
        preview = self.previews[(locale, kind, key)]
        try:
            return preview.template.render(**context)
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"{preview.file}:{preview.line}: {kind}.{key}: {exc.message}") from exc


def _toml_line(text: str, table: str, key: str) -> int:
    """The line of ``key = ...`` inside ``[table]`` (1 when it cannot be found)."""
    current = ""
    for number, line in enumerate(text.splitlines(), 1):
        header = re.match(r"\s*\[\s*([^\]\s]+)\s*\]", line)
        if header:
            current = header.group(1).strip("\"'")
        elif current == table and re.match(rf"\s*{re.escape(key)}\s*=", line):
            return number
    return 1


def _load_previews(
    path: Path, name: str, locale: str, env: jinja2.Environment, declared: set[tuple[str, str, str]]
) -> tuple[dict[tuple[str, str, str], Preview], list[FieldProblem]]:
    """The previews of a locale that pass the field check, and the problems of the others; every key
    written is added to ``declared``."""
    text = path.read_text(encoding="utf-8")
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return {}, [FieldProblem(name, 1, f"not valid TOML: {exc}")]
    previews: dict[tuple[str, str, str], Preview] = {}
    problems: list[FieldProblem] = []
    for kind, table in document.items():
        if (kind not in KINDS and kind not in THIRD_PARTY_KINDS) or not isinstance(table, dict):
            problems.append(FieldProblem(name, 1, f"[{kind}] is not a letter kind or a contact kind"))
            continue
        for key, source in table.items():
            line = _toml_line(text, kind, key)
            if key not in PREVIEW_KEYS or not isinstance(source, str):
                known = ", ".join(PREVIEW_KEYS)
                problems.append(FieldProblem(name, line, f"{kind}.{key}: not one of {known} as text"))
                continue
            declared.add((locale, kind, key))
            found = check_fields(source, name, {**_schema_of(kind), **_links_of(kind)}, env)
            problems += [FieldProblem(name, line + p.line - 1, f"{kind}.{key}: {p.message}") for p in found]
            if not found:
                previews[(locale, kind, key)] = Preview(name, line, source, env.from_string(source))
    return previews, problems


def _file_schema(name: str, path: Path, base: Path) -> Schema | str:
    """The fields a template file may use, or why the file is not a known template."""
    locale = path.parent.name
    if path.parent.parent != base or locale not in LOCALES:
        return "not in a locale folder (zh-CN, en-US, en-GB)"
    stem, _, part = path.name.removesuffix(".j2").partition(".")
    if part not in FILE_PARTS:
        return f"not a message template: KIND.{{{','.join(FILE_PARTS)}}}.j2"
    if stem in KINDS:
        return {**schema_for(KINDS[stem]), **MESSAGE_FIELDS}
    if stem in THIRD_PARTY_KINDS:
        return {**_schema_of(stem), **CONTACT_LINK_FIELDS, "subject": LEAF}
    if stem.startswith("_"):
        return {**COMMON_FIELDS, **MESSAGE_FIELDS}  # shared by every kind: only what every kind has
    return f"{stem} is not a letter kind or a part (_NAME)"


def load_content_templates(directory: Path | None = None, *, strict: bool = True) -> ContentTemplates:
    """The message templates (``directory`` in front of the shipped ones), every one field-checked.

    A reviewed directory's file hides the shipped file of the same name, ``previews.toml`` included (the
    whole file), so a compliance officer can try a change before it ships.
    """
    directories = tuple(d for d in (directory, SHIPPED) if d is not None)
    env = _environment(directories)
    previews: dict[tuple[str, str, str], Preview] = {}
    problems: list[FieldProblem] = []
    seen: set[str] = set()
    declared: set[tuple[str, str, str]] = set()
    for base in directories:
        if not base.is_dir():
            continue
        for path in sorted([*base.rglob("*.j2"), *base.glob(f"*/{PREVIEWS}")]):
            name = path.relative_to(base).as_posix()
            if name in seen:
                continue
            seen.add(name)
            if path.name == PREVIEWS and path.parent.name not in LOCALES:
                problems.append(FieldProblem(name, 1, "not in a locale folder (zh-CN, en-US, en-GB)"))
                continue
            if path.name == PREVIEWS:
                found, wrong = _load_previews(path, name, path.parent.name, env, declared)
                previews |= found
                problems += wrong
                continue
            schema = _file_schema(name, path, base)
            if isinstance(schema, str):
                problems.append(FieldProblem(name, 1, schema))
                continue
            problems += check_fields(path.read_text(encoding="utf-8"), name, schema, env)
    problems += _incomplete(ContentTemplates(directories, env, previews, ()), declared)
    result = ContentTemplates(directories, env, previews, tuple(problems))
    if strict and problems:
        raise TemplateError(
            "message templates are wrong:\n"
            + "\n".join(f"{p.template}:{p.line}: {p.message}" for p in problems)
        )
    return result


def _incomplete(templates: ContentTemplates, declared: set[tuple[str, str, str]]) -> list[FieldProblem]:
    """A channel half there (an HTML e-mail without its text, a push title without a body) is a mistake;
    a preview written but failing its field check counts as there (its problem is reported already)."""

    def there(kind: str, locale: str, part: str) -> bool:
        return (locale, kind, part) in declared or templates.exists(kind, locale, part)

    out = []
    for locale in LOCALES:
        for kind in (*KINDS, *THIRD_PARTY_KINDS):
            for channel, parts in NEEDS.items():
                present = [p for p in parts if there(kind, locale, p)]
                if present and len(present) < len(parts):
                    missing = ", ".join(p for p in parts if p not in present)
                    where = f"{locale}/{PREVIEWS}" if present[0] in PREVIEW_KEYS else locale
                    out.append(
                        FieldProblem(where, 1, f"{kind} {channel} has {', '.join(present)} but no {missing}")
                    )
    return out


@functools.cache
def shipped_templates() -> ContentTemplates:
    """The shipped templates, loaded and checked once per process."""
    return load_content_templates()


# ---------------------------------------------------------------- rendering


def _context(kind: str, locale: str, data: Mapping[str, Any], links: Links) -> dict[str, Any]:
    """The letter data with the links; refuses data of another kind or locale, or a kind not used there."""
    if data.get("kind") != kind or data.get("locale") != locale:
        raise ContentError(
            f"the data is for {data.get('kind')} in {data.get('locale')}, not {kind} in {locale}"
        )
    if kind in THIRD_PARTY_KINDS:
        return {**data, "links": {"opt_out_url": links.opt_out_url, "opt_out_sms": links.opt_out_sms}}
    check_used(kind_named(kind), str(data.get("jurisdiction", "")))
    portal = data.get("portal")
    signed = str(portal.get("url", "")) if isinstance(portal, Mapping) else ""
    return {
        **data,
        "links": {
            "portal_url": signed or links.portal_url,
            "opt_out_url": links.opt_out_url,
            "opt_out_sms": links.opt_out_sms,
        },
    }


def _need(templates: ContentTemplates, kind: str, locale: str, channel: str) -> None:
    if channel not in CONTENT_CHANNELS:
        raise ContentNotUsed(
            f"unknown channel {channel!r}; content is made for {', '.join(CONTENT_CHANNELS)}"
        )
    if not templates.has(kind, locale, channel):
        raise ContentNotUsed(
            f"{kind} is not sent by {channel} in {locale}: there is no {channel} template for it "
            f"({', '.join(NEEDS[channel])}); it goes by letter only"
        )


def one_line(text: str) -> str:
    """A subject or a notification line: whitespace, line breaks included, made single spaces."""
    return " ".join(text.split())


def _sms_lines(text: str) -> str:
    """The text message: each template line trimmed, empty lines dropped; a link stays alone on its line
    so that no phone takes the following words into it."""
    lines = (one_line(line) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _tidy(text: str) -> str:
    """Trailing spaces removed and runs of blank lines made one, ending in a single newline."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n") + "\n"


def email_content(
    kind: str,
    locale: str,
    data: Mapping[str, Any],
    links: Links,
    *,
    templates: ContentTemplates | None = None,
) -> EmailContent:
    """The e-mail of a letter kind: a subject that reveals no debt, the text, and the same facts in HTML."""
    t = templates or shipped_templates()
    _need(t, kind, locale, "email")
    context = _context(kind, locale, data, links)
    subject = one_line(t.render_preview(kind, locale, "subject", context))
    context["subject"] = subject
    text = _tidy(t.render_file(t.file_name(kind, locale, "email.txt"), context))
    html = _tidy(t.render_file(t.file_name(kind, locale, "email.html"), context))
    return EmailContent(subject, text, html)


def sms_text(
    kind: str,
    locale: str,
    data: Mapping[str, Any],
    links: Links,
    *,
    templates: ContentTemplates | None = None,
) -> str:
    """The text message of a letter kind: who it is from, where to read more, how to opt out."""
    t = templates or shipped_templates()
    _need(t, kind, locale, "sms")
    context = _context(kind, locale, data, links)
    return _sms_lines(t.render_file(t.file_name(kind, locale, "sms"), context))


def push_payload(
    kind: str,
    locale: str,
    data: Mapping[str, Any],
    links: Links,
    *,
    templates: ContentTemplates | None = None,
) -> dict[str, str]:
    """The push notification: a title and body a lock screen may show (no debt), the detail behind url."""
    t = templates or shipped_templates()
    _need(t, kind, locale, "push")
    context = _context(kind, locale, data, links)
    return {
        "title": one_line(t.render_preview(kind, locale, "push_title", context)),
        "body": one_line(t.render_preview(kind, locale, "push_body", context)),
        "url": str(context["links"]["portal_url"]),
    }


def render_content(
    channel: str,
    kind: str,
    locale: str,
    data: Mapping[str, Any],
    links: Links,
    *,
    templates: ContentTemplates | None = None,
) -> EmailContent | str | dict[str, str]:
    """The content of ``kind`` for ``channel``; ``ContentNotUsed`` when the kind goes by letter only."""
    if channel == "email":
        return email_content(kind, locale, data, links, templates=templates)
    if channel == "sms":
        return sms_text(kind, locale, data, links, templates=templates)
    if channel == "push":
        return push_payload(kind, locale, data, links, templates=templates)
    raise ContentNotUsed(f"unknown channel {channel!r}; content is made for {', '.join(CONTENT_CHANNELS)}")


# ---------------------------------------------------------------- the lint


@functools.cache
def channel_checklists() -> dict[str, Any]:
    """What each channel must say and must not reveal (``channels/checklists.toml``)."""
    text = (resources.files("duecourse.channels") / "checklists.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def sample_links(issuer: Issuer, locale: str) -> Links:
    """Links like the outbox's, for the lint: the issuer's portal, an opt-out link, the locale's keyword."""
    base = issuer.portal_url.rstrip("/")
    return Links(base, f"{base}/opt-out/SAMPLE-OPT-OUT-TOKEN", OPT_OUT_KEYWORDS[locale])


def sample_data(config: Config, kind: str, locale: str) -> dict[str, Any]:
    """The letter data of ``kind`` for the sample account of ``locale``'s jurisdiction, as the letters'
    lint builds it (the snapshot as of the letter date, the itemization as of the oldest unpaid due)."""
    jurisdiction = JURISDICTION_OF[locale]
    issuer = config.issuers.get(jurisdiction)
    if issuer is None:
        raise LetterError(f"no [issuer.{jurisdiction}] in the configuration")
    sample = sample_for(jurisdiction, config.terms.products)
    product = config.terms.products[sample.account.product_code]
    buckets = config.terms.bucket_sets[product.bucket_set]

    def snap_at(day: dt.date) -> delinquency.AccountSnapshot:
        return delinquency.snapshot(
            sample.account.account_id,
            product,
            buckets,
            config.terms.stages,
            sample.dues,
            sample.payments,
            day,
            segments=config.terms.segments,
            jurisdiction=jurisdiction,
        )

    snap = snap_at(sample.letter_date)
    return letter_data(
        kind_name=kind,
        locale=locale,
        customer=sample.customer,
        account=sample.account,
        product=product,
        snap=snap,
        dues=sample.dues,
        payments=sample.payments,
        issuer=issuer,
        settings=config.letters,
        letter_date=sample.letter_date,
        inputs=sample.inputs,
        itemization=snap_at(snap.oldest_unpaid_due_date) if snap.oldest_unpaid_due_date else None,
    )


def contact_data(
    kind: str,
    locale: str,
    jurisdiction: str,
    *,
    contact_name: str,
    relation: str,
    customer_name: str,
    issuer: Issuer,
) -> dict[str, Any]:
    """The data of a message to a third party the customer named (``CONTACT_FIELDS``, nothing more)."""
    if kind not in CONTACT_KINDS:
        raise ContentError(f"{kind} is not a kind for third parties ({', '.join(CONTACT_KINDS)})")
    return _to_contact(kind, locale, jurisdiction, contact_name, relation, customer_name) | {
        "issuer": {
            "legal_name": issuer.legal_name,
            "hotline": issuer.hotline,
            "hours": issuer.hours,
            "website": issuer.website,
        },
    }


def collector_contact_data(
    kind: str,
    locale: str,
    jurisdiction: str,
    *,
    contact_name: str,
    relation: str,
    customer_name: str,
    agent: LocationAgent,
) -> dict[str, Any]:
    """The data of a third-party collector's message to a contact (``COLLECTOR_FIELDS``): ``kind`` is the
    contact kind the strategy planned; the data is of its collector's words."""
    words = COLLECTOR_CONTACT_KINDS.get(kind)
    if words is None:
        known = ", ".join(COLLECTOR_CONTACT_KINDS)
        raise ContentError(f"{kind} has no words for a third-party collector ({known})")
    return _to_contact(words, locale, jurisdiction, contact_name, relation, customer_name) | {
        "agent": {"name": agent.name, "phone": agent.phone}
    }


def _to_contact(
    kind: str, locale: str, jurisdiction: str, contact_name: str, relation: str, customer_name: str
) -> dict[str, Any]:
    """What every message to a third party is made from: whom it is for and whom it asks about."""
    return {
        "kind": kind,
        "locale": locale,
        "jurisdiction": jurisdiction,
        "contact": {"name": contact_name, "relation": relation},
        "customer": {"name": customer_name},
    }


# The location agent the lint renders a collector's words with when none is configured.
SAMPLE_AGENT = LocationAgent(
    name="Jordan Lee",
    phone="+12125550147",
    email_from="Jordan Lee <jordan.lee@locate.example>",
    sms_from="+12125550147",
    link_base="https://locate.example",
)


def sample_agent_links(agent: LocationAgent, locale: str) -> Links:
    """Links like the outbox's for a collector's words: the agent's own link base, the locale's keyword."""
    base = agent.link_base.rstrip("/")
    return Links(base, f"{base}/opt-out/contact/SAMPLE-OPT-OUT-TOKEN", OPT_OUT_KEYWORDS[locale])


# The sample contact the lint renders a contact kind for, per locale.
_SAMPLE_CONTACTS = {
    "zh-CN": ("李雷", "王芳"),
    "en-US": ("John Doe", "Jane Roe"),
    "en-GB": ("John Smith", "Jane Roe"),
}


def sample_collector_data(config: Config, kind: str, locale: str) -> dict[str, Any]:
    """The data of a collector's words ``kind`` (``COLLECTOR_KINDS``) for a sample contact of a sample
    customer, from the configured ``[location_agent.US]`` or a sample agent."""
    planned = next((k for k, words in COLLECTOR_CONTACT_KINDS.items() if words == kind), None)
    if planned is None:
        raise ContentError(f"{kind} is not a collector's words for a contact kind")
    jurisdiction = JURISDICTION_OF[locale]
    contact, customer = _SAMPLE_CONTACTS[locale]
    return collector_contact_data(
        planned,
        locale,
        jurisdiction,
        contact_name=contact,
        relation="emergency",
        customer_name=customer,
        agent=config.location_agents.get(jurisdiction, SAMPLE_AGENT),
    )


def sample_contact_data(config: Config, kind: str, locale: str) -> dict[str, Any]:
    """The data of ``kind`` for a sample contact of a sample customer of ``locale``'s jurisdiction."""
    jurisdiction = JURISDICTION_OF[locale]
    issuer = config.issuers.get(jurisdiction)
    if issuer is None:
        raise LetterError(f"no [issuer.{jurisdiction}] in the configuration")
    contact, customer = _SAMPLE_CONTACTS[locale]
    return contact_data(
        kind,
        locale,
        jurisdiction,
        contact_name=contact,
        relation="emergency",
        customer_name=customer,
        issuer=issuer,
    )


class _Html(HTMLParser):
    """What a reader of the HTML e-mail gets: its language, images, links and visible text."""

    BLOCKS = frozenset(
        {"p", "div", "li", "ul", "ol", "h1", "h2", "h3", "tr", "table", "footer", "main", "br"}
    )
    HIDDEN = frozenset({"head", "title", "style", "script"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lang: str | None = None
        self.images: list[dict[str, str | None]] = []
        self.hrefs: list[str] = []
        self.scripts = 0
        self._hidden = 0
        self._parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "html":
            self.lang = values.get("lang")
        elif tag == "img":
            self.images.append(values)
        elif tag == "a":
            self.hrefs.append(values.get("href") or "")
        elif tag == "script":
            self.scripts += 1
        if tag in self.HIDDEN:
            self._hidden += 1
        if tag in self.BLOCKS:
            self._parts.append("\n")
        elif tag in ("td", "th"):
            self._parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        if tag in self.BLOCKS:
            self._parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self._parts.append(data)

    def text(self) -> str:
        lines = (one_line(line) for line in "".join(self._parts).split("\n"))
        return "\n".join(line for line in lines if line)


def read_html(html: str) -> _Html:
    """The HTML e-mail as its reader gets it."""
    parser = _Html()
    parser.feed(html)
    parser.close()
    return parser


_FIELD = re.compile(r"\{([a-z][a-z_0-9.]*)\}")
_LINKS = re.compile(r"\S+@\S+|https?://\S+|www\.\S+")


def _fill(value: str, context: Mapping[str, Any]) -> str:
    return _FIELD.sub(lambda m: field_value(dict(context), m.group(1)), value)


def _missing(element: str, context: Mapping[str, Any], locale: str, text: str) -> list[str]:
    """What of ``element`` is not in the text: values (fields filled in) and phrases (patterns)."""
    spec = channel_checklists()["elements"][element]
    joined = flat(text, locale)
    bare = re.sub(r"\s+", "", text)  # a long link or account number may be wrapped
    missing = []
    for value in spec.get("values", []):
        wanted = _fill(value, context)
        if flat(wanted, locale) not in joined and re.sub(r"\s+", "", wanted) not in bare:
            missing.append(repr(wanted))
    for phrase in spec.get("phrases", {}).get(locale, []):
        if not re.search(_fill(phrase, context), joined):
            missing.append(f"/{phrase}/")
    return missing


def _required(channel: str, kind: str, jurisdiction: str) -> list[str]:
    spec = channel_checklists()[channel]
    extra = spec.get("jurisdictions", {}).get(jurisdiction, {})
    return [
        *spec.get("all", []),
        *spec.get("kinds", {}).get(kind, []),
        *extra.get("all", []),
        *extra.get(kind, []),
    ]


def _reveals(text: str, patterns: Iterable[str], allowed: Iterable[str] = ()) -> list[str]:
    """The debt words and amounts in ``text`` (links removed: a token is not an amount)."""
    text = _LINKS.sub(" ", text)
    for allow in allowed:
        text = re.sub(allow, " ", text)
    return [m.group(0) for p in patterns for m in [re.search(p, text)] if m]


def _prohibited(text: str, locale: str) -> list[str]:
    """The letters' prohibited words (threats, shaming) in ``text``; an allowed use needs its context."""
    spec = letter_checklists()["prohibited"][locale]
    allowed: dict[str, str] = spec.get("except", {})
    flags = 0 if locale == "zh-CN" else re.IGNORECASE
    out = []
    for word in spec["words"]:
        pattern = re.escape(word) if locale == "zh-CN" else r"\b" + re.escape(word) + r"(?:s|es)?\b"
        for match in re.finditer(pattern, text, flags):
            passage = text[max(0, match.start() - 120) : match.end() + 60]
            if word in allowed and re.search(allowed[word], passage):
                continue
            out.append(word)
            break
    return out


def _figures(text: str, locale: str) -> set[str]:
    """The amounts and dates a text states."""
    return set(AMOUNTS[locale].findall(text)) | set(DATES[locale].findall(text))


def _known_figures(context: Mapping[str, Any], locale: str) -> set[str]:
    known: set[str] = set()
    for value in _strings(context):
        known |= _figures(value, locale)
    return known


def _strings(node: Any) -> Iterable[str]:
    if isinstance(node, Mapping):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


class _Linter:
    """The findings for one locale: each template rendered with the sample account and checked."""

    def __init__(self, templates: ContentTemplates, config: Config, locale: str) -> None:
        self.t = templates
        self.config = config
        self.locale = locale
        self.jurisdiction = JURISDICTION_OF[locale]
        self.lists = channel_checklists()

    def part_name(self, kind: str, part: str) -> str:
        """The file a part of a kind's content is written in."""
        if part in PREVIEW_KEYS:
            return f"{self.locale}/{PREVIEWS}"
        return self.t.file_name(kind, self.locale, part)

    def where(self, name: str, pattern: str, flags: int = 0) -> tuple[str, int]:
        """The first template (or part of it) and line where ``pattern`` is written; line 1 otherwise."""
        try:
            parts = self.t.parts_of(name)
        except (TemplateError, jinja2.TemplateError):
            return name, 1
        for part in parts:
            text = self.t.source_path(part).read_text(encoding="utf-8")
            match = re.search(pattern, text, flags)
            if match:
                return part, text.count("\n", 0, match.start()) + 1
        return name, 1

    def elements(
        self, name: str, channel: str, kind: str, context: Mapping[str, Any], text: str
    ) -> list[Finding]:
        out = []
        for element in _required(channel, kind, self.jurisdiction):
            missing = _missing(element, context, self.locale, text)
            if missing:
                what = self.lists["elements"][element]["what"]
                message = f"{element} ({what}) is missing: no {', '.join(missing)}"
                out.append(Finding(name, 1, "element.missing", message))
        return out

    def words(self, name: str, text: str) -> list[Finding]:
        out = []
        flags = 0 if self.locale == "zh-CN" else re.IGNORECASE
        for word in _prohibited(text, self.locale):
            part, line = self.where(name, re.escape(word), flags)
            out.append(Finding(part, line, "words.prohibited", f"'{word}' is a threat or shaming word"))
        return out

    def figures(self, name: str, context: Mapping[str, Any], text: str) -> list[Finding]:
        out = []
        for figure in sorted(_figures(text, self.locale) - _known_figures(context, self.locale)):
            part, line = self.where(name, re.escape(figure))
            out.append(
                Finding(part, line, "figure.unknown", f"{figure} is not a figure of the account's data")
            )
        return out

    def readability(self, name: str, text: str) -> list[Finding]:
        settings = self.config.letters
        out = []
        said = sentences(text, self.locale)
        for sentence in said:
            if self.locale == "zh-CN":
                size, limit = len(re.findall(r"[\u4e00-\u9fff]", sentence)), settings.max_sentence_chars
            else:
                size, limit = len(_LINKS.sub("", sentence).split()), settings.max_sentence_words
            if size > limit:
                part, line = self.where(name, re.escape(sentence[:12]))
                message = f"sentence of {size} (limit {limit}): {sentence[:60]}…"
                out.append(Finding(part, line, "readability.sentence", message))
        if self.locale != "zh-CN":
            grade = grade_level(said)
            if grade > settings.max_grade:
                message = f"Flesch-Kincaid grade {grade:.1f} is above the limit {settings.max_grade:g}"
                out.append(Finding(name, 1, "readability.grade", message))
        return out

    def preview(self, kind: str, key: str, text: str) -> list[Finding]:
        """A subject or a push line: short, polite, and nothing about the debt."""
        p = self.t.previews[(self.locale, kind, key)]
        out = []
        limit = int(self.lists["limits"][key])
        if not text or len(text) > limit:
            message = f"{kind}.{key} has {len(text)} characters (1 to {limit}): {text!r}"
            out.append(Finding(p.file, p.line, "preview.length", message))
        for found in _reveals(text, self.lists["reveals"]["preview"][self.locale]):
            message = f"{kind}.{key} reveals the debt with '{found}': {text!r} (EU-GDPR-01, US-3P-01)"
            out.append(Finding(p.file, p.line, "preview.reveals", message))
        for word in _prohibited(text, self.locale):
            out.append(Finding(p.file, p.line, "words.prohibited", f"{kind}.{key}: '{word}'"))
        return out

    def email(self, kind: str, context: Mapping[str, Any], links: Links) -> list[Finding]:
        content = email_content(kind, self.locale, context, links, templates=self.t)
        context = {**_context(kind, self.locale, context, links), "subject": content.subject}
        txt = self.t.file_name(kind, self.locale, "email.txt")
        html = self.t.file_name(kind, self.locale, "email.html")
        reader = read_html(content.html)
        shown = reader.text()
        out = self.preview(kind, "subject", content.subject)
        out += self.elements(txt, "email", kind, context, content.text)
        # A link counts where it is clickable: the HTML's link texts say what they are, the text shows them.
        out += self.elements(html, "email", kind, context, "\n".join([shown, *reader.hrefs]))
        out += self.figures(txt, context, content.text) + self.figures(html, context, shown)
        out += self.words(txt, content.text) + self.words(html, shown)
        out += self.readability(txt, content.text)
        # The HTML shows the subject as its heading; the text's reader has it in the header.
        said = _figures(f"{content.subject}\n{content.text}", self.locale)
        shown_figures = _figures(shown, self.locale)
        if said != shown_figures:
            message = (
                "the HTML and the text state different figures: "
                f"only in text {sorted(said - shown_figures)}, only in HTML {sorted(shown_figures - said)}"
            )
            out.append(Finding(html, 1, "email.alternative", message))
        if reader.lang != self.locale:
            out.append(Finding(html, 1, "html.lang", f"<html lang> is {reader.lang!r}, not {self.locale!r}"))
        if any(not (image.get("alt") or "").strip() for image in reader.images):
            out.append(
                Finding(html, 1, "html.image", "an image without alt text: the e-mail must read without")
            )
        if reader.scripts:
            out.append(Finding(html, 1, "html.script", "a script in an e-mail"))
        if links.opt_out_url not in reader.hrefs:
            message = f"no link to the opt-out {links.opt_out_url} (12 CFR 1006.6(e), US-ELEC-01)"
            out.append(Finding(html, 1, "html.opt_out", message))
        return out

    def sms(self, kind: str, context: Mapping[str, Any], links: Links) -> list[Finding]:
        text = sms_text(kind, self.locale, context, links, templates=self.t)
        context = _context(kind, self.locale, context, links)
        name = self.t.file_name(kind, self.locale, "sms")
        # The adapter's own count, so the lint measures what the network bills; imported here so that
        # rendering content never needs the SMPP client.
        from duecourse.channels.sms import sms_encoding

        out = self.elements(name, "sms", kind, context, text)
        sent = sms_encoding(text)
        limit = int(self.lists["limits"]["sms_segments"])
        if sent.segments > limit:
            message = (
                f"{sent.segments} {sent.encoding} segments (limit {limit}), {sent.units} units: {text!r}"
            )
            out.append(Finding(name, 1, "sms.segments", message))
        reveals = self.lists["reveals"]
        for found in _reveals(
            text, reveals["sms"][self.locale], reveals.get("sms_allowed", {}).get(self.locale, [])
        ):
            part, line = self.where(name, re.escape(found))
            message = f"the text message reveals the debt with '{found}' (EU-GDPR-01: a lock screen shows it)"
            out.append(Finding(part, line, "sms.reveals", message))
        return out + self.words(name, text)

    def push(self, kind: str, context: Mapping[str, Any], links: Links) -> list[Finding]:
        payload = push_payload(kind, self.locale, context, links, templates=self.t)
        out = self.preview(kind, "push_title", payload["title"])
        out += self.preview(kind, "push_body", payload["body"])
        wanted = _context(kind, self.locale, context, links)["links"]["portal_url"]
        if payload["url"] != wanted:
            p = self.t.previews[(self.locale, kind, "push_title")]
            out.append(Finding(p.file, p.line, "push.url", f"the push opens {payload['url']}, not {wanted}"))
        return out

    def contact_reveals(self, name: str, text: str, what: str) -> list[Finding]:
        """A message to a third party must not tell the debt: no word about owing, paying, an account or
        collection, no amount (``reveals.contact``; US-3P-01, CN-COL-07 Art 18, UK-CONC-04)."""
        out = []
        for found in _reveals(text, self.lists["reveals"]["contact"][self.locale]):
            part, line = self.where(name, re.escape(found)) if name.endswith(".j2") else (name, 1)
            message = (
                f"the {what} to a third party reveals the debt with '{found}' "
                "(US-3P-01, CN-COL-07 Art 18, UK-CONC-04: never disclose the debt to a third party)"
            )
            out.append(Finding(part, line, "contact.reveals", message))
        return out

    def employer(self, name: str, text: str, what: str) -> list[Finding]:
        """A third-party collector's words name no employer: no issuer's legal name, agency, website or
        portal host, nor its hotline (12 CFR 1006.10(b)(1), FDCPA §1692b(1): only if expressly asked)."""
        from duecourse.config import employer_names

        out = []
        folded = text.lower()
        names = [written for written, _ in employer_names(self.config.issuers.values())]
        names += [issuer.hotline for issuer in self.config.issuers.values() if issuer.hotline.strip()]
        for written in names:
            if written.lower() in folded:
                part, line = self.where(name, re.escape(written)) if name.endswith(".j2") else (name, 1)
                message = (
                    f"the {what} of a third-party collector names the employer with '{written}' "
                    "(12 CFR 1006.10(b)(1), FDCPA §1692b(1): only if the third party expressly asks)"
                )
                out.append(Finding(part, line, "contact.employer", message))
        return out

    def contact(self, kind: str) -> list[Finding]:
        """A contact kind: in every locale, by text and e-mail, what it must say and nothing of the debt.
        A collector's words (``COLLECTOR_KINDS``): in the locales of the law that asks for them, and
        nothing that names the employer either."""
        collector = kind in COLLECTOR_KINDS
        if collector and self.locale not in COLLECTOR_LOCALES:
            return []
        out: list[Finding] = []
        missing = [c for c in CONTACT_CHANNELS if not self.t.has(kind, self.locale, c)]
        for channel in missing:
            part = next(p for p in NEEDS[channel] if not self.t.exists(kind, self.locale, p))
            message = f"{kind} is sent to third parties by {channel}: its templates are missing"
            out.append(Finding(self.part_name(kind, part), 1, "template.missing", message))
        if len(missing) == len(CONTACT_CHANNELS):
            return out
        try:
            if collector:
                agent = self.config.location_agents.get(self.jurisdiction, SAMPLE_AGENT)
                data = sample_collector_data(self.config, kind, self.locale)
                links = sample_agent_links(agent, self.locale)
            else:
                data = sample_contact_data(self.config, kind, self.locale)
                links = sample_links(self.config.issuers[self.jurisdiction], self.locale)
        except LetterError as exc:
            return [*out, Finding(f"{self.locale}/{kind}", 1, "template.error", str(exc))]
        jurisdiction = self.jurisdiction
        specs = ("contact_sms", "contact_email")
        if collector:
            specs = ("collector_contact_sms", "collector_contact_email")
        if "sms" not in missing:
            name = self.t.file_name(kind, self.locale, "sms")
            try:
                text = sms_text(kind, self.locale, data, links, templates=self.t)
            except LetterError as exc:
                return [*out, Finding(name, 1, "template.error", str(exc))]
            context = _context(kind, self.locale, data, links)
            from duecourse.channels.sms import sms_encoding

            for element in _required(specs[0], kind, jurisdiction):
                lost = _missing(element, context, self.locale, text)
                if lost:
                    what = self.lists["elements"][element]["what"]
                    message = f"{element} ({what}) is missing: no {', '.join(lost)}"
                    out.append(Finding(name, 1, "element.missing", message))
            sent = sms_encoding(text)
            limit = int(self.lists["limits"]["sms_segments"])
            if sent.segments > limit:
                message = (
                    f"{sent.segments} {sent.encoding} segments (limit {limit}), {sent.units} units: {text!r}"
                )
                out.append(Finding(name, 1, "sms.segments", message))
            out += self.contact_reveals(name, text, "text message") + self.words(name, text)
            if collector:
                out += self.employer(name, text, "text message")
        if "email" not in missing:
            txt = self.t.file_name(kind, self.locale, "email.txt")
            html = self.t.file_name(kind, self.locale, "email.html")
            try:
                content = email_content(kind, self.locale, data, links, templates=self.t)
            except LetterError as exc:
                return [*out, Finding(txt, 1, "template.error", str(exc))]
            context = {**_context(kind, self.locale, data, links), "subject": content.subject}
            reader = read_html(content.html)
            shown = reader.text()
            p = self.t.previews[(self.locale, kind, "subject")]
            out += self.contact_reveals(p.file, content.subject, "e-mail subject")
            out += self.contact_reveals(txt, content.text, "e-mail") + self.contact_reveals(
                html, shown, "e-mail"
            )
            for part, said in ((txt, content.text), (html, "\n".join([shown, *reader.hrefs]))):
                for element in _required(specs[1], kind, jurisdiction):
                    lost = _missing(element, context, self.locale, said)
                    if lost:
                        what = self.lists["elements"][element]["what"]
                        message = f"{element} ({what}) is missing: no {', '.join(lost)}"
                        out.append(Finding(part, 1, "element.missing", message))
            out += self.words(txt, content.text) + self.words(html, shown)
            if collector:
                out += self.employer(p.file, content.subject, "e-mail subject")
                out += self.employer(txt, content.text, "e-mail")
                out += self.employer(html, "\n".join([shown, *reader.hrefs]), "e-mail")
            if reader.lang != self.locale:
                out.append(
                    Finding(html, 1, "html.lang", f"<html lang> is {reader.lang!r}, not {self.locale!r}")
                )
            if reader.scripts:
                out.append(Finding(html, 1, "html.script", "a script in an e-mail"))
            if links.opt_out_url not in reader.hrefs:
                message = f"no link to the opt-out {links.opt_out_url} (12 CFR 1006.6(e), US-ELEC-01)"
                out.append(Finding(html, 1, "html.opt_out", message))
        return out

    def run(self, kinds: Iterable[str]) -> list[Finding]:
        out: list[Finding] = []
        coverage = self.lists["coverage"]
        issuer = self.config.issuers.get(self.jurisdiction)
        for kind in kinds:
            if kind in THIRD_PARTY_KINDS:
                out += self.contact(kind)
                continue
            if self.jurisdiction not in KINDS[kind].jurisdictions:
                continue
            for channel in CONTENT_CHANNELS:
                if self.t.has(kind, self.locale, channel):
                    continue
                if kind in coverage[channel]:
                    part = next(p for p in NEEDS[channel] if not self.t.exists(kind, self.locale, p))
                    name = self.part_name(kind, part)
                    message = f"{kind} is sent by {channel} in {self.jurisdiction}: its templates are missing"
                    out.append(Finding(name, 1, "template.missing", message))
            wanted = [c for c in CONTENT_CHANNELS if self.t.has(kind, self.locale, c)]
            if not wanted:
                continue
            if issuer is None:
                out.append(Finding(self.locale, 1, "config.issuer", f"no [issuer.{self.jurisdiction}]"))
                return out
            links = sample_links(issuer, self.locale)
            try:
                data = sample_data(self.config, kind, self.locale)
            except LetterError as exc:
                out.append(Finding(f"{self.locale}/{kind}", 1, "template.error", str(exc)))
                continue
            for channel in wanted:
                check = {"email": self.email, "sms": self.sms, "push": self.push}[channel]
                try:
                    out += check(kind, data, links)
                except LetterError as exc:
                    name = self.part_name(kind, NEEDS[channel][0])
                    out.append(Finding(name, 1, "template.error", str(exc)))
        return out


def lint_content(
    directory: Path | None = None,
    config: Config | None = None,
    *,
    kinds: Iterable[str] | None = None,
    locales: Iterable[str] | None = None,
) -> list[Finding]:
    """Every finding for the message templates: each kind × locale × channel rendered with the sample
    account of the locale's jurisdiction and checked (what each must say, what a preview must not reveal,
    the SMS length, threats, figures, readability, the HTML's language, images and opt-out link)."""
    templates = load_content_templates(directory, strict=False)
    config = config or load_config(None)
    findings = [Finding(p.template, p.line, "template.field", p.message) for p in templates.problems]
    for locale in locales or LOCALES:
        findings += _Linter(templates, config, locale).run(kinds or (*KINDS, *THIRD_PARTY_KINDS))
    return sorted(set(findings))
