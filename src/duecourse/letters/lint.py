"""The clarity lint: render every template with sample accounts and check what the customer will read.

Checks, on the text read back from the PDF (``pdftotext``, as a customer's screen reader would):

* ``element.missing``: each element the kind needs in the jurisdiction (``checklists.toml``) is there.
* ``figure.amount`` / ``figure.date``: every amount and date in the text is one of the letter data's.
* ``deadline.minimum``: the deadline is a date no earlier than the legal minimum.
* ``words.prohibited``: no threats or shaming words ("police" only to report identity theft or fraud).
* ``readability.sentence`` / ``readability.grade``: sentences under the configured length (words in
  English, characters in Chinese) and an English Flesch-Kincaid grade under the configured level.
* ``window.debt``: nothing about debt shows through the envelope window.
* ``template.error`` / ``template.missing``: the template renders at all, and exists for each kind used.

Each finding is ``template:line: rule: message``; the line is where the offending words are in the
template when they come from it, else the template's first line of body.
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from duecourse.config import Config
from duecourse.letters import LetterError
from duecourse.letters.data import deadline_for, letter_data, minimum_deadline
from duecourse.letters.kinds import JURISDICTION_OF, KINDS, LOCALE_OF
from duecourse.letters.render import TemplateSet, compile_pdf
from duecourse.letters.samples import sample_for

MONTH = "(?:January|February|March|April|May|June|July|August|September|October|November|December)"
DATES = {
    "zh-CN": re.compile(r"\d{4}年\d{1,2}月\d{1,2}日"),
    "en-US": re.compile(MONTH + r" \d{1,2}, \d{4}"),
    "en-GB": re.compile(r"\d{1,2} " + MONTH + r" \d{4}"),
}
AMOUNTS = {
    "zh-CN": re.compile(r"-?\d[\d,]*\.\d{2}元"),
    "en-US": re.compile(r"-?\$\d[\d,]*\.\d{2}"),
    "en-GB": re.compile(r"-?£\d[\d,]*\.\d{2}"),
}
_FIELD = re.compile(r"\{([a-z_0-9.]+)\}")
_MM = 72 / 25.4  # pdftotext's default resolution is 72 dpi: points
# The envelope window, in mm from the page's top left: (x, y, width, height).
WINDOW = {"a4": (20, 45, 90, 45), "us-letter": (22, 50, 100, 30)}


@dataclass(frozen=True, slots=True, order=True)
class Finding:
    template: str
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.template}:{self.line}: {self.rule}: {self.message}"


@cache
def checklists() -> dict[str, Any]:
    """The checklists, prohibited words and window words (``checklists.toml``)."""
    text = (resources.files("duecourse.letters") / "checklists.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def pdf_text(pdf: bytes, area: tuple[float, float, float, float] | None = None) -> str:
    """The text of a PDF as pdftotext reads it (poppler-utils); ``area`` in mm on page 1 only."""
    command = ["pdftotext", "-enc", "UTF-8"]
    if area is not None:
        x, y, w, h = (round(v * _MM) for v in area)
        command += ["-f", "1", "-l", "1", "-x", str(x), "-y", str(y), "-W", str(w), "-H", str(h)]
    try:
        done = subprocess.run([*command, "-", "-"], input=pdf, capture_output=True, check=True, timeout=60)
    except FileNotFoundError:
        raise LetterError(
            "pdftotext is not installed (Debian: poppler-utils; `make setup` installs it)"
        ) from None
    return done.stdout.decode("utf-8")


def flat(text: str, locale: str) -> str:
    """Text with its line breaks undone: removed between Chinese characters, one space in English."""
    if locale == "zh-CN":
        return re.sub(r"\s*\n\s*", "", text).replace("\f", "")
    return re.sub(r"\s+", " ", text.replace("\f", " ")).strip()


def field_value(data: dict[str, Any], path: str) -> str:
    node: Any = data
    for part in path.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return str(node)


def _strings(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


def sentences(text: str, locale: str) -> list[str]:
    """Sentences of the extracted text: split at end punctuation, and at line breaks that end a heading,
    a list item or a table cell (a short line)."""
    out: list[str] = []
    for block in re.split(r"\n\s*\n|\f", text):
        lines = [line.strip() for line in block.split("\n") if line.strip()]
        width = max((len(line) for line in lines), default=0)
        current = ""
        for line in lines:
            joiner = "" if locale == "zh-CN" else " "
            current = f"{current}{joiner}{line}" if current else line
            if len(line) < 0.6 * width or re.match(r"^[•\d]", line):
                out.append(current)
                current = ""
        if current:
            out.append(current)
    ends = r"(?<=[。！？；])" if locale == "zh-CN" else r"(?<=[.!?;])\s+"
    return [s.strip() for chunk in out for s in re.split(ends, chunk) if s.strip()]


def syllables(word: str) -> int:
    word = word.lower()
    groups = re.findall(r"[aeiouy]+", word)
    count = len(groups)
    if word.endswith("e") and not word.endswith(("le", "ee")) and count > 1:
        count -= 1
    return max(1, count)


def grade_level(texts: Sequence[str]) -> float:
    """Flesch-Kincaid grade: 0.39 words per sentence + 11.8 syllables per word − 15.59."""
    # Headings, table cells and list labels are not sentences: count those of three words or more.
    texts = [s for s in texts if len(_no_links(s).split()) >= 3]
    words = [w for s in texts for w in re.findall(r"[A-Za-z][A-Za-z'’-]*", _no_links(s))]
    if not words or not texts:
        return 0.0
    total = sum(syllables(w) for w in words)
    return 0.39 * len(words) / len(texts) + 11.8 * total / len(words) - 15.59


def _no_links(text: str) -> str:
    return re.sub(r"\S+@\S+|https?://\S+|www\.\S+", "", text)


class _Sources:
    """The template sources behind one letter, to say on which line a phrase is written."""

    def __init__(self, templates: TemplateSet, name: str) -> None:
        self.name = name
        self.files = [
            (part, templates.source_path(part).read_text(encoding="utf-8"))
            for part in templates.parts_of(name)
        ]
        body = re.search(r"{%-?\s*block body", self.files[0][1])
        self.body_line = self.files[0][1].count("\n", 0, body.start()) + 1 if body else 1

    def where(self, pattern: str, flags: int = 0) -> tuple[str, int]:
        """The first template and line where ``pattern`` is written; the body's first line otherwise."""
        for part, text in self.files:
            match = re.search(pattern, text, flags)
            if match:
                return part, text.count("\n", 0, match.start()) + 1
        return self.name, self.body_line


def lint(
    templates: TemplateSet,
    config: Config,
    kinds: Sequence[str] | None = None,
    locales: Sequence[str] | None = None,
) -> list[Finding]:
    """Every finding for the templates of ``kinds`` in ``locales`` (all of them by default)."""
    findings = [Finding(p.template, p.line, "template.field", p.message) for p in templates.problems]
    for locale in locales or LOCALE_OF.values():
        jurisdiction = JURISDICTION_OF[locale]
        for kind in kinds or KINDS:
            if jurisdiction not in KINDS[kind].jurisdictions:
                continue
            name = templates.template_name(kind, locale)
            if not templates.has(kind, locale):
                findings.append(Finding(name, 1, "template.missing", f"{kind} is used in {jurisdiction}"))
                continue
            findings += lint_one(templates, config, kind, locale)
    return sorted(set(findings))


def lint_one(templates: TemplateSet, config: Config, kind: str, locale: str) -> list[Finding]:
    """The findings for one template, rendered with the sample account of its jurisdiction."""
    jurisdiction = JURISDICTION_OF[locale]
    name = templates.template_name(kind, locale)
    issuer = config.issuers.get(jurisdiction)
    if issuer is None:
        return [Finding(name, 1, "config.issuer", f"no [issuer.{jurisdiction}] in the configuration")]
    sample = sample_for(jurisdiction, config.terms.products)
    product = config.terms.products[sample.account.product_code]
    from duecourse.domain import delinquency

    bucket_set = config.terms.bucket_sets[product.bucket_set]

    def snap_at(day: dt.date) -> delinquency.AccountSnapshot:
        return delinquency.snapshot(
            sample.account.account_id,
            product,
            bucket_set,
            config.terms.stages,
            sample.dues,
            sample.payments,
            day,
            segments=config.terms.segments,
            jurisdiction=jurisdiction,
        )

    snap = snap_at(sample.letter_date)
    sources = _Sources(templates, name)
    try:
        data = letter_data(
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
        pdf = compile_pdf(templates.markup(data), sample.letter_date)
    except LetterError as exc:
        return [Finding(name, sources.body_line, "template.error", str(exc))]
    text = pdf_text(pdf)
    joined = flat(text, locale)
    found: list[Finding] = []
    found += _elements(sources, data, kind, jurisdiction, locale, joined)
    found += _figures(sources, data, locale, joined)
    found += _deadline(sources, config, kind, jurisdiction, sample.letter_date)
    found += _prohibited(sources, locale, joined)
    found += _readability(sources, config, locale, sentences(text, locale))
    found += _window(sources, locale, pdf_text(pdf, WINDOW[str(data["paper"])]))
    return found


def _elements(
    sources: _Sources, data: dict[str, Any], kind: str, jurisdiction: str, locale: str, text: str
) -> list[Finding]:
    lists = checklists()
    bare = re.sub(r"\s+", "", text)  # a URL or an account number may be broken across lines
    out = []
    for element in lists["kinds"].get(kind, {}).get(jurisdiction, []):
        spec = lists["elements"][element]
        missing: list[str] = []
        for value in spec.get("values", []):
            wanted = _FIELD.sub(lambda m: field_value(data, m.group(1)), value)
            if flat(wanted, locale) not in text and re.sub(r"\s+", "", wanted) not in bare:
                missing.append(repr(wanted))
        for phrase in spec.get("phrases", {}).get(locale, []):
            if not re.search(phrase, text):
                missing.append(f"/{phrase}/")
        if missing:
            message = f"{element} ({spec['what']}) is missing: no {', '.join(missing)} in the letter"
            out.append(Finding(sources.name, sources.body_line, "element.missing", message))
    return out


def _figures(sources: _Sources, data: dict[str, Any], locale: str, text: str) -> list[Finding]:
    known = set()
    for value in _strings(data):
        known |= set(AMOUNTS[locale].findall(value)) | set(DATES[locale].findall(value))
    out = []
    for rule, pattern in (("figure.amount", AMOUNTS[locale]), ("figure.date", DATES[locale])):
        for figure in sorted(set(pattern.findall(text)) - known):
            part, line = sources.where(re.escape(figure))
            what = "amount" if rule == "figure.amount" else "date"
            out.append(Finding(part, line, rule, f"{what} {figure} is not a figure of the account's data"))
    return out


def _deadline(
    sources: _Sources, config: Config, kind: str, jurisdiction: str, letter_date: dt.date
) -> list[Finding]:
    rule = config.letters.deadlines[kind]
    deadline = deadline_for(rule, letter_date, jurisdiction)
    least = minimum_deadline(rule, letter_date, jurisdiction)
    if deadline is None or least is None or deadline >= least:
        return []
    message = (
        f"deadline {deadline} is earlier than the legal minimum {least} ({rule.minimum} {rule.unit} days)"
    )
    return [Finding(sources.name, sources.body_line, "deadline.minimum", message)]


def _prohibited(sources: _Sources, locale: str, text: str) -> list[Finding]:
    """Prohibited words in the flat text; an allowed use needs its context within the same passage."""
    spec = checklists()["prohibited"][locale]
    allowed: dict[str, str] = spec.get("except", {})
    flags = 0 if locale == "zh-CN" else re.IGNORECASE
    out = []
    for word in spec["words"]:
        pattern = re.escape(word) if locale == "zh-CN" else r"\b" + re.escape(word) + r"(?:s|es)?\b"
        for match in re.finditer(pattern, text, flags):
            passage = text[max(0, match.start() - 120) : match.end() + 60]
            if word in allowed and re.search(allowed[word], passage):
                continue
            part, line = sources.where(pattern, flags)
            snippet = text[max(0, match.start() - 30) : match.end() + 30]
            out.append(Finding(part, line, "words.prohibited", f"'{word}' in: …{snippet}…"))
            break
    return out


def _readability(sources: _Sources, config: Config, locale: str, said: Sequence[str]) -> list[Finding]:
    settings = config.letters
    out = []
    for sentence in said:
        if locale == "zh-CN":
            size = len(re.findall(r"[\u4e00-\u9fff]", sentence))
            too_long = size > settings.max_sentence_chars
            unit = f"{size} characters (limit {settings.max_sentence_chars})"
        else:
            size = len(_no_links(sentence).split())
            too_long = size > settings.max_sentence_words
            unit = f"{size} words (limit {settings.max_sentence_words})"
        if too_long:
            part, line = sources.where(re.escape(sentence[:12]))
            out.append(Finding(part, line, "readability.sentence", f"sentence of {unit}: {sentence[:60]}…"))
    if locale != "zh-CN":
        grade = grade_level(said)
        if grade > settings.max_grade:
            message = f"Flesch-Kincaid grade {grade:.1f} is above the limit {settings.max_grade:g}"
            out.append(Finding(sources.name, sources.body_line, "readability.grade", message))
    return out


def _window(sources: _Sources, locale: str, shown: str) -> list[Finding]:
    out = []
    for pattern in checklists()["window"][locale]:
        match = re.search(pattern, shown)
        if match:
            message = f"the envelope window shows '{match.group(0)}': nothing about the debt may show"
            out.append(Finding(sources.name, 1, "window.debt", message))
    return out
