"""Typst markup to PDF: one document, or many letters as one document cut apart into one PDF each.

Apart from ``letters.render`` (the templates), so that a worker process that only compiles imports typst and
``letters.pdfparts``, not Jinja2 (a tenth of a second of CPU for each process started without bytecode).

typst, with the Noto CJK fonts of the distribution (Debian ``fonts-noto-cjk``); the document date is the
letter date, so the same data gives the same bytes. A letter to store is made by ``compile_letters``: many
letters compiled as one typst document and cut apart (``letters.pdfparts``), each the same bytes as when
compiled alone.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import re
from collections.abc import Sequence
from pathlib import Path

import typst

from duecourse.letters import TemplateError, pdfparts

FONT_DIRS = ("/usr/share/fonts/opentype/noto", "/usr/share/fonts/truetype/noto")


@functools.cache
def _fonts() -> typst.Fonts:
    paths = [p for p in FONT_DIRS if Path(p).is_dir()]
    return typst.Fonts(include_system_fonts=False, include_embedded_fonts=True, font_paths=paths)


@functools.cache
def compiler() -> typst.Compiler:
    """One typst compiler per process, holding the fonts (loading them is most of the first letter's time)."""
    return typst.Compiler(font_paths=_fonts(), ignore_system_fonts=True)


def fonts_available() -> list[str]:
    """The font families typst can use here."""
    return sorted(set(_fonts().families()))


def compile_pdf(markup: str, when: dt.date) -> bytes:
    """The PDF of typst markup as typst writes it; the creation time is ``when`` at midnight UTC, so the
    bytes repeat. A letter to store is made by :func:`compile_letters`."""
    stamp = dt.datetime(when.year, when.month, when.day, tzinfo=dt.UTC)
    try:
        pdf = compiler().compile(markup.encode("utf-8"), format="pdf", timestamp=stamp)
    except typst.TypstError as exc:
        raise TemplateError(f"typst refused the letter: {exc.message}") from exc
    if not isinstance(pdf, bytes):
        raise TemplateError("typst returned no PDF")
    return pdf


def single_threaded() -> None:
    """Make typst run its work on this thread alone (for a worker process, before its first compile).

    typst spreads a compile over a thread pool (rayon); where letters are rendered in one worker process
    per core, those threads only compete with the other workers, and a batch took 11 % more CPU seconds
    with them (docs/performance.md, "Letters")."""
    os.environ["RAYON_NUM_THREADS"] = "1"


def letters_markup(markups: Sequence[str]) -> str:
    """One typst document of many letters: each in its own scope (set rules do not pile up, which would
    make styling quadratic), each starting on a new page; ``layout.typ.j2`` numbers each letter's pages."""
    return "".join(f"#[\n{markup}\n]\n#pagebreak(weak: true)\n" for markup in markups)


def compile_letters(markups: Sequence[str], when: dt.date) -> list[bytes]:
    """The PDF of each letter, compiled as one typst document and cut apart (``pdfparts``).

    The letters must share the document's metadata (kind, locale, issuer) and date. Each letter comes out
    the same bytes whatever it was compiled with, so ``compile_letters([m], when)[0]`` is the letter on its
    own. A letter whose PDF cannot be cut apart (``pdfparts.Unsupported``) is compiled alone and kept as
    typst writes it, and so is it when compiled alone.
    """
    if not markups:
        return []
    try:
        document = compile_pdf(letters_markup(markups), when)
    except TemplateError:
        if len(markups) == 1:
            raise
        return [pdf for markup in markups for pdf in compile_letters([markup], when)]  # which one fails
    try:
        return pdfparts.split(document, len(markups))
    except pdfparts.Unsupported:
        if len(markups) == 1:
            return [document]
        return [pdf for markup in markups for pdf in compile_letters([markup], when)]


_PAGES = re.compile(rb"/Type\s*/Pages\b[^>]*?/Count\s+(\d+)|/Count\s+(\d+)[^>]*?/Type\s*/Pages\b")


def page_count(pdf: bytes) -> int:
    """The number of pages of a PDF that typst wrote (its page tree is one uncompressed object)."""
    match = _PAGES.search(pdf)
    if match is None:
        raise TemplateError("cannot find the page count in the PDF")
    return int(match.group(1) or match.group(2))
