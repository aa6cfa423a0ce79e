"""Templates to typst markup to PDF.

Templates are Jinja2 files under ``letters/templates`` (or a directory a compliance officer is reviewing,
in front of the shipped one): ``layout.typ.j2`` for the page, ``LOCALE/_*.typ.j2`` parts shared by the
kinds of a locale, and ``LOCALE/KIND.typ.j2`` for each letter. Every ``{{ value }}`` is placed in the
markup as a typst string literal by the environment's ``finalize`` hook, so a customer called ``*#[x]``
prints as ``*#[x]``; the one value that is typst code (the QR code's SVG inside a string literal) goes
through ``typst_str``. Undefined names raise (``StrictUndefined``), and ``TemplateSet`` checks every
template against its kind's fields when it loads it, so a misspelt field fails before any letter is
printed.

PDF: ``letters.typeset`` (its functions are named here too): typst, with the Noto CJK fonts of the
distribution (Debian ``fonts-noto-cjk``); the document date is the letter date, so the same data gives the
same bytes. A letter to store is made by ``compile_letters``: many letters compiled as one typst document
and cut apart (``letters.pdfparts``), each the same bytes as when compiled alone.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta, nodes

from duecourse.letters import TemplateError
from duecourse.letters.kinds import COMMON_FIELDS, KINDS, LOCALE_OF, Schema, schema_for
from duecourse.letters.typeset import (
    FONT_DIRS,
    compile_letters,
    compile_pdf,
    compiler,
    fonts_available,
    letters_markup,
    page_count,
    single_threaded,
)

# The PDF functions of ``letters.typeset`` are named here too, where they were before.
__all__ = [
    "FONT_DIRS",
    "FieldProblem",
    "LAYOUT",
    "Raw",
    "SHIPPED",
    "TemplateSet",
    "check_fields",
    "compile_letters",
    "compile_pdf",
    "compiler",
    "data_json",
    "fonts_available",
    "letters_markup",
    "load_templates",
    "page_count",
    "single_threaded",
    "typst_escape",
    "typst_str",
]

SHIPPED = Path(__file__).resolve().parent / "templates"
LAYOUT = "layout.typ.j2"
_SPACES = re.compile(r"[ \t\r\n\v\f]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Raw(str):
    """Text that is already typst code, placed as it is."""


def typst_escape(value: object) -> str:
    """Text placed in typst markup as it is: a string literal (``#"...";``), so no character of it is
    markup, control characters dropped, line breaks and runs of white space made one space (as markup
    reads them). Being one expression whatever the text, every letter of a template has the same syntax
    tree, so typst reuses one letter's layout for the next where their text is the same
    (``compile_letters``); escaping each punctuation mark would make the tree differ from letter to
    letter."""
    if isinstance(value, Raw):
        return value
    text = "" if value is None else str(value)
    # Printable text has no control character and no white space but the space: only runs of spaces to
    # make one (most values have neither, and skip both substitutions).
    if not text.isprintable() or "  " in text:
        text = _CONTROL.sub("", _SPACES.sub(" ", text))
    core = text.strip(" ")
    # White space at either end stays markup, so that it merges with the template's as markup spaces do.
    before, after = " " * (text[:1] == " " and bool(core)), " " * (text[-1:] == " ")
    return before + '#"' + core.replace("\\", "\\\\").replace('"', '\\"') + '";' + after


def typst_str(value: object) -> Raw:
    """Text as the inside of a typst string literal ("..."), for code such as ``image(bytes("..."))``."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "")
    return Raw(text)


# ---------------------------------------------------------------- the field check


@dataclass(frozen=True, slots=True)
class FieldProblem:
    template: str
    line: int
    message: str


def _lookup(schema: Any, path: list[str]) -> tuple[bool, Any]:
    """Follow ``path`` in ``schema``: (found, the schema at the end)."""
    node = schema
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit():
            node = node[0]
        else:
            return False, None
    return True, node


def _chain(node: nodes.Node) -> tuple[nodes.Name, list[str]] | None:
    """``a.b.c`` / ``a["b"]`` as (the Name node, ["b", "c"]); None when it is not such a chain."""
    parts: list[str] = []
    while True:
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
            node = node.node
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            parts.append(str(node.arg.value))
            node = node.node
        elif isinstance(node, nodes.Name):
            return node, parts[::-1]
        else:
            return None


# Names Jinja provides itself inside templates.
_BUILTIN_NAMES = frozenset({"loop", "range", "lipsum", "dict", "cycler", "joiner", "namespace", "super"})


def check_fields(source: str, name: str, schema: Schema, env: jinja2.Environment) -> list[FieldProblem]:
    """Every field a template refers to must be in ``schema``; loop variables take their list's items."""
    try:
        tree = env.parse(source, name=name)
    except jinja2.TemplateSyntaxError as exc:
        return [FieldProblem(name, exc.lineno, f"template syntax: {exc.message}")]
    problems: list[FieldProblem] = []
    for unknown in sorted(meta.find_undeclared_variables(tree) - set(schema) - _BUILTIN_NAMES):
        line = next((n.lineno for n in tree.find_all(nodes.Name) if n.name == unknown), 1)
        problems.append(FieldProblem(name, line, f"unknown field '{unknown}'"))
    scopes: dict[str, Any] = {}
    for loop in tree.find_all(nodes.For):
        found = _chain(loop.iter)
        if found is None or not isinstance(loop.target, nodes.Name):
            continue
        root, path = found
        if root.name in scopes:
            ok, item = _lookup(scopes[root.name], path)
        else:
            ok, item = _lookup(schema, [root.name, *path])
        if ok and isinstance(item, list):
            scopes[loop.target.name] = item[0]
    for getter in _outermost_chains(tree):
        found = _chain(getter)
        if found is None:
            continue
        root, path = found
        if root.name in scopes:
            ok, _ = _lookup(scopes[root.name], path)
        elif root.name in schema:
            ok, _ = _lookup(schema, [root.name, *path])
        else:
            continue
        if not ok:
            dotted = ".".join([root.name, *path])
            problems.append(FieldProblem(name, getter.lineno, f"unknown field '{dotted}'"))
    return problems


def _outermost_chains(tree: nodes.Node) -> Iterator[nodes.Node]:
    """Each ``a.b.c`` once, as its outermost node (not ``a.b`` again inside it)."""
    inner: set[int] = set()
    chains = list(tree.find_all((nodes.Getattr, nodes.Getitem)))
    for node in chains:
        child = node.node  # type: ignore[attr-defined]
        if isinstance(child, nodes.Getattr | nodes.Getitem):
            inner.add(id(child))
    for node in chains:
        if id(node) not in inner:
            yield node


# ---------------------------------------------------------------- templates


def _environment(directories: tuple[Path, ...]) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in directories]),
        undefined=jinja2.StrictUndefined,
        finalize=typst_escape,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["typst_str"] = typst_str
    return env


@dataclass(frozen=True)
class TemplateSet:
    """The templates of every kind and locale, checked at load.

    Attributes:
        directories: where templates are looked up, the first first (a reviewed directory, then shipped).
        env: the Jinja2 environment.
        problems: what the field check found; ``load_templates`` refuses a set with problems.
    """

    directories: tuple[Path, ...]
    env: jinja2.Environment
    problems: tuple[FieldProblem, ...]
    # Versions are computed once per set: the set is loaded once and its files are not edited under it.
    _versions: dict[tuple[str, str], str] = field(default_factory=dict, repr=False, compare=False)

    def template_name(self, kind: str, locale: str) -> str:
        return f"{locale}/{kind}.typ.j2"

    def source_path(self, name: str) -> Path:
        """The file a template name comes from (the reviewed directory first)."""
        for directory in self.directories:
            path = directory / name
            if path.exists():
                return path
        raise TemplateError(f"no template {name}")

    def has(self, kind: str, locale: str) -> bool:
        return any((d / self.template_name(kind, locale)).exists() for d in self.directories)

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

    def version(self, kind: str, locale: str) -> str:
        """The template version: sha256 over the sources of the template and every part it uses."""
        key = (kind, locale)
        if key not in self._versions:
            self._versions[key] = self._version(kind, locale)
        return self._versions[key]

    def _version(self, kind: str, locale: str) -> str:
        digest = hashlib.sha256()
        for part in sorted(self.parts_of(self.template_name(kind, locale))):
            digest.update(part.encode())
            digest.update(b"\0")
            digest.update(self.source_path(part).read_bytes())
            digest.update(b"\0")
        return digest.hexdigest()[:16]

    def markup(self, data: Mapping[str, Any]) -> str:
        """The typst source of a letter."""
        name = self.template_name(str(data["kind"]), str(data["locale"]))
        try:
            return self.env.get_template(name).render(**data)
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(f"no template {exc.name} for {data['kind']} in {data['locale']}") from None
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"{name}: {exc.message}") from exc


def load_templates(directory: Path | None = None, *, strict: bool = True) -> TemplateSet:
    """The template set (``directory`` in front of the shipped templates), every template field-checked."""
    directories = (directory, SHIPPED) if directory is not None else (SHIPPED,)
    env = _environment(tuple(d for d in directories if d is not None))
    problems: list[FieldProblem] = []
    seen: set[str] = set()
    for base in directories:
        if base is None or not base.is_dir():
            continue
        for path in sorted(base.rglob("*.typ.j2")):
            name = path.relative_to(base).as_posix()
            if name in seen:
                continue  # the reviewed directory's file hides the shipped one of the same name
            seen.add(name)
            stem = path.name.removesuffix(".typ.j2")
            locale = path.parent.name
            if stem in KINDS and locale in LOCALE_OF.values():
                schema = schema_for(KINDS[stem])
            elif name == LAYOUT or (stem.startswith("_") and locale in LOCALE_OF.values()):
                schema = COMMON_FIELDS  # shared by every kind: only the fields every kind has
            else:
                problems.append(FieldProblem(name, 1, "not a known kind or part (LOCALE/KIND.typ.j2)"))
                continue
            problems += check_fields(path.read_text(encoding="utf-8"), name, schema, env)
    result = TemplateSet(tuple(d for d in directories if d is not None), env, tuple(problems))
    if strict and problems:
        raise TemplateError(
            "templates refer to fields their letters do not have:\n"
            + "\n".join(f"{p.template}:{p.line}: {p.message}" for p in problems)
        )
    return result


def data_json(data: Mapping[str, Any]) -> str:
    """The data snapshot as stored: sorted keys, so the same data is the same text."""
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
