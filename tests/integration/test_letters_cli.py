"""Letters from the command line, on SQLite and PostgreSQL: render one, store it once, refuse a kind the
customer's jurisdiction does not use, lint templates, and make the same print batch twice."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from textwrap import dedent

import pytest
from pypdf import PdfReader
from sqlalchemy import func, select

from duecourse.cli import main
from duecourse.services.letters import reproduce
from duecourse.store import letters as store
from duecourse.store.db import make_engine
from duecourse.store.tables import letters

CUSTOMERS = """\
customer_id,name,locale,timezone,jurisdiction,phone,email,address_line1,address_line2,city,region,postal_code,country
C1,王芳,zh-CN,Asia/Shanghai,CN,,,建国路88号院3号楼2单元1201室,,朝阳区,北京市,100022,CN
C2,Jane Roe,en-US,America/New_York,US,,,2323 Park Street,Apartment 342,Bethesda,MD,20815,US
C3,李雷,zh-CN,Asia/Shanghai,CN,,,人民路1号,,黄浦区,上海市,200001,CN
"""
ACCOUNTS = """\
account_id,customer_id,product_code,opened_on
A1,C1,loan_cn,2025-01-01
A2,C3,loan_cn,2025-01-01
U1,C2,card_us,2025-01-01
"""
DUES = """\
account_id,due_id,due_date,amount,component,minimum_amount,posted_on
A1,I1,2025-03-10,500.00,principal,,
A1,I1i,2025-03-10,50.00,interest,,
A1,I2,2025-04-10,500.00,principal,,
A1,I2i,2025-04-10,50.00,interest,,
A2,J1,2025-04-10,800.00,principal,,
U1,S1,2025-03-25,2234.56,principal,75.00,2025-03-01
"""
PAYMENTS = """\
payment_id,account_id,paid_on,amount
P1,A1,2025-03-09,550.00
P2,A1,2025-04-20,300.00
"""


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def loaded_template(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_databases: Callable[..., AbstractContextManager[str]],
) -> Iterator[str]:
    """A database of each kind, imported and run by the command once for the module; the tests change
    copies of it (``loaded``)."""
    folder = tmp_path_factory.mktemp("loaded")
    with ExitStack() as stack:
        if request.param == "sqlite":
            db_url = f"sqlite:///{folder / 'template.db'}"
        else:
            db_url = stack.enter_context(postgres_databases())
        assert main(["--db", db_url, "init"]) == 0
        for kind, text in (
            ("customers", CUSTOMERS),
            ("accounts", ACCOUNTS),
            ("dues", DUES),
            ("payments", PAYMENTS),
        ):
            path = folder / f"{kind}.csv"
            path.write_text(dedent(text), encoding="utf-8")
            assert main(["--db", db_url, "import", kind, str(path)]) == 0
        # Every account enters stage M1 on 2025-04-11: the day after A1's and A2's missed instalment, and
        # the day U1's card minimum (due 2025-03-25) ... differs, so run the days the batch is made for.
        assert main(["--db", db_url, "run", "--as-of", "2025-04-11"]) == 0
        yield db_url


@pytest.fixture
def loaded(
    loaded_template: str,
    tmp_path: Path,
    database_copy: Callable[[str, Path], AbstractContextManager[str]],
) -> Iterator[str]:
    """A database of its own, imported and run (a copy of ``loaded_template``)."""
    with database_copy(loaded_template, tmp_path) as db_url:
        yield db_url


def stored_letters(db_url: str) -> int:
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(letters)).scalar_one())
    finally:
        engine.dispose()


def test_a_letter_is_rendered_and_stored_once(
    loaded: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "a1.pdf"
    args = ["--db", loaded, "letter", "render", "--account", "A1", "--kind", "overdue_reminder"]
    assert main([*args, "--as-of", "2025-09-26", "-o", str(out)]) == 0
    first = out.read_bytes()
    assert main([*args, "--as-of", "2025-09-26", "-o", str(out)]) == 0
    assert out.read_bytes() == first
    assert stored_letters(loaded) == 1
    said = capsys.readouterr().out
    assert "(stored)" in said and "(already stored)" in said
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(first)).pages).replace("\n", "")
    assert "2025年10月16日" in text  # E-CN-5
    engine = make_engine(loaded)
    try:
        (stored,) = store.letters_for(engine, "A1")
    finally:
        engine.dispose()
    assert stored.pdf == first and stored.sha256 == hashlib.sha256(first).hexdigest()
    assert reproduce(stored) == first  # from the stored data and the same templates, byte for byte


def test_a_kind_the_customer_s_jurisdiction_does_not_use_is_refused(
    loaded: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--db", loaded, "letter", "render", "--account", "A1", "--kind", "us_validation_notice"]
    assert main([*args, "--as-of", "2025-09-26", "-o", str(tmp_path / "x.pdf")]) == 1
    assert "us_validation_notice letters are not used for customers in CN" in capsys.readouterr().err
    assert not (tmp_path / "x.pdf").exists()


def test_kinds_with_explicit_inputs(loaded: str, tmp_path: Path) -> None:
    out = tmp_path / "plan.pdf"
    args = ["--db", loaded, "letter", "render", "--account", "U1", "--kind", "plan_confirmation"]
    inputs = ["--input", "plan_id=P-7", "--input", "plan_rows=2025-10-01=100.00,2025-11-01=105.00"]
    assert main([*args, *inputs, "--as-of", "2025-09-26", "-o", str(out)]) == 0
    text = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(out.read_bytes())).pages)
    assert "October 1, 2025" in text and "$105.00" in text and "$205.00" in text


def test_the_print_batch_of_a_date_is_the_same_when_made_again(loaded: str, tmp_path: Path) -> None:
    first, again = tmp_path / "first", tmp_path / "again"
    assert main(["--db", loaded, "letters", "batch", "--date", "2025-04-11", "--out", str(first)]) == 0
    assert main(["--db", loaded, "letters", "batch", "--date", "2025-04-11", "--out", str(again)]) == 0
    pdf, manifest = "batch-2025-04-11.pdf", "batch-2025-04-11.csv"
    assert (first / pdf).read_bytes() == (again / pdf).read_bytes()
    assert (first / manifest).read_text() == (again / manifest).read_text()
    rows = list(csv.DictReader(io.StringIO((first / manifest).read_text(encoding="utf-8"))))
    assert [r["account"] for r in rows] == ["A1", "A2"]  # postal codes 100022 before 200001
    assert [r["sequence"] for r in rows] == ["1", "2"]
    assert all(r["kind"] == "overdue_reminder" and len(r["sha256"]) == 64 for r in rows)
    reader = PdfReader(first / pdf)
    assert len(reader.pages) == 1 + sum(int(r["pages"]) for r in rows)  # the cover sheet, then the letters
    assert "Print batch 2025-04-11" in reader.pages[0].extract_text()
    assert (
        "王芳" in reader.pages[1].extract_text()
        and "李雷" in reader.pages[1 + int(rows[0]["pages"])].extract_text()
    )
    assert stored_letters(loaded) == 2
    # Each letter of the batch is stored as it is listed, and renders again from its data alone to the
    # same bytes (the batch compiles its letters as one typst document and cuts them apart).
    engine = make_engine(loaded)
    try:
        for row in rows:
            stored = store.letter_by_sha(engine, row["sha256"])
            assert stored is not None and hashlib.sha256(stored.pdf).hexdigest() == row["sha256"]
            assert stored.account_id == row["account"] and stored.pages == int(row["pages"])
            assert reproduce(stored) == stored.pdf
    finally:
        engine.dispose()


def test_a_print_file_that_cannot_be_written_again_as_it_was_says_so(
    loaded: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A batch first joined by another program (its recorded sha256 differs): the letters and the manifest
    are written again as they were, and a warning says the print file is not the first one's bytes."""
    from sqlalchemy import update

    from duecourse.store.tables import letter_batches

    assert (
        main(["--db", loaded, "letters", "batch", "--date", "2025-04-11", "--out", str(tmp_path / "a")]) == 0
    )
    engine = make_engine(loaded)
    try:
        with engine.begin() as connection:
            connection.execute(
                update(letter_batches)
                .where(letter_batches.c.batch_date == dt.date(2025, 4, 11))
                .values(sha256="0" * 64)
            )
    finally:
        engine.dispose()
    capsys.readouterr()
    assert (
        main(["--db", loaded, "letters", "batch", "--date", "2025-04-11", "--out", str(tmp_path / "b")]) == 0
    )
    err = capsys.readouterr().err
    assert "warning: the print file differs from the one first written for 2025-04-11" in err
    assert (tmp_path / "a" / "batch-2025-04-11.csv").read_text() == (
        tmp_path / "b" / "batch-2025-04-11.csv"
    ).read_text()


def test_a_batch_made_a_letter_at_a_time_is_the_batch_made_at_once(
    loaded: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A batch planned, stored and joined one letter at a time (WINDOW = 1, as a batch of 100,000 is 500
    at a time) writes the files a batch made in one go writes: the re-run with the usual window joins the
    same print file from the store, and nothing is left beside the files."""
    from tests.unit.merge_oracle import merge_at_once

    from duecourse.services import letters as service

    monkeypatch.setattr(service, "WINDOW", 1)
    first, again = tmp_path / "first", tmp_path / "again"
    assert main(["--db", loaded, "letters", "batch", "--date", "2025-04-11", "--out", str(first)]) == 0
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["--db", loaded, "letters", "batch", "--date", "2025-04-11", "--out", str(again)]) == 0
    assert "warning" not in capsys.readouterr().err  # the same sha256 as recorded
    pdf = "batch-2025-04-11.pdf"
    assert (first / pdf).read_bytes() == (again / pdf).read_bytes()
    assert sorted(p.name for p in first.iterdir()) == ["batch-2025-04-11.csv", pdf]
    rows = list(csv.DictReader(io.StringIO((first / "batch-2025-04-11.csv").read_text(encoding="utf-8"))))
    engine = make_engine(loaded)
    try:
        parts = [store.letter_by_sha(engine, r["sha256"]) for r in rows]
    finally:
        engine.dispose()
    assert [p.account_id for p in parts if p is not None] == ["A1", "A2"]
    cover = PdfReader(first / pdf).pages[0]
    assert "Pages (letters only)" in cover.extract_text()
    # the file is the cover sheet and the stored letters joined at once, as the first version joined them
    joined = merge_at_once([_first_part(first / pdf), *(p.pdf for p in parts if p is not None)])
    assert hashlib.sha256(joined).hexdigest() == hashlib.sha256((first / pdf).read_bytes()).hexdigest()


def _first_part(path: Path) -> bytes:
    """The cover sheet of a print file, compiled again as the batch compiles it."""
    from duecourse.letters.typeset import compile_pdf
    from duecourse.services.letters import _cover_markup

    rows = list(csv.DictReader(io.StringIO(path.with_suffix(".csv").read_text(encoding="utf-8"))))
    by_kind = {f"{rows[0]['kind']} {rows[0]['locale']}": len(rows)}
    pages = sum(int(r["pages"]) for r in rows)
    return compile_pdf(_cover_markup(dt.date(2025, 4, 11), len(rows), by_kind, pages), dt.date(2025, 4, 11))


def test_a_batch_that_fails_half_way_leaves_no_print_file_and_is_made_whole_again(
    loaded: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash while the print file is joined (after the letters are stored): no print file, no batch
    recorded; made again, the batch renders the same letters and stores none of them twice."""
    from duecourse.letters import pdfparts

    def broken(self: pdfparts.Merger, out: object) -> str:
        raise OSError("disk full")

    out = tmp_path / "batch"
    with monkeypatch.context() as patch:
        patch.setattr(pdfparts.Merger, "finish", broken)
        with pytest.raises(OSError, match="disk full"):
            main(["--db", loaded, "letters", "batch", "--date", "2025-04-11", "--out", str(out)])
    assert list(out.iterdir()) == []  # neither the print file nor its partial file
    assert stored_letters(loaded) == 2  # the letters were stored before the join
    engine = make_engine(loaded)
    try:
        assert store.batch_sha256(engine, dt.date(2025, 4, 11)) is None
    finally:
        engine.dispose()
    assert main(["--db", loaded, "letters", "batch", "--date", "2025-04-11", "--out", str(out)]) == 0
    assert stored_letters(loaded) == 2
    assert len(PdfReader(out / "batch-2025-04-11.pdf").pages) > 2


def test_lint_passes_the_shipped_templates_and_fails_a_threat(
    loaded: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--db", loaded, "letters", "lint", "--kind", "overdue_reminder", "--locale", "en-GB"]) == 0
    folder = tmp_path / "review" / "en-GB"
    folder.mkdir(parents=True)
    shipped = Path(__file__).parents[2] / "src/duecourse/letters/templates/en-GB/overdue_reminder.typ.j2"
    source = shipped.read_text(encoding="utf-8")
    (folder / "overdue_reminder.typ.j2").write_text(
        source.replace("Please pay", "Pay now or we will send the bailiffs. Please pay"), encoding="utf-8"
    )
    capsys.readouterr()
    code = main(
        ["--db", loaded, "letters", "lint", "--locale", "en-GB", "--templates", str(tmp_path / "review")]
    )
    assert code == 1
    assert "en-GB/overdue_reminder.typ.j2:10: words.prohibited: 'bailiff'" in capsys.readouterr().out


def test_a_batch_whose_letters_fail_the_lint_is_refused(
    loaded: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from duecourse.config import default_config_text

    strict = tmp_path / "duecourse.toml"
    strict.write_text(
        default_config_text().replace("max_sentence_chars = 80", "max_sentence_chars = 10"), encoding="utf-8"
    )
    capsys.readouterr()
    args = ["--db", loaded, "--config", str(strict), "letters", "batch", "--date", "2025-04-11"]
    assert main([*args, "--out", str(tmp_path / "print")]) == 1
    err = capsys.readouterr().err
    assert "zh-CN/overdue_reminder.typ.j2:" in err and "readability.sentence" in err
    assert not (tmp_path / "print").exists()
    assert stored_letters(loaded) == 0


@pytest.mark.parametrize("by", ["letter", "fallback"])
def test_a_stage_entry_batch_is_refused_when_the_strategy_posts_the_reminders(
    loaded: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], by: str
) -> None:
    """The strategy's letters go through the outbox and its print drop: a batch of stage-entry reminders
    beside them would post a second letter to the same customers."""
    from duecourse.config import default_config_text

    action = (
        'channel = "letter"\n  kind = "overdue_reminder"\n'
        if by == "letter"
        else 'channel = "email"\n  kind = "overdue_reminder"\n  fallback = ["letter"]\n'
    )
    marker = '[[strategy.stages]]\nname = "M2"'
    text = default_config_text()
    assert marker in text
    text = text.replace(marker, f'\n  [[strategy.stages.actions]]\n  name = "post"\n  {action}\n{marker}')
    text += f'\n[channels.post]\ndir = "{tmp_path / "drop"}"\n[channels.email]\ntransport = "files"\n'
    text += f'dir = "{tmp_path / "mail"}"\nfrom = "Bank <bank@example.com>"\n'
    posted = tmp_path / "duecourse.toml"
    posted.write_text(text, encoding="utf-8")
    capsys.readouterr()
    args = ["--db", loaded, "--config", str(posted), "letters", "batch", "--date", "2025-04-11"]
    assert main([*args, "--out", str(tmp_path / "print")]) == 1
    err = capsys.readouterr().err
    assert "the strategy sends the overdue_reminder by letter (stage M1, action post)" in err
    assert "would post a second letter" in err
    assert not (tmp_path / "print").exists()
    assert stored_letters(loaded) == 0
