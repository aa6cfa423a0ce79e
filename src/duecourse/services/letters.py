"""The letter use cases: render one letter for an account, lint the templates, make a print batch.

A letter for one account is computed as ``explain`` computes it: the account's records, the readable
specification's snapshot as of the letter date, then the letter data (``letters.data``), the templates and
typst. Every rendered letter is stored once, by the sha256 of its PDF, with its data and the version of
its templates (``store/letters.py``).
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import hashlib
import io
import json
import multiprocessing
import os
import secrets
import tempfile
from collections import Counter, deque
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Engine, select

from duecourse.bootstrap import App
from duecourse.config import Config
from duecourse.domain import delinquency
from duecourse.domain.errors import Problem, ProblemsError
from duecourse.domain.model import Account, Customer, Due, Payment
from duecourse.letters import LetterError, pdfparts
from duecourse.letters.data import LetterInputs, letter_data
from duecourse.letters.kinds import LOCALE_OF, kind_named
from duecourse.letters.render import TemplateSet, data_json, load_templates, typst_escape
from duecourse.letters.token import portal_secret
from duecourse.letters.typeset import compile_letters, compile_pdf, page_count, single_threaded
from duecourse.services import portfolio, time_barred
from duecourse.store import letters as store
from duecourse.store import repo
from duecourse.store.frames import read_frame

BATCH_KIND = "overdue_reminder"
# Below this many letters a batch renders in this process: starting worker processes costs more.
PARALLEL_FROM = 200
# Letters per typst document: the fonts are embedded once per document, and the layout of a letter is
# remembered from the letter in the same place of the previous document (docs/letters.md).
CHUNK = 50


@dataclass(frozen=True)
class RenderedLetter:
    """A rendered letter: its PDF, what it was made from, and whether it was newly stored."""

    stored: store.StoredLetter
    data: dict[str, Any]
    added: bool
    dev_secret: bool


@functools.cache
def shipped_templates() -> TemplateSet:
    """The shipped templates, loaded and field-checked once per process."""
    return load_templates()


def templates_from(directory: Path | None) -> TemplateSet:
    return shipped_templates() if directory is None else load_templates(directory)


def _snapshot(
    app: App,
    account: Account,
    customer: Customer,
    dues: list[Due],
    payments: list[Payment],
    as_of: dt.date,
    on_hold: bool,
) -> delinquency.AccountSnapshot:
    terms = app.config.terms
    product = terms.products[account.product_code]
    return delinquency.snapshot(
        account.account_id,
        product,
        terms.bucket_sets[product.bucket_set],
        terms.stages,
        dues,
        payments,
        as_of,
        on_hold=on_hold,
        segments=terms.segments,
        jurisdiction=customer.jurisdiction,
    )


def build_data(
    app: App,
    account: Account,
    customer: Customer,
    dues: list[Due],
    payments: list[Payment],
    kind: str,
    letter_date: dt.date,
    *,
    locale: str | None = None,
    inputs: LetterInputs | None = None,
    on_hold: bool = False,
) -> dict[str, Any]:
    """The letter data for an account's records as of the letter date."""
    issuer = app.config.issuers.get(customer.jurisdiction)
    if issuer is None:
        raise LetterError(
            f"no [issuer.{customer.jurisdiction}] in the configuration: letters to customers in "
            f"{customer.jurisdiction} need the issuer's name, address and ways to pay "
            "(see `duecourse config example`)"
        )
    snap = _snapshot(app, account, customer, dues, payments, letter_date, on_hold)
    locale = locale or customer.locale or LOCALE_OF[customer.jurisdiction]
    # US-TBD-01: the disclosure its state or city requires once the debt is time-barred; refused
    # (DisclosureUnknown) where that cannot be known.
    notice = time_barred.notice_of(
        app.config, account, customer, snap.oldest_unpaid_due_date, payments, letter_date, locale
    )
    itemization = None
    if kind == "us_validation_notice" and snap.oldest_unpaid_due_date is not None:
        itemization = _snapshot(app, account, customer, dues, payments, snap.oldest_unpaid_due_date, on_hold)
    return letter_data(
        kind_name=kind,
        locale=locale,
        customer=customer,
        account=account,
        product=app.config.terms.products[account.product_code],
        snap=snap,
        dues=dues,
        payments=payments,
        issuer=issuer,
        settings=app.config.letters,
        letter_date=letter_date,
        inputs=inputs,
        itemization=itemization,
        disclosure=notice.carried(),
    )


def render_data(
    data: dict[str, Any], templates: TemplateSet, letter_date: dt.date, account_id: str, customer_id: str
) -> store.StoredLetter:
    """Render letter data to a PDF (not stored)."""
    pdf = compile_letters([templates.markup(data)], letter_date)[0]
    return _stored(data, templates, letter_date, account_id, customer_id, pdf)


def _stored(
    data: dict[str, Any],
    templates: TemplateSet,
    letter_date: dt.date,
    account_id: str,
    customer_id: str,
    pdf: bytes,
) -> store.StoredLetter:
    return _stored_as(
        pdf,
        data_json(data),
        templates,
        letter_date,
        account_id,
        customer_id,
        reference=str(data["reference"]),
        kind=str(data["kind"]),
        locale=str(data["locale"]),
    )


def _stored_as(
    pdf: bytes,
    data: str,
    templates: TemplateSet,
    letter_date: dt.date,
    account_id: str,
    customer_id: str,
    *,
    reference: str,
    kind: str,
    locale: str,
) -> store.StoredLetter:
    """The stored letter of a PDF made from ``data`` (the data as stored: ``data_json``)."""
    return store.StoredLetter(
        sha256=hashlib.sha256(pdf).hexdigest(),
        reference=reference,
        account_id=account_id,
        customer_id=customer_id,
        kind=kind,
        locale=locale,
        letter_date=letter_date,
        template_version=templates.version(kind, locale),
        pages=page_count(pdf),
        data_json=data,
        pdf=pdf,
    )


def render_letter(
    app: App,
    account_id: str,
    kind: str,
    as_of: dt.date,
    *,
    locale: str | None = None,
    inputs: LetterInputs | None = None,
    templates: Path | None = None,
) -> RenderedLetter:
    """Render one letter for an account as of a date, store it once, and return it."""
    kind_named(kind)
    account, customer, dues, payments = portfolio._records(app, account_id)  # the path explain uses
    if customer is None:
        raise LetterError(f"account {account_id} has no customer record: nobody to write to")
    held = repo.accounts_on_hold(app.engine, as_of)
    on_hold = bool(held.filter(pl.col("account_id") == account_id).height)
    data = build_data(
        app, account, customer, dues, payments, kind, as_of, locale=locale, inputs=inputs, on_hold=on_hold
    )
    stored = render_data(data, templates_from(templates), as_of, account_id, customer.customer_id)
    added = store.save_letter(app.engine, stored, dt.datetime.now(dt.UTC))
    return RenderedLetter(stored, data, added, portal_secret()[1])


def reproduce(stored: store.StoredLetter, templates: TemplateSet | None = None) -> bytes:
    """Render a stored letter again from its stored data; the same templates give the same bytes.

    The stored PDF is the letter as sent; this proves it came from its data, and refuses when the
    templates have changed since (their version differs), rather than show a letter that was never sent.
    """
    templates = templates or shipped_templates()
    version = templates.version(stored.kind, stored.locale)
    if version != stored.template_version:
        raise LetterError(
            f"the {stored.kind} {stored.locale} templates are at version {version}, the letter was made with "
            f"{stored.template_version}; show the stored PDF instead"
        )
    return compile_letters([templates.markup(json.loads(stored.data_json))], stored.letter_date)[0]


# ---------------------------------------------------------------- print batches
#
# A print batch holds only a small record of each letter in memory (its manifest row), never the letters:
# the letters' data are planned first (every problem reported before anything is rendered) and spilled to a
# temporary file, rendered a few typst documents at a time and stored WINDOW at a time, and the print file
# is joined from the store WINDOW letters at a time (``pdfparts.Merger``), so that a batch of 100,000
# letters needs the memory of a batch of a thousand. docs/letters.md has the figures.

# Letters read, stored or joined at a time.
WINDOW = 500


@dataclass(frozen=True)
class Batch:
    """A print batch: the files written and what is in them."""

    batch_date: dt.date
    pdf_path: Path
    manifest_path: Path
    letters: int
    pages: int
    by_kind: dict[str, int]
    new: bool
    note: str = ""  # a re-run whose print file could not be written byte for byte as the first time


@dataclass(frozen=True, slots=True)
class Entry:
    """A letter of a print batch as its manifest lists it (all the batch keeps of it in memory)."""

    account_id: str
    customer_id: str
    kind: str
    locale: str
    postal_code: str
    pages: int
    sha256: str


Job = tuple[dict[str, Any], dt.date, str, str]  # letter data, letter date, account, customer


def _chunks(keys: Sequence[tuple[Any, ...]]) -> list[list[int]]:
    """Positions in chunks of at most CHUNK letters that can share a typst document: the same key (date,
    kind, locale and jurisdiction: the document's date, title, author and language), in order."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for n, key in enumerate(keys):
        groups.setdefault(key, []).append(n)
    return [group[i : i + CHUNK] for group in groups.values() for i in range(0, len(group), CHUNK)]


def _job_key(data: dict[str, Any], letter_date: dt.date) -> tuple[Any, ...]:
    return (letter_date, data["kind"], data["locale"], data["jurisdiction"])


def _compiled(
    texts: Iterator[tuple[list[str], dt.date]], chunks: int, letters: int, workers: int
) -> Generator[list[bytes]]:
    """The PDFs of each chunk of letter markups, in order (``compile_letters``): in this process, or in
    worker processes (from PARALLEL_FROM letters) with a few chunks in flight, so that neither the
    markups nor the PDFs pile up."""
    if workers == 1 or letters < PARALLEL_FROM:
        for markups, day in texts:
            yield compile_letters(markups, day)
        return
    # spawn, not fork: the parent holds Polars' thread pool, which a forked child would inherit locked.
    # A worker runs ``typeset.compile_letters`` only, so it imports ``letters.typeset`` (typst and
    # pdfparts), not the service layer (whose imports cost seconds of CPU per process) nor Jinja2.
    context = multiprocessing.get_context("spawn")
    workers = min(workers, chunks)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=single_threaded) as pool:
        pending: deque[Future[list[bytes]]] = deque()
        try:
            for markups, day in texts:
                pending.append(pool.submit(compile_letters, markups, day))
                if len(pending) > 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        except BaseException:
            # A failure here or in the caller (which closes this generator): the chunks not started are
            # dropped, not compiled for nothing before the error is seen.
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def render_many(jobs: Sequence[Job], workers: int | None = None) -> list[store.StoredLetter]:
    """Render many letters, in the order given: CHUNK at a time per typst document (``compile_letters``),
    in worker processes when there are enough of them (PARALLEL_FROM)."""
    templates = shipped_templates()
    chunks = _chunks([_job_key(data, day) for data, day, _, _ in jobs])
    texts = (([templates.markup(jobs[n][0]) for n in chunk], jobs[chunk[0]][1]) for chunk in chunks)
    pdfs: list[bytes] = [b""] * len(jobs)
    with closing(_compiled(texts, len(chunks), len(jobs), workers or os.cpu_count() or 1)) as compiled:
        for chunk, chunk_pdfs in zip(chunks, compiled, strict=True):
            for n, pdf in zip(chunk, chunk_pdfs, strict=True):
                pdfs[n] = pdf
    return [
        _stored(data, templates, letter_date, account_id, customer_id, pdf)
        for (data, letter_date, account_id, customer_id), pdf in zip(jobs, pdfs, strict=True)
    ]


@dataclass(frozen=True, slots=True)
class _Planned:
    """A letter of a batch before it is rendered; its data wait in the batch's spill file."""

    sort_key: tuple[str, str]
    account_id: str
    customer_id: str
    postal_code: str
    reference: str
    kind: str
    locale: str
    jurisdiction: str
    at: int  # where its data are in the spill file, and how long
    size: int


class PlannedLetters:
    """The letters of a print batch, planned: their data (sorted-key JSON, about 4 KB a letter) in a
    temporary file, and a small record of each in memory. Close it (or use it as a context manager)."""

    def __init__(self, letter_date: dt.date) -> None:
        self.letter_date = letter_date
        self.items: list[_Planned] = []
        self._file = tempfile.TemporaryFile(prefix="duecourse-batch-")
        self._size = 0

    def __enter__(self) -> PlannedLetters:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def __len__(self) -> int:
        return len(self.items)

    def add(self, data: dict[str, Any], account_id: str, customer_id: str) -> None:
        text = data_json(data).encode()
        self._file.seek(self._size)
        self._file.write(text)
        postal_code = str(data["customer"]["postal_code"])
        self.items.append(
            _Planned(
                (postal_code, account_id),
                account_id,
                customer_id,
                postal_code,
                str(data["reference"]),
                str(data["kind"]),
                str(data["locale"]),
                str(data["jurisdiction"]),
                self._size,
                len(text),
            )
        )
        self._size += len(text)

    def text(self, item: _Planned) -> str:
        self._file.seek(item.at)
        return self._file.read(item.size).decode()

    def locales(self) -> list[str]:
        return sorted({item.locale for item in self.items})


def _plan(app: App, batch_date: dt.date) -> PlannedLetters:
    """The letters of the batch of a date, their data computed WINDOW accounts at a time; every account
    whose letter cannot be made is reported at once (ProblemsError) before anything is rendered."""
    account_ids = _planned(app, batch_date)
    held = set(repo.accounts_on_hold(app.engine, batch_date).get_column("account_id").to_list())
    account_ids = [a for a in account_ids if a not in held]
    problems: list[Problem] = []
    planned = PlannedLetters(batch_date)
    try:
        for start in range(0, len(account_ids), WINDOW):
            window = account_ids[start : start + WINDOW]
            records = records_for(app, window)
            for account_id in window:
                if account_id not in records:
                    continue
                account, customer, dues, payments = records[account_id]
                try:
                    data = build_data(app, account, customer, dues, payments, BATCH_KIND, batch_date)
                except LetterError as exc:
                    problems.append(Problem("letters.batch", str(exc), f"{account_id}/{batch_date}"))
                    continue
                if _is_zero(str(data["amounts"]["total"])):
                    continue  # nothing overdue any more: no reminder
                planned.add(data, account_id, customer.customer_id)
        if problems:
            raise ProblemsError(problems)
    except BaseException:
        planned.close()
        raise
    return planned


def render_batch(
    engine: Engine, planned: PlannedLetters, workers: int | None, now: dt.datetime
) -> list[Entry]:
    """Render the planned letters sorted by postal code and store them WINDOW at a time; the manifest's
    entries in order. A letter already stored (a batch interrupted and made again) is not stored twice."""
    templates = shipped_templates()
    items = sorted(planned.items, key=lambda item: item.sort_key)
    chunks = _chunks([(item.kind, item.locale, item.jurisdiction) for item in items])
    day = planned.letter_date
    texts = (([templates.markup(json.loads(planned.text(items[n]))) for n in chunk], day) for chunk in chunks)
    entries: list[Entry | None] = [None] * len(items)
    window: list[store.StoredLetter] = []
    with closing(_compiled(texts, len(chunks), len(items), workers or os.cpu_count() or 1)) as compiled:
        for chunk, pdfs in zip(chunks, compiled, strict=True):
            for n, pdf in zip(chunk, pdfs, strict=True):
                item = items[n]
                stored = _stored_as(
                    pdf,
                    planned.text(item),
                    templates,
                    day,
                    item.account_id,
                    item.customer_id,
                    reference=item.reference,
                    kind=item.kind,
                    locale=item.locale,
                )
                entry = (item.account_id, item.customer_id, item.kind, item.locale, item.postal_code)
                entries[n] = Entry(*entry, stored.pages, stored.sha256)
                window.append(stored)
            if len(window) >= WINDOW:
                store.save_letters(engine, window, now)
                window = []
    store.save_letters(engine, window, now)
    return [entry for entry in entries if entry is not None]


def _planned(app: App, batch_date: dt.date) -> list[str]:
    """The accounts that get a letter on the date: those whose stage was entered that day (until the
    strategy's letter actions exist), leaving out 'current'."""
    frame = read_frame(
        app.engine,
        "SELECT account_id, stage FROM stage_history WHERE entered_on = :d",
        {"d": batch_date},
    )
    return sorted(r["account_id"] for r in frame.iter_rows(named=True) if r["stage"] != "current")


def records_for(
    app: App, account_ids: list[str]
) -> dict[str, tuple[Account, Customer, list[Due], list[Payment]]]:
    """The records of the accounts of a batch, read in chunks of ids (not the whole portfolio)."""
    from duecourse.engine import schema
    from duecourse.store import tables

    parts: dict[str, list[pl.DataFrame]] = {"accounts": [], "customers": [], "dues": [], "payments": []}
    for start in range(0, len(account_ids), 500):
        chunk = account_ids[start : start + 500]
        accounts = read_frame(
            app.engine,
            select(tables.accounts).where(tables.accounts.c.account_id.in_(chunk)),
            None,
            schema.ACCOUNTS,
        )
        customer_ids = accounts.get_column("customer_id").unique().to_list()
        parts["accounts"].append(accounts)
        parts["customers"].append(
            read_frame(
                app.engine,
                select(tables.customers).where(tables.customers.c.customer_id.in_(customer_ids)),
                None,
                schema.CUSTOMERS,
            )
        )
        for name, table, frame_schema in (
            ("dues", tables.dues, schema.DUES),
            ("payments", tables.payments, schema.PAYMENTS),
        ):
            parts[name].append(
                read_frame(app.engine, select(table).where(table.c.account_id.in_(chunk)), None, frame_schema)
            )
    frames = {name: pl.concat(found) if found else pl.DataFrame() for name, found in parts.items()}
    if not account_ids:
        return {}
    customers = {r["customer_id"]: Customer(**r) for r in frames["customers"].iter_rows(named=True)}
    dues = frames["dues"].partition_by("account_id", as_dict=True)
    payments = frames["payments"].sort("paid_on", "payment_id").partition_by("account_id", as_dict=True)
    products = app.config.terms.products
    out = {}
    for r in frames["accounts"].iter_rows(named=True):
        account = Account(r["account_id"], r["customer_id"], r["product_code"], r["opened_on"])
        currency = products[account.product_code].currency
        key = (account.account_id,)
        due_frame, pay_frame = dues.get(key), payments.get(key)
        out[account.account_id] = (
            account,
            customers[account.customer_id],
            portfolio.due_records(due_frame, currency) if due_frame is not None else [],
            portfolio.payment_records(pay_frame, currency) if pay_frame is not None else [],
        )
    return out


MANIFEST_COLUMNS = ("sequence", "account", "customer", "kind", "locale", "postal_code", "pages", "sha256")


def stored_entries(engine: Engine, batch_date: dt.date) -> list[Entry]:
    """The manifest's entries of the batch of a date as stored, read WINDOW letters at a time."""
    entries: list[Entry] = []
    after = 0
    while rows := store.batch_listing(engine, batch_date, after, WINDOW):
        for sequence, sha, account, customer, kind, locale, pages, data in rows:
            postal_code = str(json.loads(data)["customer"]["postal_code"])
            entries.append(Entry(account, customer, kind, locale, postal_code, pages, sha))
            after = sequence
    return entries


def write_batch(
    engine: Engine, batch_date: dt.date, entries: Sequence[Entry], out: Path
) -> tuple[Path, Path, int, dict[str, int], str, str]:
    """Write the batch files from the stored letters: the print file (the cover sheet, then the letters,
    joined WINDOW at a time) and the manifest, each under a temporary name until complete. The files'
    paths, the pages, the letters by kind and locale, and the two files' sha256."""
    out.mkdir(parents=True, exist_ok=True)
    by_kind = dict(sorted(Counter(f"{e.kind} {e.locale}" for e in entries).items()))
    pages = sum(e.pages for e in entries)
    cover = compile_pdf(_cover_markup(batch_date, len(entries), by_kind, pages), batch_date)
    text = io.StringIO()
    writer_csv = csv.writer(text, lineterminator="\n")
    writer_csv.writerow(MANIFEST_COLUMNS)
    for n, e in enumerate(entries, 1):
        writer_csv.writerow(
            [n, e.account_id, e.customer_id, e.kind, e.locale, e.postal_code, e.pages, e.sha256]
        )
    manifest = text.getvalue().encode()
    pdf_path, manifest_path = out / f"batch-{batch_date}.pdf", out / f"batch-{batch_date}.csv"
    partials = [_partial(out, pdf_path.name), _partial(out, manifest_path.name)]
    try:
        sha = _join(engine, batch_date, cover, entries, partials[0])
        with partials[1].open("wb") as file:
            file.write(manifest)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        for partial in partials:
            partial.unlink(missing_ok=True)  # no half-written file is left behind
        raise
    # Both files are complete on disk before either takes its name.
    os.replace(partials[1], manifest_path)
    os.replace(partials[0], pdf_path)
    return pdf_path, manifest_path, pages, by_kind, sha, hashlib.sha256(manifest).hexdigest()


def _partial(out: Path, name: str) -> Path:
    """A new file beside ``name`` to write it under until it is complete (its own name: two batches written
    at once into one folder do not write into one file)."""
    path = out / f".{name}.{os.getpid()}-{secrets.token_hex(4)}.partial"
    path.touch(exist_ok=False)  # with the permissions of any new file (mkstemp's are the owner's only)
    return path


def _join(engine: Engine, batch_date: dt.date, cover: bytes, entries: Sequence[Entry], target: Path) -> str:
    """Write the print file to ``target``: the cover sheet, then the stored letters read and joined
    WINDOW at a time (the joined objects wait in a temporary file beside it); its sha256."""
    if not entries:
        target.write_bytes(cover)  # the cover sheet alone, as typst wrote it
        return hashlib.sha256(cover).hexdigest()
    with tempfile.TemporaryFile(dir=target.parent, prefix=".batch-body-") as body, target.open("wb") as file:
        merger = pdfparts.Merger(body)
        try:
            merger.add(cover)
            for start in range(0, len(entries), WINDOW):
                shas = [e.sha256 for e in entries[start : start + WINDOW]]
                pdfs = store.pdfs_of(engine, shas)
                for sha in shas:
                    if sha not in pdfs:
                        raise LetterError(f"the letter {sha} of the batch of {batch_date} is not stored")
                    merger.add(pdfs[sha])
        except pdfparts.Unsupported as exc:
            raise LetterError(f"cannot join the letters into one print file: {exc}") from exc
        digest = merger.finish(file)
        file.flush()
        os.fsync(file.fileno())
        return digest


def _cover_markup(batch_date: dt.date, letters: int, by_kind: dict[str, int], pages: int) -> str:
    rows = "\n".join(f"  [{typst_escape(kind)}], [{count}]," for kind, count in by_kind.items())
    return f"""#set page(paper: "a4", margin: 25mm)
#set text(font: ("Noto Sans CJK SC",), size: 11pt)
= Print batch {batch_date}
#v(4mm)
Letters: {letters} #h(1fr) Pages (letters only): {pages} #h(1fr) Sorted by postal code
#v(4mm)
#table(columns: (1fr, auto), [*kind and locale*], [*letters*],
{rows}
)
#v(4mm)
The manifest batch-{batch_date}.csv lists each letter in order with its sha256. This sheet is not posted.
"""


def letters_batch(app: App, batch_date: dt.date, out: Path, *, workers: int | None = None) -> Batch:
    """The print batch of a date: letters rendered and stored, one merged PDF sorted by postal code, the
    manifest CSV and a cover sheet. A re-run for the same date writes the same batch again from the store.
    Memory stays that of a few hundred letters whatever the batch's size (see the section's comment)."""
    printed = strategy_prints_reminders(app.config)
    if printed:
        raise ProblemsError(
            [
                Problem(
                    "letters.batch_strategy",
                    f"the strategy sends the {BATCH_KIND} by letter ({'; '.join(printed)}): those letters go "
                    "out through the outbox and the print drop of [channels.post], with its print file; a "
                    "batch of stage-entry reminders would post a second letter",
                    app.config.source,
                )
            ]
        )
    recorded = store.batch_sha256(app.engine, batch_date)
    if recorded is not None:
        entries = stored_entries(app.engine, batch_date)
        pdf_path, manifest, pages, by_kind, digest, _ = write_batch(app.engine, batch_date, entries, out)
        note = ""
        if digest != recorded:
            note = (
                f"the print file differs from the one first written for {batch_date} "
                f"(sha256 {recorded[:16]}… then, {digest[:16]}… now): the program that joins the letters "
                "changed since; the letters and the manifest are the same, byte for byte"
            )
        return Batch(batch_date, pdf_path, manifest, len(entries), pages, by_kind, False, note)
    now = dt.datetime.now(dt.UTC)
    entries = _rendered(app, batch_date, workers, now)
    pdf_path, manifest, pages, by_kind, sha, manifest_sha = write_batch(app.engine, batch_date, entries, out)
    store.save_batch(app.engine, batch_date, [e.sha256 for e in entries], pages, sha, manifest_sha, now)
    return Batch(batch_date, pdf_path, manifest, len(entries), pages, by_kind, True)


def strategy_prints_reminders(config: Config) -> list[str]:
    """The strategy's actions that post the batch's kind (by letter, or falling back to one): with any,
    those letters go through the outbox's print drop and ``letters_batch`` is refused."""
    return [
        f"stage {a.stage}, action {a.name}"
        for a in (*config.actions, *config.pre_due)
        if a.kind == BATCH_KIND and (a.channel == "letter" or "letter" in a.fallback)
    ]


def _rendered(app: App, batch_date: dt.date, workers: int | None, now: dt.datetime) -> list[Entry]:
    """The batch's letters planned, linted, rendered and stored; only their entries are kept."""
    with _plan(app, batch_date) as planned:
        _lint_gate(app, BATCH_KIND, planned.locales())
        return render_batch(app.engine, planned, workers, now)


def _lint_gate(app: App, kind: str, locales: list[str]) -> None:
    """A letter that fails the clarity lint is never sent: refuse the batch with the lint's findings."""
    from duecourse.letters.lint import lint

    if not locales:
        return
    findings = lint(shipped_templates(), app.config, [kind], locales)
    if findings:
        raise ProblemsError(
            [Problem("letters.lint", f"{f.rule}: {f.message}", f"{f.template}:{f.line}") for f in findings]
        )


def _is_zero(amount: str) -> bool:
    return {c for c in amount if c.isdigit()} <= {"0"}


# ---------------------------------------------------------------- the demo's letters


def last_letter_day(app: App, on_or_before: dt.date) -> dt.date | None:
    """The latest day, up to the date given, on which some account entered a collection stage."""
    frame = read_frame(
        app.engine,
        "SELECT MAX(entered_on) AS entered_on FROM stage_history "
        "WHERE entered_on <= :d AND stage <> 'current'",
        {"d": on_or_before},
    )
    value = frame.item(0, 0) if frame.height else None
    return value if isinstance(value, dt.date) else None


def sample_letters(app: App, as_of: dt.date, out: Path, tries: int = 20) -> list[Path]:
    """One letter of every kind and locale for real accounts in collection as of a date, into ``out``.

    Kinds whose inputs the store does not hold yet (plans, promises, disputes) take the lint's sample inputs.
    """
    from duecourse.letters.kinds import kinds_for
    from duecourse.letters.samples import sample_for

    frame = read_frame(
        app.engine,
        "SELECT s.account_id, c.jurisdiction FROM snapshots s JOIN accounts a ON a.account_id = s.account_id "
        "JOIN customers c ON c.customer_id = a.customer_id "
        "WHERE s.as_of = :d AND s.stage <> 'current' AND NOT s.on_hold ORDER BY s.account_id",
        {"d": as_of},
    )
    written: list[Path] = []
    for jurisdiction, locale in LOCALE_OF.items():
        candidates = [
            r["account_id"] for r in frame.iter_rows(named=True) if r["jurisdiction"] == jurisdiction
        ]
        if not candidates or jurisdiction not in app.config.issuers:
            continue
        inputs = sample_for(jurisdiction, app.config.terms.products).inputs
        for kind in kinds_for(jurisdiction):
            for account_id in candidates[:tries]:
                try:
                    letter = render_letter(app, account_id, kind, as_of, locale=locale, inputs=inputs)
                except LetterError:
                    continue  # e.g. a pre-due reminder for an account with nothing falling due: try another
                path = out / locale / f"{kind}-{account_id}.pdf"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(letter.stored.pdf)
                written.append(path)
                break
    return written
