"""Building sample letters for the letter tests: the sample accounts of the lint, the shipped config."""

from __future__ import annotations

import datetime as dt
import subprocess
from dataclasses import replace
from typing import Any

from duecourse.config import Config, load_config
from duecourse.domain import delinquency
from duecourse.domain.model import Customer
from duecourse.letters.data import letter_data
from duecourse.letters.kinds import JURISDICTION_OF
from duecourse.letters.render import TemplateSet, compile_pdf, load_templates
from duecourse.letters.samples import Sample, sample_for

_CONFIG: list[Config] = []


def config() -> Config:
    if not _CONFIG:
        _CONFIG.append(load_config(None))
    return _CONFIG[0]


def sample(locale: str, **customer: str) -> Sample:
    s = sample_for(JURISDICTION_OF[locale], config().terms.products)
    return replace(s, customer=replace(s.customer, **customer)) if customer else s


def data_for(
    kind: str, locale: str, s: Sample | None = None, letter_date: dt.date | None = None
) -> dict[str, Any]:
    s = s or sample(locale)
    cfg = config()
    product = cfg.terms.products[s.account.product_code]
    day = letter_date or s.letter_date

    def snap(at: dt.date) -> delinquency.AccountSnapshot:
        return delinquency.snapshot(
            s.account.account_id,
            product,
            cfg.terms.bucket_sets[product.bucket_set],
            cfg.terms.stages,
            s.dues,
            s.payments,
            at,
        )

    now = snap(day)
    return letter_data(
        kind_name=kind,
        locale=locale,
        customer=s.customer,
        account=s.account,
        product=product,
        snap=now,
        dues=s.dues,
        payments=s.payments,
        issuer=cfg.issuers[JURISDICTION_OF[locale]],
        settings=cfg.letters,
        letter_date=day,
        inputs=s.inputs,
        itemization=snap(now.oldest_unpaid_due_date) if now.oldest_unpaid_due_date else None,
    )


def render(data: dict[str, Any], templates: TemplateSet | None = None) -> bytes:
    t = templates or load_templates()
    return compile_pdf(t.markup(data), dt.date(2025, 1, 1))


def text_of(pdf: bytes, *options: str) -> str:
    done = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", *options, "-", "-"], input=pdf, capture_output=True, check=True
    )
    return done.stdout.decode("utf-8")


def customer_named(name: str, locale: str) -> Customer:
    return replace(sample(locale).customer, name=name)
