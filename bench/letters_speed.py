"""Speed of letters: typst PDFs per second per core, as separate files and as one merged print batch.

    .venv/bin/python bench/letters_speed.py [--letters N] [--batch N] [--workers W]

For each locale, renders N overdue reminders (default 300) for the lint's sample account with a different
customer name and amount each time (so nothing is cached), one process, and writes each to its own file:
letters per second per core. Then the zh-CN print batch path: N letters rendered (in W worker processes,
default every core) and merged into one PDF by pdfunite, as ``letters batch`` does; letters per second
overall and per core, and the peak memory of the process and its workers. Each measurement also gives
CPU seconds (this process, its workers and pdfunite), whose ratio to letters is the per-core figure on a
machine busy with other work. One line of JSON per measurement.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import tempfile
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from duecourse.config import load_config
from duecourse.domain import delinquency
from duecourse.letters.data import letter_data
from duecourse.letters.kinds import JURISDICTION_OF
from duecourse.letters.samples import sample_for
from duecourse.services.letters import merge_pdfs, render_many, shipped_templates
from duecourse.store.letters import StoredLetter

NAMES = {"zh-CN": "王芳", "en-US": "Person A", "en-GB": "Jane Doe"}


def letters_data(locale: str, count: int) -> list[tuple[dict[str, Any], dt.date, str, str]]:
    """``count`` letter data of one locale, each for a different customer name and amount."""
    config = load_config(None)
    jurisdiction = JURISDICTION_OF[locale]
    base = sample_for(jurisdiction, config.terms.products)
    product = config.terms.products[base.account.product_code]
    jobs = []
    for n in range(count):
        dues = [replace(d, amount=d.amount + Decimal(n)) for d in base.dues]
        postal = f"{100000 + n * 7 % 900000}"
        customer = replace(base.customer, name=f"{NAMES[locale]}{n}", postal_code=postal)
        snap = delinquency.snapshot(
            base.account.account_id,
            product,
            config.terms.bucket_sets[product.bucket_set],
            config.terms.stages,
            dues,
            [],
            base.letter_date,
        )
        data = letter_data(
            kind_name="overdue_reminder",
            locale=locale,
            customer=customer,
            account=base.account,
            product=product,
            snap=snap,
            dues=dues,
            payments=[],
            issuer=config.issuers[jurisdiction],
            settings=config.letters,
            letter_date=base.letter_date,
        )
        jobs.append((data, base.letter_date, f"A{n}", f"C{n}"))
    return jobs


def peak_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024, 1)


def separate(locale: str, count: int, folder: Path) -> dict[str, Any]:
    jobs = letters_data(locale, count)
    render_many(jobs[:3], workers=1)  # the fonts and templates load once per process: not counted
    started, cpu_started = time.perf_counter(), cpu()
    rendered = render_many(jobs, workers=1)
    for letter in rendered:
        (folder / f"{letter.account_id}.pdf").write_bytes(letter.pdf)
    seconds, cpu_seconds = time.perf_counter() - started, cpu() - cpu_started
    return {
        "measure": "separate files, 1 core",
        "locale": locale,
        "letters": count,
        "pages_per_letter": round(sum(r.pages for r in rendered) / count, 2),
        "seconds": round(seconds, 2),
        "letters_per_second": round(count / seconds, 1),
        "cpu_seconds": round(cpu_seconds, 2),
        "letters_per_cpu_second": round(count / cpu_seconds, 1),
    }


def merged(rendered: list[StoredLetter]) -> bytes:
    return merge_pdfs([letter.pdf for letter in rendered])


def cpu() -> float:
    """CPU seconds of this process and its finished children (workers, pdfunite)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def batch(locale: str, count: int, workers: int) -> dict[str, Any]:
    jobs = letters_data(locale, count)
    jobs.sort(key=lambda job: (job[0]["customer"]["postal_code"], job[2]))
    started, cpu_started = time.perf_counter(), cpu()
    rendered = render_many(jobs, workers=workers)
    rendered_at = time.perf_counter()
    pdf = merged(rendered)
    seconds, cpu_seconds = time.perf_counter() - started, cpu() - cpu_started
    return {
        "measure": f"merged batch, {workers} worker(s)",
        "locale": locale,
        "letters": count,
        "render_seconds": round(rendered_at - started, 2),
        "merge_seconds": round(seconds - (rendered_at - started), 2),
        "seconds": round(seconds, 2),
        "letters_per_second": round(count / seconds, 1),
        "letters_per_second_per_core": round(count / seconds / workers, 1),
        "cpu_seconds": round(cpu_seconds, 2),
        "letters_per_cpu_second": round(count / cpu_seconds, 1),
        "batch_mb": round(len(pdf) / 2**20, 1),
        "peak_rss_mb": peak_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--letters", type=int, default=300)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--locales", default="zh-CN,en-US,en-GB")
    args = parser.parse_args()
    shipped_templates()
    with tempfile.TemporaryDirectory() as tmp:
        for locale in args.locales.split(","):
            print(json.dumps(separate(locale, args.letters, Path(tmp)), ensure_ascii=False), flush=True)
    print(json.dumps(batch("zh-CN", args.batch, 1), ensure_ascii=False), flush=True)
    if args.workers > 1:
        print(json.dumps(batch("zh-CN", args.batch, args.workers), ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
