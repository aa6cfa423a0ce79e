"""Overdue reminders in all three locales, read back from the PDF: every element and every figure."""

from __future__ import annotations

import datetime as dt
import io
import re
from decimal import Decimal
from pathlib import Path

import pytest
from pypdf import PdfReader

from duecourse.letters import KindNotUsed, TemplateError
from duecourse.letters.data import deadline_for, format_date
from duecourse.letters.render import SHIPPED, load_templates, page_count, typst_escape
from duecourse.letters.settings import Deadline
from tests.unit.letters_support import config, data_for, render, sample, text_of

LOCALES = ("zh-CN", "en-US", "en-GB")


def flat(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.fixture(scope="module", params=LOCALES)
def reminder(request: pytest.FixtureRequest) -> tuple[str, dict[str, object], bytes]:
    data = data_for("overdue_reminder", request.param)
    return request.param, data, render(data)


def test_the_chinese_reminder_says_everything_checklist_f_asks_for() -> None:
    data = data_for("overdue_reminder", "zh-CN")
    pdf = render(data)
    text = flat(text_of(pdf))
    rows = text_of(pdf, "-layout")
    amounts = data["amounts"]
    assert isinstance(amounts, dict)
    for label, figure in (
        ("本金", "300.00元"),
        ("利息", "0.00元"),
        ("费用（违约金）", "15.00元"),
        ("罚息", "0.00元"),
    ):
        assert re.search(f"{label} +{re.escape(figure)}", rows), label
    # The sample: ¥3,000 card statement due 2025-08-23, minimum ¥300 unpaid, letter dated 2025-09-26.
    assert amounts["total"] == "315.00元"
    assert amounts["total_capital"] == "人民币叁佰壹拾伍元整"
    for needed in (
        "尊敬的王芳：",
        "****5678",
        "截至2025年9月26日",
        "逾期金额合计315.00元",
        "大写：人民币叁佰壹拾伍元整",
        "请您在2025年10月16日（含当日）前还清",  # E-CN-5: 10 working days across National Day
        "第10个工作日",
        "合同",
        "征信业管理条例",
        "户名示例消费金融有限公司",
        "账号0200001122334455667",
        "还款后请保留还款凭证。如您已经还款，请忽略本函。",
        "非本人办理",
        "个性化分期还款计划",
        "查询账户状态",
        "客服热线：400-800-9999（每天8:00至21:00）",
        "（公章）",
    ):
        assert needed in text, needed


def test_every_figure_of_the_data_is_in_the_text(reminder: tuple[str, dict[str, object], bytes]) -> None:
    locale, data, pdf = reminder
    text = flat(text_of(pdf))
    amounts = data["amounts"]
    deadline = data["deadline"]
    portal = data["portal"]
    assert isinstance(amounts, dict) and isinstance(deadline, dict) and isinstance(portal, dict)
    for key in ("as_of", "total", "principal", "interest", "fees", "penalty", "oldest_due_date"):
        assert flat(str(amounts[key])) in text, key
    assert flat(str(deadline["date"])) in text
    assert flat(str(portal["url"])) in text
    if locale != "zh-CN":
        assert "pleasekeepyourreceipt.ifyouhavealreadypaid,pleaseignorethisletter." in text.lower()
        assert "notyourdebt" in text


def test_the_chinese_text_extracts_exactly_with_pypdf_too() -> None:
    pdf = render(data_for("overdue_reminder", "zh-CN"))
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    assert "人民币叁佰壹拾伍元整" in flat(text)
    assert "2025年10月16日" in flat(text)


@pytest.mark.parametrize(
    ("locale", "width_mm", "height_mm"),
    [("zh-CN", 210, 297), ("en-GB", 210, 297), ("en-US", 215.9, 279.4)],
)
def test_paper_is_a4_or_us_letter(locale: str, width_mm: float, height_mm: float) -> None:
    page = PdfReader(io.BytesIO(render(data_for("overdue_reminder", locale)))).pages[0]
    assert float(page.mediabox.width) == pytest.approx(width_mm * 72 / 25.4, abs=0.5)
    assert float(page.mediabox.height) == pytest.approx(height_mm * 72 / 25.4, abs=0.5)


@pytest.mark.parametrize("locale", LOCALES)
def test_the_envelope_window_shows_the_address_and_nothing_about_the_debt(locale: str) -> None:
    from duecourse.letters.lint import WINDOW, pdf_text

    data = data_for("overdue_reminder", locale)
    shown = pdf_text(render(data), WINDOW[str(data["paper"])])
    customer = data["customer"]
    assert isinstance(customer, dict)
    assert customer["name"] in shown
    for line in customer["address_lines"]:
        assert line in shown
    assert not re.search(r"逾期|欠款|还款|\d元|(?i:overdue|debt|payment)|\$\d|£\d", shown), shown


@pytest.mark.parametrize("locale", LOCALES)
def test_a_hostile_customer_name_is_printed_as_written(locale: str) -> None:
    name = "*Bobby_ #Tables [x] <@evil> $5 `rm` \\ // = - + 1. ~"
    data = data_for("overdue_reminder", locale, sample(locale, name=name))
    text = text_of(render(data))
    assert name in text


def test_the_escape_leaves_no_typst_markup_active() -> None:
    # A value is one string literal in the markup: none of its characters is markup, and every letter
    # of a template has the same syntax tree whatever its values (render.compile_letters relies on it).
    assert typst_escape("#set page(width: 1mm)") == '#"#set page(width: 1mm)";'
    assert typst_escape('say "hi" \\ [x]') == '#"say \\"hi\\" \\\\ [x]";'
    # White space as markup reads it: runs made one space, at the ends left as markup spaces.
    assert typst_escape("a\nb  c") == '#"a b c";'
    assert typst_escape(" 王芳\t") == ' #"王芳"; '
    assert typst_escape(None) == '#"";'


def test_rendering_twice_gives_the_same_bytes() -> None:
    data = data_for("overdue_reminder", "zh-CN")
    assert render(data) == render(data)


def test_the_page_count_is_read_from_the_pdf() -> None:
    pdf = render(data_for("overdue_reminder", "zh-CN"))
    assert page_count(pdf) == len(PdfReader(io.BytesIO(pdf)).pages)


def test_a_kind_the_jurisdiction_does_not_use_is_refused() -> None:
    with pytest.raises(KindNotUsed, match="us_validation_notice letters are not used for customers in CN"):
        data_for("us_validation_notice", "zh-CN")


@pytest.mark.parametrize(
    ("letter_date", "tenth"),
    [
        pytest.param(dt.date(2025, 9, 26), dt.date(2025, 10, 16), id="national-day"),
        pytest.param(dt.date(2025, 1, 20), dt.date(2025, 2, 8), id="make-up-saturday"),
        pytest.param(dt.date(2026, 2, 6), dt.date(2026, 2, 27), id="spring-festival-2026"),
        pytest.param(dt.date(2026, 9, 18), dt.date(2026, 10, 9), id="mid-autumn-2026"),
    ],
)
def test_the_deadline_is_the_10th_working_day_of_e_cn_5(letter_date: dt.date, tenth: dt.date) -> None:
    assert deadline_for(Deadline(10, "business"), letter_date, "CN") == tenth
    data = data_for("overdue_reminder", "zh-CN", letter_date=letter_date)
    deadline = data["deadline"]
    assert isinstance(deadline, dict)
    assert deadline["date"] == format_date(tenth, "zh-CN")


@pytest.mark.parametrize(
    ("mailed", "end"),
    [
        pytest.param(dt.date(2025, 11, 3), dt.date(2025, 12, 10), id="november"),
        pytest.param(dt.date(2025, 12, 19), dt.date(2026, 1, 28), id="christmas"),
    ],
)
def test_the_us_validation_period_ends_as_in_e_us_2(mailed: dt.date, end: dt.date) -> None:
    rule = config().letters.deadlines["us_validation_notice"]
    assert deadline_for(rule, mailed, "US") == end


def test_a_template_that_names_a_field_its_kind_lacks_fails_at_load(tmp_path: Path) -> None:
    folder = tmp_path / "zh-CN"
    folder.mkdir()
    source = (SHIPPED / "zh-CN" / "overdue_reminder.typ.j2").read_text(encoding="utf-8")
    (folder / "overdue_reminder.typ.j2").write_text(
        source.replace("{{ customer.name }}", "{{ customer.nmae }}"), encoding="utf-8"
    )
    (folder / "pre_due.typ.j2").write_text("{{ plan.total }} {{ amount }}", encoding="utf-8")
    with pytest.raises(TemplateError) as caught:
        load_templates(tmp_path)
    message = str(caught.value)
    assert "zh-CN/overdue_reminder.typ.j2:4: unknown field 'customer.nmae'" in message
    assert "zh-CN/pre_due.typ.j2:1: unknown field 'plan'" in message
    assert "zh-CN/pre_due.typ.j2:1: unknown field 'amount'" in message


def test_the_template_version_changes_with_any_part_it_uses(tmp_path: Path) -> None:
    shipped = load_templates()
    folder = tmp_path / "zh-CN"
    folder.mkdir()
    part = (SHIPPED / "zh-CN" / "_pay.typ.j2").read_text(encoding="utf-8")
    (folder / "_pay.typ.j2").write_text(part + "\n", encoding="utf-8")
    changed = load_templates(tmp_path)
    assert shipped.version("overdue_reminder", "zh-CN") != changed.version("overdue_reminder", "zh-CN")
    assert shipped.version("overdue_reminder", "en-US") == changed.version("overdue_reminder", "en-US")


def test_the_validation_notice_itemizes_to_the_current_amount_like_model_form_b1() -> None:
    data = data_for("us_validation_notice", "en-US")
    v = data["validation"]
    assert isinstance(v, dict)

    def dollars(text: object) -> Decimal:
        return Decimal(str(text).replace("$", "").replace(",", ""))

    itemized = dollars(v["itemization_amount"]) + dollars(v["interest"]) + dollars(v["fees"])
    assert itemized - dollars(v["payments"]) == dollars(v["current"])
    assert v["end_date"] == "December 10, 2025"  # E-US-2: mailed 2025-11-03
    text = flat(text_of(render(data)))
    for needed in (
        "Howdoyouwanttorespond?",
        "Thisisnotmydebt.",
        "Theamountiswrong.",
        "Ienclosedthisamount:",
        "Mailthisformto:",
        "www.cfpb.gov/debt-collection",
        "Póngaseencontacto",
    ):
        assert needed in text, needed
    assert len(PdfReader(io.BytesIO(render(data))).pages) == 1  # the notice and its tear-off on one page
