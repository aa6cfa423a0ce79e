"""Post: letters handed to a print shop as a file drop, and the letters the postal service sends back.

A letter is "sent" when the print shop has it, and the shop picks up a folder only when its ``READY``
marker exists. So sending stages the PDF on disk (a crash after the outbox marks a letter sent must not
lose it), and :meth:`PrintDrop.close_batch` turns everything staged into one folder::

    {directory}/{batch_id}/00001-{reference}.pdf ...   one PDF per letter, sorted by postal code (postage
                          manifest.csv                 is cheaper presorted), then reference
                          print.pdf                    with ``print_file``: a cover sheet (the batch, its
                                                       letters and pages, not posted), then every letter
                                                       in the same order, as one print-ready file
                          SHA256SUMS                   ``sha256sum -c`` checks every PDF and the manifest
                          READY                        written last; the shop takes the folder from here

Every file is written to a temporary name, fsynced and renamed, the folder likewise, so the shop never sees
half a file. A batch once written is never changed: closing the same batch id again with the same letters
writes nothing new, with other letters it raises :class:`BatchConflict`.

Errors::

    DuecourseError
    └── DropError          nothing staged, a bad batch id or reference, a PDF whose sha256 is not the
        └── BatchConflict  one its letter was stored under, a batch id already used for other letters

:class:`PostTransport` translates them for the dispatcher: DropError → PermanentError, OSError (a full
disk, a missing mount) → TransientError.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from duecourse.channels.base import (
    DeliveryEvent,
    Outgoing,
    PermanentError,
    Receipt,
    TransientError,
    reference_for,
)
from duecourse.domain.errors import DuecourseError, Problem, ProblemsError

MANIFEST = "manifest.csv"
PRINT_FILE = "print.pdf"
SUMS = "SHA256SUMS"
READY = "READY"
MANIFEST_COLUMNS = ("sequence", "reference", "postal_code", "pages", "sha256", "file")
_STAGING = ".staging"
# A name that is safe as a path component everywhere and cannot be mistaken for a hidden or temp name.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class DropError(DuecourseError):
    """A print drop cannot do what was asked; the message says what to fix."""


class BatchConflict(DropError):
    """The batch id is taken by a batch with other letters: the shop may have printed it already."""


@dataclass(frozen=True, slots=True)
class DropEntry:
    """One letter in a closed batch, as listed in its manifest."""

    sequence: int
    reference: str
    postal_code: str
    pages: int | None
    sha256: str
    file: str


@dataclass(frozen=True, slots=True)
class DropResult:
    """A closed batch.

    Attributes:
        folder: ``{directory}/{batch_id}``.
        entries: the letters in print order.
        new: False when the batch had been written before (a re-run).
        note: why the batch has no print file although one was asked for ("" otherwise).
    """

    batch_id: str
    folder: Path
    entries: tuple[DropEntry, ...]
    new: bool
    note: str = ""


@dataclass(frozen=True, slots=True)
class _Staged:
    reference: str
    postal_code: str
    pages: int | None
    sha256: str
    pdf: bytes


def _write_atomic(path: Path, data: bytes) -> None:
    """``data`` at ``path`` or nothing there: written to a temporary name, fsynced, renamed, dir fsynced."""
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    temporary.replace(path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX: the directory entry is data of the directory)."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_name(kind: str, value: str) -> str:
    if not _SAFE_NAME.match(value):
        raise DropError(
            f"{kind} {value!r} must be 1-100 letters, digits, '.', '_' or '-', not starting with '.'"
        )
    return value


class PrintDrop:
    """Stages letters in ``{directory}/.staging`` and closes them into print-shop batch folders."""

    def __init__(self, directory: Path, *, print_file: bool = False) -> None:
        self.directory = directory
        self.print_file = print_file
        self._staging = directory / _STAGING

    def add(self, item: Outgoing) -> str:
        """Stage a letter (PDF in ``content``; ``meta``: ``reference``, ``postal_code``, ``letter_sha256``,
        optional ``pages``); its reference. Staging the same letter again changes nothing.

        Raises:
            DropError: the content is not a PDF or not the one stored (sha256 differs), or the reference
                is staged already with another PDF.
        """
        reference = _check_name("reference", item.meta.get("reference") or reference_for(item.key))
        if not item.content.startswith(b"%PDF-"):
            raise DropError(f"letter {reference}: content is not a PDF")
        sha256 = _sha256(item.content)
        stored = item.meta.get("letter_sha256")
        if stored is not None and stored.lower() != sha256:
            raise DropError(f"letter {reference}: PDF sha256 {sha256} is not the stored letter's {stored}")
        pages = item.meta.get("pages", "")
        record = {
            "reference": reference,
            "postal_code": item.meta.get("postal_code", ""),
            "pages": int(pages) if pages.isdigit() else None,
            "sha256": sha256,
        }
        meta_path = self._staging / f"{reference}.json"
        if meta_path.exists():
            before = json.loads(meta_path.read_text(encoding="utf-8"))
            if before == record:
                return reference
            raise DropError(f"letter {reference} is staged already with another PDF or address")
        self._staging.mkdir(parents=True, exist_ok=True)
        # The PDF first, the record last: a letter is staged once its record exists, never half.
        _write_atomic(self._staging / f"{reference}.pdf", item.content)
        _write_atomic(meta_path, json.dumps(record, sort_keys=True).encode())
        return reference

    def closed(self) -> list[tuple[str, tuple[DropEntry, ...]]]:
        """The batches the shop may take (READY written), by id, with their letters from the manifest."""
        if not self.directory.is_dir():
            return []
        return [
            (folder.name, _entries_of({MANIFEST: (folder / MANIFEST).read_bytes()}))
            for folder in sorted(self.directory.iterdir())
            if folder.is_dir() and not folder.name.startswith(".") and (folder / READY).exists()
        ]

    def pending(self) -> tuple[str, ...]:
        """References staged and not yet in a batch."""
        return tuple(sorted(staged.reference for staged in self._staged()))

    def _staged(self) -> Iterator[_Staged]:
        if not self._staging.is_dir():
            return
        for meta_path in sorted(self._staging.glob("*.json")):
            record = json.loads(meta_path.read_text(encoding="utf-8"))
            pdf = (self._staging / f"{record['reference']}.pdf").read_bytes()
            if _sha256(pdf) != record["sha256"]:
                raise DropError(f"staged letter {record['reference']}: the PDF on disk has changed")
            yield _Staged(record["reference"], record["postal_code"], record["pages"], record["sha256"], pdf)

    def close_batch(self, batch_id: str) -> DropResult:
        """Write everything staged as batch ``batch_id`` and empty the staging area; READY comes last.

        First finishes any batch a crash left without READY, so its letters are neither lost nor put in a
        second batch.

        Raises:
            DropError: nothing is staged and no such batch exists, or a batch without READY does not
                match its SHA256SUMS (someone must look at it).
            BatchConflict: the batch exists with other letters.
        """
        _check_name("batch id", batch_id)
        self._recover()
        staged = sorted(self._staged(), key=lambda s: (s.postal_code, s.reference))
        folder = self.directory / batch_id
        if folder.exists():
            existing = _read_folder(folder)
            # the same letters in the same order: the same manifest (each letter's sha256), whatever the
            # print file setting was then
            if staged and existing.get(MANIFEST) != _manifest(_entries(staged)):
                raise BatchConflict(
                    f"batch {batch_id} already exists in {self.directory} with other letters; "
                    "close the staged letters under a new batch id"
                )
            self._finish(folder, existing)
            return DropResult(batch_id, folder, _entries_of(existing), new=False)
        if not staged:
            raise DropError(f"no letters staged in {self.directory}: nothing to close as batch {batch_id}")
        files, entries, note = _batch_files(staged, batch_id if self.print_file else None)
        partial = self.directory / f".{batch_id}.partial"
        if partial.exists():
            shutil.rmtree(partial)  # left by a crash before the rename: never seen by the shop
        partial.mkdir(parents=True)
        for name, data in files.items():
            _write_atomic(partial / name, data)
        partial.rename(folder)
        _fsync_dir(self.directory)
        self._finish(folder, files)
        return DropResult(batch_id, folder, entries, new=True, note=note)

    def _recover(self) -> None:
        """Finish every batch folder that has a manifest and no READY (a crash after its rename)."""
        if not self.directory.is_dir():
            return
        for folder in sorted(self.directory.iterdir()):
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            if (folder / MANIFEST).exists() and not (folder / READY).exists():
                self._finish(folder, _read_folder(folder))

    def _finish(self, folder: Path, files: Mapping[str, bytes]) -> None:
        """Unstage the batch's letters, then mark it READY once its files match its SHA256SUMS.

        Unstaging first: after a crash between the two, :meth:`_recover` writes READY; the other order
        could leave letters staged that a later batch would print a second time.
        """
        if not (folder / READY).exists():
            _check_sums(folder, files)
        for entry in _entries_of(files):
            (self._staging / f"{entry.reference}.json").unlink(missing_ok=True)
            (self._staging / f"{entry.reference}.pdf").unlink(missing_ok=True)
        if not (folder / READY).exists():
            _write_atomic(folder / READY, _ready_text(files))


def _check_sums(folder: Path, files: Mapping[str, bytes]) -> None:
    """Every file listed in SHA256SUMS with its hash, and nothing else (what ``sha256sum -c`` checks)."""
    listed = {}
    for line in files.get(SUMS, b"").decode(errors="replace").splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    actual = {name: _sha256(data) for name, data in files.items() if name != SUMS}
    if SUMS not in files or MANIFEST not in files or listed != actual:
        raise DropError(f"batch folder {folder} does not match its {SUMS}; check it before the shop takes it")


def _entries(staged: list[_Staged]) -> tuple[DropEntry, ...]:
    """The manifest's entries of ``staged`` (already in print order)."""
    return tuple(
        DropEntry(n, s.reference, s.postal_code, s.pages, s.sha256, f"{n:05d}-{s.reference}.pdf")
        for n, s in enumerate(staged, 1)
    )


def _manifest(entries: tuple[DropEntry, ...]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    for e in entries:
        writer.writerow(
            [e.sequence, e.reference, e.postal_code, "" if e.pages is None else e.pages, e.sha256, e.file]
        )
    return text.getvalue().encode()


def _batch_files(
    staged: list[_Staged], print_file_of: str | None = None
) -> tuple[dict[str, bytes], tuple[DropEntry, ...], str]:
    """The files of a batch of ``staged`` (already in print order), its entries, and why it has no print
    file when one was asked for: with ``print_file_of`` (the batch id), the print file of the batch too,
    unless a letter cannot be joined. The print file is a convenience for the shop; the letters never wait
    for it: the batch closes with each letter as its own file, and the reason is given (and logged)."""
    entries = _entries(staged)
    files: dict[str, bytes] = {e.file: letter.pdf for e, letter in zip(entries, staged, strict=True)}
    files[MANIFEST] = _manifest(entries)
    note = ""
    if print_file_of is not None:
        try:
            files[PRINT_FILE] = _print_file(print_file_of, entries, [letter.pdf for letter in staged])
        except DropError as error:
            note = f"{error}; the batch is closed without it, each letter in its own file"
    # GNU coreutils text format: hash, two spaces, name; one line per file, the manifest included.
    files[SUMS] = "".join(f"{_sha256(data)}  {name}\n" for name, data in files.items()).encode()
    return files, entries, note


def _print_file(batch_id: str, entries: tuple[DropEntry, ...], pdfs: list[bytes]) -> bytes:
    """The cover sheet, then every letter in order, joined into one PDF (``letters.pdfparts.Merger``, as
    ``duecourse letters batch`` joins its batches): the same letters give the same bytes."""
    from duecourse.letters import pdfparts
    from duecourse.letters.typeset import compile_pdf

    made = re.match(r"(\d{4})-?(\d{2})-?(\d{2})", batch_id)
    try:
        day = dt.date(*(int(part) for part in made.groups())) if made else dt.date(1970, 1, 1)
    except ValueError:
        day = dt.date(1970, 1, 1)
    cover = compile_pdf(_cover_markup(batch_id, entries), day)
    body, out = io.BytesIO(), io.BytesIO()
    merger = pdfparts.Merger(body)
    merger.add(cover)  # typst's own PDF, as every letter is
    for entry, pdf in zip(entries, pdfs, strict=True):
        try:
            merger.add(pdf)
        except pdfparts.Unsupported as exc:
            message = f"letter {entry.reference} cannot be joined into {PRINT_FILE}: {exc}"
            raise DropError(message) from exc
    merger.finish(out)
    return out.getvalue()


def _cover_markup(batch_id: str, entries: tuple[DropEntry, ...]) -> str:
    from duecourse.letters.render import typst_escape

    known = [e.pages for e in entries if e.pages is not None]
    pages = f"{sum(known)}" + ("" if len(known) == len(entries) else f" (of {len(known)} letters known)")
    first, last = entries[0].postal_code or "-", entries[-1].postal_code or "-"
    return f"""#set page(paper: "a4", margin: 25mm)
#set text(font: ("Noto Sans CJK SC",), size: 11pt)
= Print batch {typst_escape(batch_id)}
#v(4mm)
Letters: {len(entries)} #h(1fr) Pages (letters only): {pages}
#v(2mm)
Sorted by postal code, from {typst_escape(first)} to {typst_escape(last)}.
#v(4mm)
The letters follow this sheet in the order of {MANIFEST}, which lists each with its reference, postal code,
pages and sha256; each is also in the folder as its own file. This sheet is not posted.
"""


def _ready_text(files: Mapping[str, bytes]) -> bytes:
    letters = len(_entries_of(files))
    return f"letters: {letters}\nsha256 of {SUMS}: {_sha256(files[SUMS])}\n".encode()


def _read_folder(folder: Path) -> dict[str, bytes]:
    """A batch folder's files other than READY, as written (so two batches compare byte for byte)."""
    names = sorted(
        p.name for p in folder.iterdir() if p.is_file() and p.name != READY and not p.name.startswith(".")
    )
    return {name: (folder / name).read_bytes() for name in names}


def _entries_of(files: Mapping[str, bytes]) -> tuple[DropEntry, ...]:
    rows = csv.DictReader(io.StringIO(files[MANIFEST].decode()))
    return tuple(
        DropEntry(
            int(row["sequence"]),
            row["reference"],
            row["postal_code"],
            int(row["pages"]) if row["pages"] else None,
            row["sha256"],
            row["file"],
        )
        for row in rows
    )


class PostTransport:
    """Stages each letter in a print drop; the lead's run closes the batch.

    The receipt's id is the letter's reference: it is known when the letter is staged, it is printed on
    the letter and in the file name, and postal returns quote it. The batch and sequence are known only
    when the batch closes (the sequence follows postal codes), from :class:`DropResult`.
    """

    channel = "letter"

    def __init__(self, drop: PrintDrop) -> None:
        self.drop = drop

    def send(self, item: Outgoing) -> Receipt:
        """Stage the letter for the next batch."""
        try:
            reference = self.drop.add(item)
        except DropError as exc:
            raise PermanentError(str(exc)) from exc
        except OSError as exc:
            raise TransientError(f"cannot stage letter in {self.drop.directory}: {exc}") from exc
        return Receipt(reference, f"staged in {self.drop.directory} for the next print batch")

    def close(self) -> None:
        """Nothing to close: staged letters wait on disk for ``close_batch``."""


# ------------------------------------------------------------------------------------------ returns

RETURNS_COLUMNS = ("reference", "returned_on", "reason")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def parse_returns(path: Path) -> list[DeliveryEvent]:
    """The letters a returns file lists (``reference,returned_on,reason``) as ``bounced`` events: the
    address is bad whatever the reason. ``at`` is midnight UTC of ``returned_on``.

    Every problem in the file is raised at once, at ``FILE:ROW:COLUMN`` (the header is row 1; COLUMN is
    the column's name); blank lines are skipped.

    Raises:
        ProblemsError: the file is missing, not UTF-8, has another header, or rows with problems.
    """
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ProblemsError([Problem("returns.missing", "no such file", source)]) from None
    except UnicodeDecodeError as exc:
        raise ProblemsError([Problem("returns.not_utf8", f"not UTF-8: {exc.reason}", source)]) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise ProblemsError([Problem("returns.empty", "empty file; expected a header", source)])
    header = [name.strip() for name in header]
    problems = _header_problems(header, source)
    if problems:
        raise ProblemsError(problems)
    events: list[DeliveryEvent] = []
    row_number = reader.line_num + 1
    for cells in reader:
        row, row_number = row_number, reader.line_num + 1
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) > len(header):
            problems.append(
                Problem(
                    "returns.extra_cells",
                    f"{len(cells)} cells; the header has {len(header)}",
                    f"{source}:{row}",
                )
            )
            continue
        values = dict(
            zip(header, [c.strip() for c in cells] + [""] * (len(header) - len(cells)), strict=True)
        )
        found = _row_problems(values, f"{source}:{row}")
        if found:
            problems.extend(found)
            continue
        on = dt.date.fromisoformat(values["returned_on"])
        events.append(
            DeliveryEvent(
                channel="letter",
                outcome="bounced",
                provider_id=values["reference"],
                at=dt.datetime.combine(on, dt.time(), tzinfo=dt.UTC),
                reason=values["reason"],
            )
        )
    if problems:
        raise ProblemsError(problems)
    return events


def _header_problems(header: list[str], source: str) -> list[Problem]:
    problems = [
        Problem("returns.missing_column", f"missing column {name!r}", f"{source}:1:{name}")
        for name in RETURNS_COLUMNS
        if name not in header
    ]
    seen: set[str] = set()
    for name in header:
        if name in seen:
            problems.append(
                Problem("returns.repeated_column", f"column {name!r} repeated", f"{source}:1:{name}")
            )
        elif name not in RETURNS_COLUMNS:
            problems.append(
                Problem(
                    "returns.unexpected_column",
                    f"unexpected column {name!r}; expected {', '.join(RETURNS_COLUMNS)}",
                    f"{source}:1:{name}",
                )
            )
        seen.add(name)
    return problems


def _row_problems(values: Mapping[str, str], where: str) -> list[Problem]:
    problems: list[Problem] = []
    reference = values["reference"]
    if not reference:
        problems.append(Problem("returns.missing_reference", "reference is empty", f"{where}:reference"))
    elif not _SAFE_NAME.match(reference):
        problems.append(
            Problem("returns.bad_reference", f"{reference!r} is not a letter reference", f"{where}:reference")
        )
    returned_on = values["returned_on"]
    try:
        if not _DATE.match(returned_on):
            raise ValueError
        dt.date.fromisoformat(returned_on)
    except ValueError:
        problems.append(
            Problem("returns.bad_date", f"{returned_on!r} is not a date (YYYY-MM-DD)", f"{where}:returned_on")
        )
    if not values["reason"]:
        problems.append(Problem("returns.missing_reason", "reason is empty", f"{where}:reason"))
    return problems
