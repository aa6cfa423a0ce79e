"""The clarity lint catches a missing element, a threat, a figure that is not the account's, a long
sentence, and a template naming a field its kind lacks; the shipped templates pass it."""

from __future__ import annotations

from pathlib import Path

import pytest

from duecourse.letters.lint import Finding, grade_level, lint
from duecourse.letters.render import SHIPPED, load_templates
from tests.unit.letters_support import config


def reviewed(tmp_path: Path, name: str, change: tuple[str, str]) -> Path:
    """A directory holding one shipped template with one change, as a compliance officer would review."""
    source = (SHIPPED / name).read_text(encoding="utf-8")
    old, new = change
    assert old in source
    target = tmp_path / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(source.replace(old, new), encoding="utf-8")
    return tmp_path


def findings(directory: Path | None, kind: str, locale: str) -> list[Finding]:
    return lint(load_templates(directory, strict=False), config(), [kind], [locale])


@pytest.mark.parametrize("locale", ["zh-CN", "en-US", "en-GB"])
def test_the_shipped_overdue_reminders_pass(locale: str) -> None:
    assert findings(None, "overdue_reminder", locale) == []


def test_a_letter_without_ignore_if_paid_is_caught(tmp_path: Path) -> None:
    folder = reviewed(tmp_path, "zh-CN/_pay.typ.j2", ("如您已经还款，请忽略本函。", ""))
    found = findings(folder, "overdue_reminder", "zh-CN")
    assert [(f.template, f.line, f.rule) for f in found] == [
        ("zh-CN/overdue_reminder.typ.j2", 3, "element.missing")
    ]
    assert "ignore_if_paid" in found[0].message
    assert str(found[0]).startswith("zh-CN/overdue_reminder.typ.j2:3: element.missing: ignore_if_paid")


def test_a_threat_is_caught_at_its_line(tmp_path: Path) -> None:
    folder = reviewed(
        tmp_path,
        "zh-CN/overdue_reminder.typ.j2",
        ("请您在", "逾期不还，我们将通知您的家人和单位，并追究刑事责任。\n\n请您在"),
    )
    found = findings(folder, "overdue_reminder", "zh-CN")
    rules = {(f.template, f.line, f.rule) for f in found}
    assert ("zh-CN/overdue_reminder.typ.j2", 10, "words.prohibited") in rules
    assert {f.message.split("'")[1] for f in found if f.rule == "words.prohibited"} == {
        "家人",
        "单位",
        "刑事责任",
    }


def test_english_threats_are_caught_but_police_for_identity_theft_is_allowed(tmp_path: Path) -> None:
    folder = reviewed(
        tmp_path,
        "en-US/overdue_reminder.typ.j2",
        (
            "Please pay the total",
            "If you do not pay, we will call the police and your employer.\n\nPlease pay the total",
        ),
    )
    found = [f for f in findings(folder, "overdue_reminder", "en-US") if f.rule == "words.prohibited"]
    assert sorted(f.message.split("'")[1] for f in found) == ["police", "your employer"]
    assert all(f.template == "en-US/overdue_reminder.typ.j2" and f.line == 12 for f in found)


def test_an_amount_or_date_typed_into_a_template_is_caught(tmp_path: Path) -> None:
    folder = reviewed(
        tmp_path,
        "en-GB/overdue_reminder.typ.j2",
        (
            "Please pay the total overdue",
            "A fee of £25.00 applies from 1 April 2025. Please pay the total overdue",
        ),
    )
    rules = {(f.rule, f.message.split(" ")[1]) for f in findings(folder, "overdue_reminder", "en-GB")}
    assert ("figure.amount", "£25.00") in rules
    assert ("figure.date", "1") in rules


def test_a_sentence_too_long_to_read_is_caught(tmp_path: Path) -> None:
    long = "，".join(["我们会在收到您的还款后尽快更新您的账户状态并通知您"] * 4) + "。"
    folder = reviewed(tmp_path, "zh-CN/overdue_reminder.typ.j2", ("请您在", long + "\n\n请您在"))
    found = [f for f in findings(folder, "overdue_reminder", "zh-CN") if f.rule == "readability.sentence"]
    assert len(found) == 1 and "characters (limit 80)" in found[0].message


def test_a_template_field_typo_is_a_finding(tmp_path: Path) -> None:
    folder = reviewed(
        tmp_path, "en-US/overdue_reminder.typ.j2", ("{{ amounts.total }}", "{{ amounts.totl }}")
    )
    found = findings(folder, "overdue_reminder", "en-US")
    assert (
        Finding("en-US/overdue_reminder.typ.j2", 6, "template.field", "unknown field 'amounts.totl'") in found
    )


def test_the_grade_level_of_plain_and_dense_english() -> None:
    plain = ["Please pay the total by the date below.", "Call us if you cannot pay it all."]
    dense = [
        "Notwithstanding the aforementioned contractual obligations, consequential remediation necessitates "
        "immediate comprehensive satisfaction of outstanding indebtedness."
    ]
    assert grade_level(plain) < 4
    assert grade_level(dense) > 14


def test_every_shipped_template_of_every_kind_and_locale_passes() -> None:
    """Each kind's PDF, read back, has every element its checklist asks for, and only the data's figures."""
    assert lint(load_templates(), config()) == []
