"""E-mails, text messages and push notifications say the letter's figures, carry the opt-out, and reveal
no debt before they are opened; the lint catches each way a template can get that wrong."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from duecourse.channels.content import (
    SHIPPED,
    ContentError,
    ContentNotUsed,
    Links,
    email_content,
    lint_content,
    load_content_templates,
    push_payload,
    read_html,
    render_content,
    shipped_templates,
    sms_text,
)
from duecourse.letters import KindNotUsed, TemplateError
from duecourse.letters.lint import Finding
from tests.unit.letters_support import config, data_for, sample

LOCALES = ("zh-CN", "en-US", "en-GB")
CN_LINKS = Links("https://portal.example.cn", "https://portal.example.cn/opt-out/T1", "TD")
US_LINKS = Links("https://portal.example.com", "https://portal.example.com/opt-out/T1", "STOP")
UK_LINKS = Links("https://portal.example.co.uk", "https://portal.example.co.uk/opt-out/T1", "STOP")
LINKS = {"zh-CN": CN_LINKS, "en-US": US_LINKS, "en-GB": UK_LINKS}


def reviewed(tmp_path: Path, name: str, change: tuple[str, str]) -> Path:
    """A directory holding one shipped file with one change, as a compliance officer would review it."""
    source = (SHIPPED / name).read_text(encoding="utf-8")
    old, new = change
    assert old in source
    target = tmp_path / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(source.replace(old, new), encoding="utf-8")
    return tmp_path


def findings(directory: Path, kind: str, locale: str) -> list[tuple[str, int, str]]:
    found = lint_content(directory, config(), kinds=[kind], locales=[locale])
    return [(f.template, f.line, f.rule) for f in found]


def line_of(path: Path, text: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(n for n, line in enumerate(lines, 1) if text in line)


# ---------------------------------------------------------------- the shipped content


def test_the_shipped_content_passes_the_lint() -> None:
    assert lint_content(None, config()) == []


def test_the_shipped_templates_are_loaded_once() -> None:
    assert shipped_templates() is shipped_templates()


SENT = (
    "pre_due",
    "overdue_reminder",
    "final_demand",
    "promise_confirmation",
    "plan_confirmation",
    "dispute_ack",
)


@pytest.mark.parametrize(
    ("kind", "locale"),
    # The UK sends no final demand: a default notice takes its place, by letter only.
    [(k, loc) for k in SENT for loc in LOCALES if (k, loc) != ("final_demand", "en-GB")],
)
def test_every_kind_a_strategy_sends_has_all_three_channels(kind: str, locale: str) -> None:
    assert all(shipped_templates().has(kind, locale, c) for c in ("email", "sms", "push"))


def test_the_chinese_overdue_email_says_the_letters_figures_politely() -> None:
    data = data_for("overdue_reminder", "zh-CN")
    mail = email_content("overdue_reminder", "zh-CN", data, CN_LINKS)
    assert mail.subject == "重要账户通知"
    url = data["portal"]["url"]
    for line in (
        "尊敬的王芳：",
        "截至2025年9月26日，您的信用卡账户（****5678）有款项逾期未还，逾期金额合计315.00元"
        "（大写：人民币叁佰壹拾伍元整）。最早一笔未还款项的到期日为2025年8月23日，已逾期34天。",
        "明细：本金300.00元，利息0.00元，费用（违约金）15.00元，罚息0.00元。",
        "请您在2025年10月16日（含当日）前还清上述逾期款项。逾期款项将按合同约定继续计息，"
        "逾期记录将按规定报送征信系统。",
        f"- 网上还款：{url}",
        "- 银行转账：户名 示例消费金融有限公司，开户行 中国工商银行北京金融街支行，"
        "账号 0200 0011 2233 4455 667，请在附言中填写账户尾号。",
        "如您已经还款，请忽略本邮件。",
        "客服热线：400-800-9999（每天 8:00 至 21:00）",
        "示例消费金融有限公司",
        "本邮件仅发送给王芳本人。如您不是王芳本人，请删除本邮件，并发送邮件至kefu@example.cn告知我们。",
        "如不希望再收到我们的电子邮件，请点击以下链接退订。退订无需登录，不收取任何费用：",
        "https://portal.example.cn/opt-out/T1",
    ):
        assert line in mail.text.splitlines(), line
    assert mail.text.endswith("https://portal.example.cn/opt-out/T1\n")


def test_the_us_pre_due_email_gives_amount_date_ways_to_pay_and_opt_out() -> None:
    data = data_for("pre_due", "en-US")
    mail = email_content("pre_due", "en-US", data, US_LINKS)
    assert mail.subject == "A reminder about your account"
    lines = mail.text.splitlines()
    assert lines[0] == "Dear Person A,"
    assert (
        "Your next payment on credit card account ****5678 is $75.00. It is due on November 25, 2025. "
        "If you pay it by then, it is not late and adds no late fee."
    ) in lines
    assert "If you have already paid, please ignore this email." in lines
    assert "Questions? Call us at (800) 123-4567, 8 a.m. to 8 p.m. Eastern Time, Monday to Saturday." in lines
    assert lines[-2:] == [
        "To unsubscribe from our emails, use the link below. It is free, and you do not need to sign in:",
        "https://portal.example.com/opt-out/T1",
    ]


def test_british_emails_use_british_conventions() -> None:
    mail = email_content("overdue_reminder", "en-GB", data_for("overdue_reminder", "en-GB"), UK_LINKS)
    lines = mail.text.splitlines()
    assert "As of 10 March 2025, the total overdue is £424.00:" in lines[2]
    assert "Questions? Call us on 0113 496 0000, 8am to 8pm Monday to Friday, 9am to 1pm Saturday." in lines
    assert "Yours sincerely," in lines
    assert any(line.startswith("- By bank transfer: Example Bank plc") for line in lines)
    assert "MoneyHelper" in mail.text
    assert "or check" not in mail.text  # the US way to pay by cheque


@pytest.mark.parametrize("locale", LOCALES)
def test_the_html_email_is_in_the_customers_language_with_the_same_facts_and_no_images(locale: str) -> None:
    data = data_for("overdue_reminder", locale)
    mail = email_content("overdue_reminder", locale, data, LINKS[locale])
    page = read_html(mail.html)
    assert page.lang == locale
    assert page.images == [] and page.scripts == 0
    assert LINKS[locale].opt_out_url in page.hrefs
    assert data["portal"]["url"] in page.hrefs
    shown = page.text()
    for figure in (data["amounts"]["total"], data["deadline"]["date"], data["issuer"]["hotline"]):
        assert figure in shown and figure in mail.text


@pytest.mark.parametrize("locale", LOCALES)
def test_a_customer_name_is_escaped_in_html_and_unchanged_in_text(locale: str) -> None:
    name = "<script>alert(1)</script> Tom & Jerry"
    data = data_for("pre_due", locale, sample(locale, name=name))
    mail = email_content("pre_due", locale, data, LINKS[locale])
    assert "<script>" not in mail.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Tom &amp; Jerry" in mail.html
    assert name in mail.text
    assert name in read_html(mail.html).text()  # what the reader sees is the name as typed
    assert name not in mail.subject


# ---------------------------------------------------------------- SMS and push


def test_the_chinese_text_message_is_signed_and_says_where_to_read_and_how_to_stop() -> None:
    data = data_for("pre_due", "zh-CN")
    url = data["portal"]["url"]
    assert sms_text("pre_due", "zh-CN", data, CN_LINKS) == (
        f"【示例消费金融有限公司】尊敬的客户，您有一条账户提醒，请点击查看：\n{url}\n如已还款请忽略。回复TD退订"
    )


def test_the_us_text_message_names_no_amount_and_carries_stop() -> None:
    data = data_for("overdue_reminder", "en-US")
    text = sms_text("overdue_reminder", "en-US", data, US_LINKS)
    assert text.splitlines() == [
        "Example Bank, N.A.: You have an important account message:",
        data["portal"]["url"],
        "If you have already paid, please ignore this message.",
        "Questions? Call (800) 123-4567. Reply STOP to opt out.",
    ]
    assert "$" not in text and "overdue" not in text


def test_a_debt_collector_says_so_in_its_text_messages_and_the_lint_lets_it() -> None:
    us = config().issuers["US"]
    agency = replace(config(), issuers={**config().issuers, "US": replace(us, collector="Acme Recovery LLC")})
    data = data_for("pre_due", "en-US")
    data["issuer"]["collector"] = "Acme Recovery LLC"
    text = sms_text("pre_due", "en-US", data, US_LINKS)
    assert text.startswith(
        "Acme Recovery LLC, a debt collector, for Example Bank, N.A.: You have a new account reminder:\n"
    )
    assert lint_content(None, agency, locales=["en-US"]) == []  # 12 CFR 1006.18(e) outranks the word list


def test_a_push_notification_reveals_nothing_and_opens_the_letters_link() -> None:
    data = data_for("final_demand", "en-US")
    assert push_payload("final_demand", "en-US", data, US_LINKS) == {
        "title": "Important account message",
        "body": "You have an important message about your account. Please read it soon.",
        "url": data["portal"]["url"],
    }


def test_the_links_portal_is_used_when_the_data_has_no_signed_link() -> None:
    data = data_for("promise_confirmation", "en-GB")
    data["portal"] = {**data["portal"], "url": ""}
    assert (
        push_payload("promise_confirmation", "en-GB", data, UK_LINKS)["url"] == "https://portal.example.co.uk"
    )
    assert "\nhttps://portal.example.co.uk\n" in sms_text("promise_confirmation", "en-GB", data, UK_LINKS)


def test_render_content_picks_the_channel() -> None:
    data = data_for("dispute_ack", "zh-CN")
    assert render_content("sms", "dispute_ack", "zh-CN", data, CN_LINKS) == sms_text(
        "dispute_ack", "zh-CN", data, CN_LINKS
    )
    mail = render_content("email", "dispute_ack", "zh-CN", data, CN_LINKS)
    assert not isinstance(mail, str | dict) and mail.subject == "我们已收到您的反馈"


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("channel", "kind", "locale"),
    [
        pytest.param("sms", "dispute_outcome", "en-US", id="outcome-by-letter-only"),
        pytest.param("email", "credit_report_notice", "zh-CN", id="credit-notice-by-letter-only"),
        pytest.param("push", "us_validation_notice", "en-US", id="validation-by-letter-only"),
        pytest.param("fax", "pre_due", "en-US", id="unknown-channel"),
    ],
)
def test_a_kind_without_content_for_a_channel_goes_by_letter_only(
    channel: str, kind: str, locale: str
) -> None:
    data = data_for(kind, locale)
    with pytest.raises(ContentNotUsed) as caught:
        render_content(channel, kind, locale, data, LINKS[locale])
    assert isinstance(caught.value, KindNotUsed)
    if channel != "fax":
        assert str(caught.value).startswith(f"{kind} is not sent by {channel} in {locale}")
        assert "goes by letter only" in str(caught.value)


def test_a_kind_the_jurisdiction_does_not_use_is_refused_even_with_a_template() -> None:
    data: dict[str, Any] = {**data_for("final_demand", "en-US"), "jurisdiction": "UK"}
    with pytest.raises(KindNotUsed, match="final_demand letters are not used for customers in UK"):
        email_content("final_demand", "en-US", data, US_LINKS)


def test_data_of_another_kind_is_refused() -> None:
    with pytest.raises(ContentError, match="the data is for pre_due in en-US, not overdue_reminder in en-US"):
        sms_text("overdue_reminder", "en-US", data_for("pre_due", "en-US"), US_LINKS)


def test_links_without_an_opt_out_are_refused() -> None:
    with pytest.raises(ContentError, match="empty: opt_out_url"):
        Links("https://portal.example.com", "", "STOP")


# ---------------------------------------------------------------- the lint catches


def test_a_debt_word_and_an_amount_in_a_subject_are_caught_at_their_line(tmp_path: Path) -> None:
    folder = reviewed(
        tmp_path, "zh-CN/previews.toml", ('subject = "账户提醒"', 'subject = "您有315.00元逾期欠款"')
    )
    line = line_of(folder / "zh-CN/previews.toml", "315.00元")
    found = lint_content(folder, config(), kinds=["pre_due"], locales=["zh-CN"])
    assert {(f.template, f.line, f.rule) for f in found} == {("zh-CN/previews.toml", line, "preview.reveals")}
    assert sorted(re.findall(r"with '([^']+)'", " ".join(f.message for f in found))) == [
        "0元",
        "315.00",
        "欠",
        "逾期",
    ]


def test_an_amount_in_a_push_body_is_caught(tmp_path: Path) -> None:
    change = ('push_body = "You have a new reminder', 'push_body = "Pay $75 now. You have a new reminder')
    folder = reviewed(tmp_path, "en-US/previews.toml", change)
    line = line_of(folder / "en-US/previews.toml", "Pay $75")
    assert findings(folder, "pre_due", "en-US") == [
        ("en-US/previews.toml", line, "preview.reveals"),
        ("en-US/previews.toml", line, "preview.reveals"),
    ]


def test_an_email_layout_without_the_opt_out_fails_every_email_of_the_locale(tmp_path: Path) -> None:
    change = ('<p><a href="{{ links.opt_out_url }}">Unsubscribe from our emails</a>', "<p>")
    folder = reviewed(tmp_path, "en-GB/_layout.email.html.j2", change)
    found = lint_content(folder, config(), locales=["en-GB"])
    htmls = {f"en-GB/{kind}.email.html.j2" for kind in ("pre_due", "overdue_reminder", "plan_confirmation")}
    htmls |= {f"en-GB/{kind}.email.html.j2" for kind in ("promise_confirmation", "dispute_ack")}
    assert {f.template for f in found} == htmls
    assert {f.rule for f in found} == {"element.missing", "html.opt_out"}
    assert all("opt_out" in f.message or "opt-out" in f.message for f in found)


def test_a_threat_in_a_text_message_is_caught_at_its_line(tmp_path: Path) -> None:
    change = ("You have an important account message:", "Read this or we call your employer:")
    folder = reviewed(tmp_path, "en-US/overdue_reminder.sms.j2", change)
    line = line_of(folder / "en-US/overdue_reminder.sms.j2", "your employer")
    assert findings(folder, "overdue_reminder", "en-US") == [
        ("en-US/overdue_reminder.sms.j2", line, "words.prohibited")
    ]


def test_a_text_message_saying_the_account_is_behind_is_caught(tmp_path: Path) -> None:
    change = ("You have an important account message:", "Your account is overdue:")
    folder = reviewed(tmp_path, "en-GB/overdue_reminder.sms.j2", change)
    assert findings(folder, "overdue_reminder", "en-GB") == [
        ("en-GB/overdue_reminder.sms.j2", 1, "sms.reveals")
    ]


def test_a_text_message_longer_than_two_segments_is_caught(tmp_path: Path) -> None:
    change = ("如已还款请忽略。", "如已还款请忽略。如有疑问请拨打客服热线，我们的客服人员将竭诚为您服务。")
    folder = reviewed(tmp_path, "zh-CN/pre_due.sms.j2", change)
    found = lint_content(folder, config(), kinds=["pre_due"], locales=["zh-CN"])
    assert [(f.template, f.rule) for f in found] == [("zh-CN/pre_due.sms.j2", "sms.segments")]
    assert found[0].message.startswith("3 UCS-2 segments (limit 2)")


def test_a_chinese_text_message_without_its_signature_is_caught(tmp_path: Path) -> None:
    folder = reviewed(tmp_path, "zh-CN/plan_confirmation.sms.j2", ("【{{ issuer.legal_name }}】", ""))
    found = lint_content(folder, config(), kinds=["plan_confirmation"], locales=["zh-CN"])
    assert [(f.template, f.rule) for f in found] == [
        ("zh-CN/plan_confirmation.sms.j2", "element.missing"),
        ("zh-CN/plan_confirmation.sms.j2", "element.missing"),
    ]
    assert sorted(f.message.split(" ")[0] for f in found) == ["sender", "signature"]


def test_an_amount_typed_into_the_text_but_not_the_html_is_caught(tmp_path: Path) -> None:
    change = ("If you cannot pay on time", "A late fee is $25.00. If you cannot pay on time")
    folder = reviewed(tmp_path, "en-US/pre_due.email.txt.j2", change)
    line = line_of(folder / "en-US/pre_due.email.txt.j2", "$25.00")
    assert findings(folder, "pre_due", "en-US") == [
        ("en-US/pre_due.email.html.j2", 1, "email.alternative"),
        ("en-US/pre_due.email.txt.j2", line, "figure.unknown"),
    ]


def test_html_without_its_language_or_with_an_image_without_alt_is_caught(tmp_path: Path) -> None:
    change = ('<html lang="{{ locale }}">', '<html>\n<img src="https://example.com/logo.png">')
    folder = reviewed(tmp_path, "zh-CN/_layout.email.html.j2", change)
    found = findings(folder, "dispute_ack", "zh-CN")
    assert found == [
        ("zh-CN/dispute_ack.email.html.j2", 1, "html.image"),
        ("zh-CN/dispute_ack.email.html.j2", 1, "html.lang"),
    ]


def test_a_missing_subject_leaves_the_email_half_there_and_is_caught(tmp_path: Path) -> None:
    folder = reviewed(tmp_path, "en-US/previews.toml", ('subject = "Confirming our call"\n', ""))
    found = findings(folder, "promise_confirmation", "en-US")
    assert ("en-US", 1, "template.field") in found
    assert ("en-US/previews.toml", 1, "template.missing") in found
    assert len(found) == 2


def test_a_long_english_sentence_is_caught(tmp_path: Path) -> None:
    long = " ".join(["and we would like you to know that this is a sentence"] * 4)
    change = ("We will write to you with what we find.", f"We will write to you {long}.")
    folder = reviewed(tmp_path, "en-GB/dispute_ack.email.txt.j2", change)
    found = lint_content(folder, config(), kinds=["dispute_ack"], locales=["en-GB"])
    assert [(f.template, f.rule) for f in found] == [
        ("en-GB/dispute_ack.email.txt.j2", "readability.sentence")
    ]


# ---------------------------------------------------------------- the field check at load


def test_a_misspelt_field_fails_at_load_with_its_file_and_line(tmp_path: Path) -> None:
    folder = reviewed(tmp_path, "en-US/pre_due.sms.j2", ("{{ issuer.hotline }}", "{{ issuer.hotlien }}"))
    line = line_of(folder / "en-US/pre_due.sms.j2", "hotlien")
    with pytest.raises(
        TemplateError, match=rf"en-US/pre_due\.sms\.j2:{line}: unknown field 'issuer\.hotlien'"
    ):
        load_content_templates(folder)


def test_a_misspelt_field_in_previews_names_the_toml_line(tmp_path: Path) -> None:
    change = ('push_title = "Account reminder"', 'push_title = "{{ customer.nam }}"')
    folder = reviewed(tmp_path, "en-GB/previews.toml", change)
    line = line_of(folder / "en-GB/previews.toml", "customer.nam")
    templates = load_content_templates(folder, strict=False)
    assert [(p.template, p.line) for p in templates.problems] == [("en-GB/previews.toml", line)]
    assert "pre_due.push_title: unknown field 'customer.nam'" in templates.problems[0].message


def test_a_file_that_is_not_a_message_template_is_refused(tmp_path: Path) -> None:
    (tmp_path / "en-US").mkdir()
    (tmp_path / "en-US" / "pre_due.fax.j2").write_text("hello", encoding="utf-8")
    found = lint_content(tmp_path, config(), kinds=["pre_due"], locales=["en-US"])
    assert found == [
        Finding(
            "en-US/pre_due.fax.j2",
            1,
            "template.field",
            "not a message template: KIND.{email.txt,email.html,sms}.j2",
        )
    ]


def test_a_subject_on_two_lines_is_sent_on_one(tmp_path: Path) -> None:
    change = ('subject = "Confirming our call"', 'subject = """Confirming\n  our call"""')
    folder = reviewed(tmp_path, "en-GB/previews.toml", change)
    data = data_for("promise_confirmation", "en-GB")
    mail = email_content(
        "promise_confirmation", "en-GB", data, UK_LINKS, templates=load_content_templates(folder)
    )
    assert mail.subject == "Confirming our call"


# ------------------------------------------------------------ a third-party collector's words to a contact

COLLECTOR = "location_request_collector"


def test_the_collectors_location_request_says_who_asks_and_why_and_names_no_employer() -> None:
    from duecourse.channels.content import SAMPLE_AGENT, collector_contact_data, sample_agent_links

    data = collector_contact_data(
        "location_request",
        "en-US",
        "US",
        contact_name="John Roe",
        relation="family",
        customer_name="Jane Roe",
        agent=SAMPLE_AGENT,
    )
    links = sample_agent_links(SAMPLE_AGENT, "en-US")
    text = sms_text(COLLECTOR, "en-US", data, links)
    assert text.startswith(
        "Hello John Roe, this is Jordan Lee. I am confirming or correcting location information"
    )
    assert "+12125550147" in text and text.endswith("Reply STOP to opt out")
    mail = email_content(COLLECTOR, "en-US", data, links)
    assert mail.subject == "Confirming contact details for Jane Roe"
    assert links.opt_out_url in mail.text and links.opt_out_url.startswith("https://locate.example/")
    for words in (text, mail.subject, mail.text, read_html(mail.html).text()):
        assert not re.search(
            r"(?i)example bank|example\.com|\(800\) 123-4567|debt|owe|collect|account", words
        )
    # only the collector's own words: a contact kind's data is refused
    with pytest.raises(ContentError):
        collector_contact_data(
            "overdue_reminder",
            "en-US",
            "US",
            contact_name="John Roe",
            relation="family",
            customer_name="Jane Roe",
            agent=SAMPLE_AGENT,
        )


@pytest.mark.parametrize(
    ("name", "change", "rule"),
    [
        (
            "en-US/location_request_collector.sms.j2",
            ("this is {{ agent.name }}.", "this is {{ agent.name }} of Example Bank."),
            "contact.employer",
        ),
        (
            "en-US/location_request_collector.email.txt.j2",
            ("please call me on {{ agent.phone }}", "please call us on (800) 123-4567"),
            "contact.employer",
        ),
        (
            "en-US/location_request_collector.sms.j2",
            ("I am confirming or correcting location information for", "I have a message for"),
            "element.missing",
        ),
        (
            "en-US/location_request_collector.email.html.j2",
            ("for {{ customer.name }}.</p>", "for {{ customer.name }}, about a debt.</p>"),
            "contact.reveals",
        ),
    ],
    ids=["employer-in-text", "employer-hotline-in-email", "no-location-purpose", "debt-in-html"],
)
def test_the_lint_catches_a_collectors_words_that_name_the_employer_or_lose_their_purpose(
    tmp_path: Path, name: str, change: tuple[str, str], rule: str
) -> None:
    folder = reviewed(tmp_path, name, change)
    found = lint_content(folder, config(), kinds=[COLLECTOR], locales=["en-US"])
    assert {(f.template, f.rule) for f in found} == {(name, rule)}, found


def test_the_collectors_words_are_linted_only_where_their_law_applies() -> None:
    assert lint_content(None, config(), kinds=[COLLECTOR], locales=["zh-CN", "en-GB", "en-US"]) == []
    with pytest.raises(ContentNotUsed):
        sms_text(COLLECTOR, "en-GB", {"kind": COLLECTOR, "locale": "en-GB"}, UK_LINKS)
