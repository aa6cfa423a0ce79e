"""Post: letters staged on disk, closed into a print-shop folder that ``sha256sum -c`` accepts, closed
again without change, refused when a batch id is reused for other letters; and postal returns read with
every bad row reported."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import subprocess
from pathlib import Path

import pytest

from duecourse.channels.base import DeliveryEvent, Outgoing, PermanentError, TransientError
from duecourse.channels.post import (
    BatchConflict,
    DropEntry,
    DropError,
    PostTransport,
    PrintDrop,
    parse_returns,
)
from duecourse.domain.errors import Problem, ProblemsError


def pdf(text: str) -> bytes:
    return f"%PDF-1.7\n% letter {text}\n%%EOF\n".encode()


def letter(reference: str, postal_code: str, pages: str = "2", body: str | None = None) -> Outgoing:
    content = pdf(body or reference)
    meta = {
        "reference": reference,
        "postal_code": postal_code,
        "letter_sha256": hashlib.sha256(content).hexdigest(),
    }
    if pages:
        meta["pages"] = pages
    return Outgoing(1, f"key-{reference}", "letter", "C1", content, meta)


LETTERS = [
    letter("r300", "200001"),
    letter("r100", "100022", pages=""),
    letter("r200", "100022", pages="3"),
    letter("r050", "20815"),
]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_closed_batch_is_sorted_checksummed_and_ready(tmp_path: Path) -> None:
    drop = PrintDrop(tmp_path)
    for item in LETTERS:
        drop.add(item)

    result = drop.close_batch("2025-01-02")

    folder = tmp_path / "2025-01-02"
    assert (result.folder, result.new) == (folder, True)
    assert sorted(p.name for p in folder.iterdir()) == [
        "00001-r100.pdf",
        "00002-r200.pdf",
        "00003-r300.pdf",
        "00004-r050.pdf",
        "READY",
        "SHA256SUMS",
        "manifest.csv",
    ]
    with (folder / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows == [
        ["sequence", "reference", "postal_code", "pages", "sha256", "file"],
        ["1", "r100", "100022", "", sha(pdf("r100")), "00001-r100.pdf"],
        ["2", "r200", "100022", "3", sha(pdf("r200")), "00002-r200.pdf"],
        ["3", "r300", "200001", "2", sha(pdf("r300")), "00003-r300.pdf"],
        ["4", "r050", "20815", "2", sha(pdf("r050")), "00004-r050.pdf"],
    ]
    assert (folder / "00003-r300.pdf").read_bytes() == pdf("r300")
    assert result.entries[1] == DropEntry(2, "r200", "100022", 3, sha(pdf("r200")), "00002-r200.pdf")
    checked = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], check=False, cwd=folder, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.splitlines() == [
        "00001-r100.pdf: OK",
        "00002-r200.pdf: OK",
        "00003-r300.pdf: OK",
        "00004-r050.pdf: OK",
        "manifest.csv: OK",
    ]
    sums = (folder / "SHA256SUMS").read_bytes()
    assert (folder / "READY").read_text() == f"letters: 4\nsha256 of SHA256SUMS: {sha(sums)}\n"
    assert drop.pending() == ()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".") and p.name != ".staging"] == []


def test_sha256sum_notices_a_changed_letter(tmp_path: Path) -> None:
    drop = PrintDrop(tmp_path)
    drop.add(LETTERS[0])
    folder = drop.close_batch("b1").folder
    (folder / "00001-r300.pdf").write_bytes(pdf("tampered"))

    checked = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], check=False, cwd=folder, capture_output=True, text=True
    )

    assert checked.returncode == 1
    assert "00001-r300.pdf: FAILED" in checked.stdout


def test_closing_again_with_the_same_letters_writes_the_same_files(tmp_path: Path) -> None:
    drop = PrintDrop(tmp_path)
    for item in LETTERS:
        drop.add(item)
    first = drop.close_batch("b1")
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in first.folder.iterdir()}

    for item in reversed(LETTERS):  # a re-run stages the same letters again, in another order
        drop.add(item)
    again = drop.close_batch("b1")
    nothing_staged = drop.close_batch("b1")

    assert (again.new, nothing_staged.new) == (False, False)
    assert again.entries == first.entries == nothing_staged.entries
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in first.folder.iterdir()} == before
    assert drop.pending() == ()


def test_the_same_letters_make_the_same_bytes_anywhere(tmp_path: Path) -> None:
    folders = []
    for name, order in (("one", LETTERS), ("two", list(reversed(LETTERS)))):
        drop = PrintDrop(tmp_path / name)
        for item in order:
            drop.add(item)
        folders.append(drop.close_batch("b1").folder)

    assert {p.name: p.read_bytes() for p in folders[0].iterdir()} == {
        p.name: p.read_bytes() for p in folders[1].iterdir()
    }


def test_a_batch_id_is_never_reused_for_other_letters(tmp_path: Path) -> None:
    drop = PrintDrop(tmp_path)
    drop.add(LETTERS[0])
    drop.close_batch("b1")
    manifest = (tmp_path / "b1" / "manifest.csv").read_bytes()

    drop.add(LETTERS[1])
    with pytest.raises(BatchConflict, match="batch b1 already exists .* with other letters"):
        drop.close_batch("b1")

    assert (tmp_path / "b1" / "manifest.csv").read_bytes() == manifest
    assert drop.pending() == ("r100",)
    assert [e.reference for e in drop.close_batch("b2").entries] == ["r100"]


def test_staged_letters_survive_a_restart(tmp_path: Path) -> None:
    PrintDrop(tmp_path).add(LETTERS[0])

    restarted = PrintDrop(tmp_path)

    assert restarted.pending() == ("r300",)
    assert [e.file for e in restarted.close_batch("b1").entries] == ["00001-r300.pdf"]


def test_a_folder_left_without_ready_by_a_crash_is_finished(tmp_path: Path) -> None:
    drop = PrintDrop(tmp_path)
    drop.add(LETTERS[0])
    drop.close_batch("b1")
    (tmp_path / "b1" / "READY").unlink()

    result = drop.close_batch("b1")

    assert (result.new, (tmp_path / "b1" / "READY").exists()) == (False, True)


def test_letters_of_a_batch_a_crash_left_unfinished_are_not_printed_twice(tmp_path: Path) -> None:
    drop = PrintDrop(tmp_path)
    drop.add(LETTERS[0])
    drop.close_batch("b1")
    (tmp_path / "b1" / "READY").unlink()
    drop.add(LETTERS[0])  # the state a crash after the rename leaves: folder written, letter still staged
    drop.add(LETTERS[1])

    result = drop.close_batch("b2")

    assert [e.reference for e in result.entries] == ["r100"]
    assert (tmp_path / "b1" / "READY").exists()
    assert drop.pending() == ()


def test_an_unfinished_batch_that_does_not_match_its_sums_stops_the_next_one(tmp_path: Path) -> None:
    drop = PrintDrop(tmp_path)
    drop.add(LETTERS[0])
    drop.close_batch("b1")
    (tmp_path / "b1" / "READY").unlink()
    (tmp_path / "b1" / "00001-r300.pdf").write_bytes(pdf("damaged"))
    drop.add(LETTERS[1])

    with pytest.raises(DropError, match="b1 does not match its SHA256SUMS"):
        drop.close_batch("b2")

    assert not (tmp_path / "b1" / "READY").exists()
    assert not (tmp_path / "b2").exists()


def test_nothing_staged_and_no_batch_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DropError, match="no letters staged"):
        PrintDrop(tmp_path).close_batch("b1")
    assert not (tmp_path / "b1").exists()


@pytest.mark.parametrize(
    ("item", "message"),
    [
        pytest.param(
            Outgoing(1, "k", "letter", "C1", pdf("x"), {"reference": "r1", "letter_sha256": "0" * 64}),
            "is not the stored letter's",
            id="sha-mismatch",
        ),
        pytest.param(
            Outgoing(1, "k", "letter", "C1", b"Dear customer", {"reference": "r1"}), "not a PDF", id="not-pdf"
        ),
        pytest.param(
            Outgoing(1, "k", "letter", "C1", pdf("x"), {"reference": "../r1"}), "reference '../r1' must be"
        ),
    ],
)
def test_letters_that_are_not_what_was_stored_are_refused(
    tmp_path: Path, item: Outgoing, message: str
) -> None:
    with pytest.raises(DropError, match=message):
        PrintDrop(tmp_path).add(item)


def test_a_reference_staged_twice_with_another_pdf_is_refused(tmp_path: Path) -> None:
    drop = PrintDrop(tmp_path)
    drop.add(letter("r1", "100000"))
    drop.add(letter("r1", "100000"))  # the same letter again: nothing changes

    with pytest.raises(DropError, match="r1 is staged already with another PDF"):
        drop.add(letter("r1", "100000", body="changed"))


@pytest.mark.parametrize("batch_id", ["", ".hidden", "a/b", "../up"])
def test_a_batch_id_must_be_a_plain_name(tmp_path: Path, batch_id: str) -> None:
    with pytest.raises(DropError, match="batch id"):
        PrintDrop(tmp_path).close_batch(batch_id)


# ------------------------------------------------------------------------------------------ transport


def test_post_transport_stages_and_answers_with_the_reference(tmp_path: Path) -> None:
    transport = PostTransport(PrintDrop(tmp_path))

    receipt = transport.send(LETTERS[0])
    transport.close()

    assert receipt.provider_id == "r300"
    assert transport.drop.pending() == ("r300",)


def test_post_transport_translates_errors(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")

    with pytest.raises(PermanentError, match="not a PDF"):
        PostTransport(PrintDrop(tmp_path)).send(
            Outgoing(1, "k", "letter", "C1", b"text", {"reference": "r1"})
        )
    with pytest.raises(TransientError, match="cannot stage letter"):
        PostTransport(PrintDrop(blocked)).send(LETTERS[0])


# ------------------------------------------------------------------------------------------ returns


def test_returned_letters_are_bounces(tmp_path: Path) -> None:
    path = tmp_path / "returns.csv"
    path.write_text(
        "reference,returned_on,reason\n"
        "r100,2025-02-03,addressee unknown\n"
        "\n"
        '"r200",2025-02-04,"moved, no forwarding address"\n',
        encoding="utf-8",
    )

    assert parse_returns(path) == [
        DeliveryEvent(
            "letter",
            "bounced",
            provider_id="r100",
            at=dt.datetime(2025, 2, 3, tzinfo=dt.UTC),
            reason="addressee unknown",
        ),
        DeliveryEvent(
            "letter",
            "bounced",
            provider_id="r200",
            at=dt.datetime(2025, 2, 4, tzinfo=dt.UTC),
            reason="moved, no forwarding address",
        ),
    ]


def test_every_bad_row_is_reported_where_it_is(tmp_path: Path) -> None:
    path = tmp_path / "returns.csv"
    path.write_text(
        "reference,returned_on,reason\n"
        "r100,2025-02-30,moved\n"
        ',2025-02-03,"two\nlines"\n'
        "r300,03/02/2025,\n"
        "r400,2025-02-03,moved,extra\n"
        "r/5,2025-02-03,moved\n",
        encoding="utf-8",
    )

    with pytest.raises(ProblemsError) as raised:
        parse_returns(path)

    assert raised.value.problems == (
        Problem("returns.bad_date", "'2025-02-30' is not a date (YYYY-MM-DD)", f"{path}:2:returned_on"),
        Problem("returns.missing_reference", "reference is empty", f"{path}:3:reference"),
        Problem("returns.bad_date", "'03/02/2025' is not a date (YYYY-MM-DD)", f"{path}:5:returned_on"),
        Problem("returns.missing_reason", "reason is empty", f"{path}:5:reason"),
        Problem("returns.extra_cells", "4 cells; the header has 3", f"{path}:6"),
        Problem("returns.bad_reference", "'r/5' is not a letter reference", f"{path}:7:reference"),
    )


def test_a_wrong_header_is_reported_column_by_column(tmp_path: Path) -> None:
    path = tmp_path / "returns.csv"
    path.write_text("reference,date,reason,reason\nr1,2025-01-01,moved,moved\n", encoding="utf-8")

    with pytest.raises(ProblemsError) as raised:
        parse_returns(path)

    assert [str(p) for p in raised.value.problems] == [
        f"{path}:1:returned_on: missing column 'returned_on'",
        f"{path}:1:date: unexpected column 'date'; expected reference, returned_on, reason",
        f"{path}:1:reason: column 'reason' repeated",
    ]


@pytest.mark.parametrize(
    ("content", "code"),
    [(None, "returns.missing"), (b"", "returns.empty"), (b"reference\xff", "returns.not_utf8")],
)
def test_an_unreadable_returns_file_is_one_problem(tmp_path: Path, content: bytes | None, code: str) -> None:
    path = tmp_path / "returns.csv"
    if content is not None:
        path.write_bytes(content)

    with pytest.raises(ProblemsError) as raised:
        parse_returns(path)

    assert [(p.code, p.source) for p in raised.value.problems] == [(code, str(path))]


# ------------------------------------------------------------------------ the print file of a batch


def typst_letter(reference: str, postal_code: str, pages: int) -> Outgoing:
    """A real letter PDF (typst's), of ``pages`` pages each saying its reference."""
    from duecourse.letters.typeset import compile_pdf

    body = "\n#pagebreak()\n".join(f"Letter {reference} page {n}" for n in range(1, pages + 1))
    content = compile_pdf(f'#set page(paper: "a4")\n{body}\n', dt.date(2025, 1, 2))
    meta = {
        "reference": reference,
        "postal_code": postal_code,
        "letter_sha256": sha(content),
        "pages": str(pages),
    }
    return Outgoing(1, f"key-{reference}", "letter", "C1", content, meta)


def pdf_text(path: Path) -> list[str]:
    """The text of each page of a PDF, read back with pdftotext."""
    done = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    )
    return [" ".join(page.split()) for page in done.stdout.split("\f")[:-1]]


def test_a_batch_with_a_print_file_joins_a_cover_and_the_letters_in_order(tmp_path: Path) -> None:
    drop = PrintDrop(tmp_path, print_file=True)
    for item in (
        typst_letter("r300", "200001", 1),
        typst_letter("r100", "100022", 2),
        typst_letter("r200", "100022", 1),
    ):
        drop.add(item)
    result = drop.close_batch("20250102T150000-000001")
    folder = result.folder
    assert sorted(p.name for p in folder.iterdir()) == [
        "00001-r100.pdf",
        "00002-r200.pdf",
        "00003-r300.pdf",
        "READY",
        "SHA256SUMS",
        "manifest.csv",
        "print.pdf",
    ]
    pages = pdf_text(folder / "print.pdf")
    assert pages[0].startswith("Print batch 20250102T150000-000001 Letters: 3 Pages (letters only): 4")
    assert "Sorted by postal code, from 100022 to 200001." in pages[0]
    assert "This sheet is not posted." in pages[0]
    assert pages[1:] == [
        "Letter r100 page 1",
        "Letter r100 page 2",
        "Letter r200 page 1",
        "Letter r300 page 1",
    ]
    checked = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], check=False, cwd=folder, capture_output=True, text=True
    )
    assert checked.returncode == 0 and "print.pdf: OK" in checked.stdout.splitlines(), checked
    assert (folder / "READY").read_text().startswith("letters: 3\n")
    # the same letters closed again under the same id: the same files, byte for byte
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    again = PrintDrop(tmp_path / "again", print_file=True)
    for item in (
        typst_letter("r200", "100022", 1),
        typst_letter("r100", "100022", 2),
        typst_letter("r300", "200001", 1),
    ):
        again.add(item)
    second = again.close_batch("20250102T150000-000001")
    assert {p.name: p.read_bytes() for p in second.folder.iterdir()} == files


def test_a_letter_that_cannot_be_joined_closes_the_batch_without_a_print_file(tmp_path: Path) -> None:
    """The print file is a convenience: a letter the joiner cannot read never holds the batch back."""
    drop = PrintDrop(tmp_path, print_file=True)
    drop.add(typst_letter("r100", "100022", 1))
    drop.add(letter("r200", "100023"))  # not a PDF the joiner can read
    result = drop.close_batch("b1")
    assert result.note.startswith("letter r200 cannot be joined into print.pdf: ")
    assert result.note.endswith("; the batch is closed without it, each letter in its own file")
    assert sorted(p.name for p in result.folder.iterdir()) == [
        "00001-r100.pdf",
        "00002-r200.pdf",
        "READY",
        "SHA256SUMS",
        "manifest.csv",
    ]
    assert drop.pending() == ()
    checked = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], check=False, cwd=result.folder)
    assert checked.returncode == 0


def test_the_dispatchers_close_logs_a_batch_closed_without_its_print_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from duecourse.services.dispatching import close_post

    drop = PrintDrop(tmp_path, print_file=True)
    drop.add(typst_letter("r100", "100022", 1))
    drop.add(letter("r200", "100023"))
    clock = lambda: dt.datetime(2025, 1, 2, 15, tzinfo=dt.UTC)  # noqa: E731 - the dispatcher's clock
    with caplog.at_level("WARNING", logger="duecourse.outbox"):
        close_post({"letter": PostTransport(drop)}, clock, worker=7)
    assert (tmp_path / "20250102T150000-000007" / "READY").exists()
    assert drop.pending() == ()
    (logged,) = [r.getMessage() for r in caplog.records if "post.print_file" in r.getMessage()]
    assert '"batch": "20250102T150000-000007"' in logged and "letter r200 cannot be joined" in logged


def test_closed_lists_the_batches_the_shop_may_take_with_their_letters(tmp_path: Path) -> None:
    drop = PrintDrop(tmp_path)
    assert PrintDrop(tmp_path / "none").closed() == []
    for item in LETTERS[:2]:
        drop.add(item)
    drop.close_batch("b1")
    drop.add(LETTERS[2])
    drop.close_batch("b2")
    (tmp_path / "b2" / "READY").unlink()  # not yet the shop's
    ((batch, entries),) = drop.closed()
    assert batch == "b1"
    assert [(e.reference, e.pages) for e in entries] == [("r100", None), ("r300", 2)]
