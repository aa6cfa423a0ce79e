"""Letters compiled many to a typst document and cut apart (render.compile_letters, letters.pdfparts), read
back: each the same bytes as the letter rendered alone, the same pixels as typst's own PDF, its own pages,
fonts, text, bookmark and tags, and no other customer's characters; and PDFs joined into one print file."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from duecourse.letters import pdfparts
from duecourse.letters.render import compile_letters, compile_pdf, letters_markup, load_templates
from duecourse.services import letters as service
from tests.unit.letters_support import data_for, sample, text_of
from tests.unit.merge_oracle import merge_at_once

WHEN = dt.date(2025, 9, 26)
CUSTOMERS = [
    {"name": "欧阳娜娜", "address_line1": "鼋鼍路8号", "postal_code": "100010"},
    {"name": "诸葛孔明", "address_line1": "麒麟街99号院", "postal_code": "200020"},
    {"name": "王芳", "address_line1": "建国路88号院3号楼", "postal_code": "300030"},
]


def markup(locale: str, kind: str = "overdue_reminder", **customer: str) -> str:
    return load_templates().markup(data_for(kind, locale, sample(locale, **customer)))


@pytest.fixture(scope="module")
def chinese() -> tuple[list[str], list[bytes], list[bytes]]:
    """Three zh-CN reminders: their markup, cut from one document, and each rendered alone."""
    markups = [markup("zh-CN", **c) for c in CUSTOMERS]
    return markups, compile_letters(markups, WHEN), [compile_letters([m], WHEN)[0] for m in markups]


def test_a_letter_cut_from_a_document_of_many_is_the_letter_rendered_alone(
    chinese: tuple[list[str], list[bytes], list[bytes]],
) -> None:
    markups, together, alone = chinese
    assert together == alone
    # in another order and with other company, still the same bytes
    assert compile_letters([markups[2], markups[0]], WHEN) == [alone[2], alone[0]]
    assert len({hashlib.sha256(pdf).digest() for pdf in alone}) == 3


def test_a_cut_letter_looks_exactly_as_typst_set_it(
    chinese: tuple[list[str], list[bytes], list[bytes]], tmp_path: Path
) -> None:
    markups, together, _ = chinese
    typst_own = compile_pdf(letters_markup([markups[1]]), WHEN)
    for name, pdf in (("cut", together[1]), ("typst", typst_own)):
        (tmp_path / f"{name}.pdf").write_bytes(pdf)
        subprocess.run(["pdftoppm", "-r", "60", tmp_path / f"{name}.pdf", tmp_path / name], check=True)
    pages = sorted(p.name for p in tmp_path.glob("cut-*.ppm"))
    assert pages == ["cut-1.ppm", "cut-2.ppm"]
    for page in pages:
        assert (tmp_path / page).read_bytes() == (tmp_path / page.replace("cut", "typst")).read_bytes()
    assert text_of(together[1], "-layout") == text_of(typst_own, "-layout")


def fonts_of(pdf: bytes) -> list[dict[str, Any]]:
    """Each font's name, the text its ToUnicode map gives, and its number of glyphs (from its CFF)."""
    objects = pdfparts.Objects(pdf)
    found = []
    for number in range(1, len(objects)):
        head = objects[number].head
        if b"/Subtype/Type0" not in head:
            continue
        cmap = pdfparts._decoded(objects[pdfparts._ref(head, b"ToUnicode") or 0])
        entries = re.findall(rb"<(\w+)> <(\w+)>", cmap)[1:]  # after the codespace range
        text = "".join(bytes.fromhex(u.decode()).decode("utf-16-be") for _, u in entries)
        cid = objects[pdfparts._refs(pdfparts._array(head, b"DescendantFonts") or b"")[0]].head
        descriptor = objects[pdfparts._ref(cid, b"FontDescriptor") or 0].head
        cff = pdfparts._decoded(objects[pdfparts._ref(descriptor, b"FontFile3") or 0])
        name = re.search(rb"/BaseFont/(\S+?)[/>]", head)
        assert name is not None
        glyphs = len(pdfparts._Cff.read(cff).charstrings)
        found.append(
            {"name": name.group(1).decode(), "text": text, "entries": len(entries), "glyphs": glyphs}
        )
    return found


def test_a_cut_letter_has_fonts_of_its_own_characters_only(
    chinese: tuple[list[str], list[bytes], list[bytes]],
) -> None:
    _, together, _ = chinese
    first, second = fonts_of(together[0]), fonts_of(together[1])
    first_text = "".join(f["text"] for f in first)
    assert set("欧阳娜鼋鼍") <= set(first_text)
    assert not set("诸葛麒麟") & set(first_text), "another customer's characters are in the font"
    assert set("诸葛麒麟") <= set("".join(f["text"] for f in second))
    for font in first:
        assert font["glyphs"] == font["entries"] + 1  # the glyphs shown, each with its text, and .notdef
        assert re.fullmatch(r"[A-Z]{6}\+NotoS\w+CJKsc-\w+-Identity-H", font["name"])
    assert {f["name"] for f in first}.isdisjoint({f["name"] for f in second})  # subsets named apart
    listing = subprocess.run(["pdffonts", "-"], input=together[0], capture_output=True, check=True).stdout
    rows = [line.split() for line in listing.decode().splitlines()[2:]]
    assert rows and all(row[-5:-2] == ["yes", "yes", "yes"] for row in rows)  # embedded, subset, ToUnicode


def test_a_cut_letter_reads_back_its_own_text_pages_bookmark_and_tags(
    chinese: tuple[list[str], list[bytes], list[bytes]],
) -> None:
    _, together, _ = chinese
    text = text_of(together[2])
    flat = re.sub(r"\s+", "", text)
    assert "尊敬的王芳：" in flat and "2025年10月16日" in flat and "建国路88号院3号楼" in flat
    assert "欧阳娜娜" not in text and "诸葛孔明" not in text
    assert re.findall(r"第\d页，共\d页", flat) == ["第1页，共2页", "第2页，共2页"]
    reader = PdfReader(io.BytesIO(together[2]))
    assert len(reader.pages) == 2
    assert [item.title for item in reader.outline] == ["逾期还款提醒函"]
    root = reader.trailer["/Root"]
    assert root["/MarkInfo"]["/Marked"] and root["/Lang"] == "zh-CN"
    document = root["/StructTreeRoot"]["/K"][0].get_object()
    assert document["/S"] == "/Document" and len(document["/K"]) > 10
    assert b"<xmpTPg:NPages>2</xmpTPg:NPages>" in root["/Metadata"].get_object().get_data()
    assert reader.metadata is not None and reader.metadata.title == "逾期还款提醒函"


def test_each_letter_of_a_document_numbers_its_own_pages() -> None:
    short = markup("zh-CN", "pre_due")  # one page
    long = markup("zh-CN", **CUSTOMERS[0])  # two pages
    text = re.sub(r"\s+", "", text_of(compile_pdf(letters_markup([short, long, short]), WHEN)))
    assert re.findall(r"第\d页，共\d页", text) == [
        "第1页，共1页",
        "第1页，共2页",
        "第2页，共2页",
        "第1页，共1页",
    ]


def test_letters_of_other_titles_are_not_cut_from_one_document() -> None:
    # The document's title and metadata are the first letter's: letters of another kind are compiled
    # alone instead (the batch groups its letters by date, kind, locale and jurisdiction anyway).
    markups = [markup("zh-CN", **CUSTOMERS[0]), markup("zh-CN", "pre_due")]
    assert compile_letters(markups, WHEN) == [compile_letters([m], WHEN)[0] for m in markups]


def test_english_letters_are_cut_the_same_way() -> None:
    markups = [markup("en-GB", name=name) for name in ("Jane Doe", "Zbigniew Quayle")]
    together = compile_letters(markups, WHEN)
    assert together == [compile_letters([m], WHEN)[0] for m in markups]
    assert "Zbigniew" not in "".join(f["text"] for f in fonts_of(together[0]))
    assert "Dear Jane Doe" in text_of(together[0])


def test_a_letter_the_cutter_does_not_read_is_kept_as_typst_wrote_it() -> None:
    # A link makes a page annotation, which the cutter does not handle: the letter comes out as typst
    # wrote it, the same alone and in a document of many.
    plain = markup("zh-CN", **CUSTOMERS[0])
    linked = plain.replace("#metadata(", '#link("https://example.cn")[x]\n#metadata(')
    assert linked != plain
    alone = compile_letters([linked], WHEN)[0]
    assert alone == compile_pdf(letters_markup([linked]), WHEN)
    assert compile_letters([plain, linked], WHEN) == [compile_letters([plain], WHEN)[0], alone]
    # and such a letter joins a print file with its link
    reader = PdfReader(io.BytesIO(pdfparts.merge([compile_letters([plain], WHEN)[0], alone])))
    assert len(reader.pages) == 4
    links = [a.get_object()["/A"]["/URI"] for page in reader.pages for a in page.get("/Annots", [])]
    assert links == ["https://example.cn"]


def test_pdfs_are_joined_page_by_page_into_one_print_file(
    chinese: tuple[list[str], list[bytes], list[bytes]],
) -> None:
    _, together, _ = chinese
    cover = compile_pdf('#set text(font: ("Noto Sans CJK SC",))\n= 封面', WHEN)
    joined = pdfparts.merge([cover, *together])
    assert joined == pdfparts.merge([cover, *together])  # the same parts, the same bytes
    reader = PdfReader(io.BytesIO(joined))
    assert len(reader.pages) == 1 + 2 * 3
    pages = [re.sub(r"\s+", "", page.extract_text()) for page in reader.pages]
    assert "封面" in pages[0]
    assert ["欧阳娜娜" in p for p in pages[1::2]] == [True, False, False]
    assert ["诸葛孔明" in p for p in pages[1::2]] == [False, True, False]
    # the colour profile every letter carries is written once
    assert joined.count(b"/ICCBased") == 1
    assert len(joined) < sum(map(len, together)) + len(cover)


def test_many_letters_render_the_same_in_worker_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = [
        (data_for("overdue_reminder", "zh-CN", sample("zh-CN", **c)), WHEN, f"A{n}", f"C{n}")
        for n, c in enumerate(CUSTOMERS)
    ]
    monkeypatch.setattr(service, "CHUNK", 2)
    one = service.render_many(jobs, workers=1)
    monkeypatch.setattr(service, "PARALLEL_FROM", 1)
    two = service.render_many(jobs, workers=2)
    assert [s.pdf for s in two] == [s.pdf for s in one]
    assert [s.account_id for s in two] == ["A0", "A1", "A2"]
    assert one[0].pdf == service.render_data(jobs[0][0], service.shipped_templates(), WHEN, "A0", "C0").pdf


def test_a_print_file_joined_as_it_goes_is_the_one_joined_at_once(
    chinese: tuple[list[str], list[bytes], list[bytes]], tmp_path: Path
) -> None:
    """The merger writes each PDF out as it is added (a print batch keeps a few letters in memory): the
    file is byte for byte the one joined in memory, and a PDF it cannot read changes nothing."""
    _, together, _ = chinese
    cover = compile_pdf('#set text(font: ("Noto Sans CJK SC",))\n= 封面', WHEN)
    with (tmp_path / "body").open("w+b") as body, (tmp_path / "out.pdf").open("wb") as out:
        merger = pdfparts.Merger(body)
        merger.add(cover)
        merger.add(together[0])
        with pytest.raises(pdfparts.Unsupported):
            merger.add(b"%PDF-1.7\nnot a PDF")
        with pytest.raises(pdfparts.Unsupported):
            merger.add(together[1].replace(b"/Type/Pages", b"/Type/Nothing"))  # no page tree
        for pdf in together[1:]:
            merger.add(pdf)
        assert merger.pages == 1 + 2 * 3
        digest = merger.finish(out)
        with pytest.raises(ValueError, match="finished"):
            merger.add(cover)
    joined = (tmp_path / "out.pdf").read_bytes()
    assert joined == merge_at_once([cover, *together])  # the first version's bytes
    assert joined == pdfparts.merge([cover, *together])
    # the same letters again, in another order and twice over: shared objects are found again
    parts = [cover, *together[::-1], *together]
    assert pdfparts.merge(parts) == merge_at_once(parts)
    assert digest == hashlib.sha256(joined).hexdigest()
    assert len(PdfReader(io.BytesIO(pdfparts.merge([]))).pages) == 0  # nothing joined: a file of no pages
