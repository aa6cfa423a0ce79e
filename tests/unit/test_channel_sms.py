"""SMS without a network: how texts are encoded and split, receipts read, gateway bodies built, opt-outs
recognised, and the demo's file transport writing each message once."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from duecourse.channels.base import ChannelDown, Outgoing, PermanentError, TransientError, reference_for
from duecourse.channels.sms import (
    HttpSmsTransport,
    SmsEncoding,
    SmsFileTransport,
    SmsSettings,
    is_opt_out,
    parse_http_receipt,
    parse_receipt,
    render_template,
    smpp_error,
    sms_encoding,
    sms_parts,
)

HAN = "欠"  # one UTF-16 unit, outside GSM-7
EMOJI = "😀"  # two UTF-16 units (a surrogate pair)


# ------------------------------------------------------------------------------------------ encoding


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", SmsEncoding("GSM-7", 0, 1, 160), id="empty-is-one-sms"),
        pytest.param("a" * 160, SmsEncoding("GSM-7", 160, 1, 160), id="gsm-160-fits-one"),
        pytest.param("a" * 161, SmsEncoding("GSM-7", 161, 2, 153), id="gsm-161-needs-two"),
        pytest.param("a" * 306, SmsEncoding("GSM-7", 306, 2, 153), id="gsm-306-is-two-full"),
        pytest.param("a" * 307, SmsEncoding("GSM-7", 307, 3, 153), id="gsm-307-needs-three"),
        pytest.param("€" * 80, SmsEncoding("GSM-7", 160, 1, 160), id="euro-counts-two"),
        pytest.param("€" * 80 + "a", SmsEncoding("GSM-7", 161, 2, 153), id="euro-161-septets"),
        pytest.param("^{}\\[~]|\f", SmsEncoding("GSM-7", 18, 1, 160), id="whole-extension-table"),
        pytest.param(
            "@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà", SmsEncoding("GSM-7", 42, 1, 160), id="basic-table"
        ),
        pytest.param("a" * 152 + "€" + "a" * 152, SmsEncoding("GSM-7", 306, 3, 153), id="euro-not-split"),
        pytest.param("a" * 151 + "€" + "a" * 153, SmsEncoding("GSM-7", 306, 2, 153), id="euro-ends-segment"),
        pytest.param(HAN * 70, SmsEncoding("UCS-2", 70, 1, 70), id="ucs2-70-fits-one"),
        pytest.param(HAN * 71, SmsEncoding("UCS-2", 71, 2, 67), id="ucs2-71-needs-two"),
        pytest.param(HAN * 134, SmsEncoding("UCS-2", 134, 2, 67), id="ucs2-134-is-two-full"),
        pytest.param(HAN * 135, SmsEncoding("UCS-2", 135, 3, 67), id="ucs2-135-needs-three"),
        pytest.param(EMOJI * 35, SmsEncoding("UCS-2", 70, 1, 70), id="emoji-counts-two"),
        pytest.param(HAN * 66 + EMOJI + HAN * 66, SmsEncoding("UCS-2", 134, 3, 67), id="emoji-not-split"),
        pytest.param(HAN * 65 + EMOJI + HAN * 67, SmsEncoding("UCS-2", 134, 2, 67), id="emoji-ends-segment"),
        pytest.param("a" * 159 + "`", SmsEncoding("UCS-2", 160, 3, 67), id="backtick-is-not-gsm"),
        pytest.param("Pay by 5 May. Reply STOP to opt out", SmsEncoding("GSM-7", 35, 1, 160), id="plain"),
    ],
)
def test_encoding_and_segments_count_exactly(text: str, expected: SmsEncoding) -> None:
    assert sms_encoding(text) == expected


def test_gsm_parts_carry_a_concatenation_header_and_unpacked_septets() -> None:
    data_coding, esm_class, parts = sms_parts("a" * 152 + "€" + "b" * 10, concat_ref=0x1A7)

    assert (data_coding, esm_class) == (0x00, 0x40)
    assert parts == [
        bytes([5, 0, 3, 0xA7, 2, 1]) + b"a" * 152,
        bytes([5, 0, 3, 0xA7, 2, 2]) + b"\x1b\x65" + b"b" * 10,
    ]


def test_a_short_text_is_one_part_without_a_header() -> None:
    assert sms_parts("Hi {you}", 7) == (0x00, 0x00, [b"Hi \x1b\x28you\x1b\x29"])
    assert sms_parts("你好", 7) == (0x08, 0x00, ["你好".encode("utf-16-be")])


def test_ucs2_parts_keep_a_surrogate_pair_together() -> None:
    data_coding, esm_class, parts = sms_parts(HAN * 66 + EMOJI + HAN * 5, 1)

    assert (data_coding, esm_class) == (0x08, 0x40)
    assert [p[:6] for p in parts] == [bytes([5, 0, 3, 1, 2, 1]), bytes([5, 0, 3, 1, 2, 2])]
    assert parts[0][6:] == (HAN * 66).encode("utf-16-be")
    assert parts[1][6:] == (EMOJI + HAN * 5).encode("utf-16-be")


def test_more_than_255_segments_is_refused() -> None:
    with pytest.raises(ValueError, match="256 segments"):
        sms_parts("a" * 153 * 256, 0)


# ------------------------------------------------------------------------------------------ receipts


def test_a_delivered_receipt_names_the_message_and_time() -> None:
    text = (
        "id:0A1B2C sub:001 dlvr:001 submit date:2501021030 done date:2501021031 stat:DELIVRD err:000 text:Hi"
    )

    event = parse_receipt(text, tz=dt.timezone(dt.timedelta(hours=8)))

    assert event.channel == "sms"
    assert event.outcome == "delivered"
    assert event.provider_id == "0A1B2C"
    assert event.at == dt.datetime(2025, 1, 2, 10, 31, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    assert event.reason == "stat:DELIVRD err:000"


@pytest.mark.parametrize(
    ("stat", "outcome"),
    [
        ("DELIVRD", "delivered"),
        ("UNDELIV", "bounced"),
        ("REJECTD", "bounced"),
        ("EXPIRED", "failed"),
        ("DELETED", "failed"),
        ("UNKNOWN", "failed"),
    ],
)
def test_receipt_stats_map_to_outcomes(stat: str, outcome: str) -> None:
    assert parse_receipt(f"id:7 sub:001 dlvr:000 stat:{stat} err:001 text:").outcome == outcome


def test_receipt_text_field_cannot_fake_a_status() -> None:
    event = parse_receipt("id:9 stat:UNDELIV err:011 text:stat:DELIVRD id:1")

    assert (event.provider_id, event.outcome, event.reason) == ("9", "bounced", "stat:UNDELIV err:011")


def test_receipt_with_seconds_in_its_dates_and_no_err() -> None:
    event = parse_receipt("id:x done date:250102103105 stat:DELIVRD")

    assert event.at == dt.datetime(2025, 1, 2, 10, 31, 5, tzinfo=dt.UTC)
    assert event.reason == "stat:DELIVRD"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sub:001 stat:DELIVRD", "needs id: and stat:"),
        ("id:1 sub:001", "needs id: and stat:"),
        ("id:1 stat:ENROUTE", "unknown receipt stat 'ENROUTE'"),
    ],
)
def test_what_is_not_a_final_receipt_is_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_receipt(text)


def test_http_receipt_with_default_fields() -> None:
    event = parse_http_receipt({"id": "gw-1", "status": "Undelivered"})

    assert (event.channel, event.outcome, event.provider_id, event.reason) == (
        "sms",
        "bounced",
        "gw-1",
        "status:Undelivered",
    )


def test_http_receipt_with_configured_dotted_fields_and_statuses() -> None:
    payload = {"data": {"msg": {"uuid": 42, "state": "DLVRD"}, "to": "+8613800138000"}, "ref": "abc"}

    event = parse_http_receipt(
        payload,
        id_field="data.msg.uuid",
        status_field="data.msg.state",
        statuses={"DLVRD": "delivered", "EXPRD": "failed"},
        recipient_field="data.to",
        reference_field="ref",
    )

    assert (event.outcome, event.provider_id, event.recipient) == ("delivered", "42", "+8613800138000")
    assert event.reason == "status:DLVRD reference:abc"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"status": "delivered"}, "needs 'id' and 'status'"),
        ({"id": "1"}, "needs 'id' and 'status'"),
        ({"id": "1", "status": "queued"}, "unknown delivery status 'queued'"),
    ],
)
def test_http_receipt_without_a_final_status_is_refused(payload: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_http_receipt(payload)


# ------------------------------------------------------------------------------------------ SMPP statuses


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        pytest.param(0x58, TransientError, id="throttled"),
        pytest.param(0x14, TransientError, id="queue-full"),
        pytest.param(0x08, TransientError, id="system-error"),
        pytest.param(0x45, TransientError, id="submit-failed"),
        pytest.param(0x400, TransientError, id="vendor-code"),
        pytest.param(0x0B, PermanentError, id="bad-destination"),
        pytest.param(0x0A, ChannelDown, id="bad-source"),
        pytest.param(0x0E, ChannelDown, id="bad-password"),
    ],
)
def test_smpp_statuses_translate(status: int, kind: type[Exception]) -> None:
    error = smpp_error(status, "submit_sm")

    assert type(error) is kind
    assert error.code == f"0x{status:08X}"
    assert error.reason.startswith("submit_sm: ")


# ------------------------------------------------------------------------------------------ HTTP body


def test_template_placeholders_are_replaced_once_everywhere() -> None:
    template = {
        "to": "{to}",
        "sms": [{"body": "{text}", "tag": "ref-{reference}", "priority": 1, "flash": False}],
        "sender": "{from}",
        "keep": "{other}",
    }
    values = {"to": "+15551234567", "from": "BANK", "text": "say {to} and {from}", "reference": "r1"}

    assert render_template(template, values) == {
        "to": "+15551234567",
        "sms": [{"body": "say {to} and {from}", "tag": "ref-r1", "priority": 1, "flash": False}],
        "sender": "BANK",
        "keep": "{other}",
    }


def test_http_request_body_and_headers() -> None:
    settings = SmsSettings(
        "http",
        url="http://127.0.0.1:1/sms",
        source_addr="BANK",
        headers={"Authorization": "Bearer t0k", "X-Ref": "{reference}"},
    )
    item = Outgoing(1, "acct-1/M1/sms/2025-01-02", "sms", "+15551234567", 'Hi € "x"'.encode())

    body, headers = HttpSmsTransport(settings).request_for(item)

    reference = reference_for("acct-1/M1/sms/2025-01-02")
    assert json.loads(body) == {
        "to": "+15551234567",
        "from": "BANK",
        "text": 'Hi € "x"',
        "reference": reference,
    }
    assert headers == {"Content-Type": "application/json", "Authorization": "Bearer t0k", "X-Ref": reference}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "fax"}, "must be 'smpp' or 'http'"),
        ({"kind": "smpp", "host": "smsc"}, "need: system_id, source_addr"),
        ({"kind": "http"}, "need: url, url"),
        ({"kind": "http", "url": "ftp://x"}, r"need: url \(http:// or https://\)"),
        ({"kind": "http", "url": "http://x", "timeout": 0}, "timeout must be positive"),
    ],
)
def test_settings_say_what_is_missing(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SmsSettings(**kwargs)  # type: ignore[arg-type]


def test_settings_do_not_show_the_password() -> None:
    settings = SmsSettings("smpp", host="h", system_id="bank", password="hunter2", source_addr="BANK")

    assert "hunter2" not in repr(settings)


# ------------------------------------------------------------------------------------------ opt-outs


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("STOP", True),
        (" stop ", True),
        ("Stop texting me", True),
        ("STOP.", True),
        ("unsubscribe", True),
        ("opt out", True),
        ("TD", True),
        ("回复退订", True),
        ("退订", True),
        ("I will pay tomorrow", False),
        ("Stopped by the branch", False),
        ("", False),
    ],
)
def test_opt_out_replies_are_recognised(text: str, expected: bool) -> None:
    assert is_opt_out(text) is expected


# ------------------------------------------------------------------------------------------ file transport


def outgoing(key: str, text: str, recipient: str = "+8613800138000") -> Outgoing:
    return Outgoing(1, key, "sms", recipient, text.encode())


def test_file_transport_writes_each_message_once(tmp_path: Path) -> None:
    path = tmp_path / "out" / "sms.jsonl"
    first = SmsFileTransport(path)

    receipt = first.send(outgoing("k1", "您好" * 40))
    first.send(outgoing("k1", "您好" * 40))
    SmsFileTransport(path).send(outgoing("k1", "您好" * 40))  # a re-run reads what is written
    SmsFileTransport(path).send(outgoing("k2", "Hello"))

    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert lines == [
        {
            "reference": reference_for("k1"),
            "to": "+8613800138000",
            "text": "您好" * 40,
            "encoding": "UCS-2",
            "segments": 2,
        },
        {
            "reference": reference_for("k2"),
            "to": "+8613800138000",
            "text": "Hello",
            "encoding": "GSM-7",
            "segments": 1,
        },
    ]
    assert receipt.provider_id == reference_for("k1")


def test_file_transport_survives_a_line_cut_short(tmp_path: Path) -> None:
    path = tmp_path / "sms.jsonl"
    path.write_text('{"reference": "r0", "to": "+1"}\n{"reference": "r', encoding="utf-8")

    SmsFileTransport(path).send(outgoing("k1", "Hi"))

    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[:2] == ['{"reference": "r0", "to": "+1"}', '{"reference": "r']
    assert json.loads(lines[2])["reference"] == reference_for("k1")


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (outgoing("k", "Hi", recipient="13800138000"), "not an E.164 phone number"),
        (Outgoing(1, "k", "sms", "+8613800138000", b"\xff\xfe"), "not UTF-8"),
    ],
)
def test_a_bad_number_or_text_is_permanent(tmp_path: Path, item: Outgoing, message: str) -> None:
    with pytest.raises(PermanentError, match=message):
        SmsFileTransport(tmp_path / "sms.jsonl").send(item)
    assert not (tmp_path / "sms.jsonl").exists()
