"""``duecourse demo`` end to end on a small portfolio: the runs, the tables, the state export, and the last
days' messages through the real outbox and dispatcher into .eml files, JSON lines and a print drop."""

from __future__ import annotations

import csv
import email
import email.policy
import json
import re
import subprocess
from pathlib import Path

import pytest

from duecourse.cli import main


def test_the_demo_runs_the_days_and_sends_the_last_days_messages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the shipped configuration, no ./duecourse.toml
    out = tmp_path / "out"
    # OUT as the user gives it, relative to the working directory: every file lands under it, not below
    assert main(["demo", "--accounts", "300", "--days", "16", "--seed", "3", "--out", "out"]) == 0
    shown = capsys.readouterr().out
    assert "Messages of the last 14 days" in shown

    summary = json.loads((out / "demo-summary.json").read_text())
    assert summary["days"] == 16
    messages = summary["messages"]
    sent = {key: n for key, n in messages["by_channel_and_state"].items() if key.endswith("/sent")}
    assert sum(sent.values()) > 0
    # Placement with an agency at M4+ waits, in China, for a final demand and the deadline it gave: no final
    # demand of the 14 days of messages can have reached its deadline (15 working days) yet.
    assert "Escalation tasks" in shown
    tasks = messages["tasks"]
    assert tasks and all(key.startswith("agency_placement/") for key in tasks)
    assert all(key == "agency_placement/waiting/CN-COL-06" for key in tasks if key.endswith("CN-COL-06"))
    assert "agency_placement/open/CN-COL-06" not in tasks
    with (out / f"state-{summary['to']}.csv").open(encoding="utf-8") as f:
        assert len(list(csv.DictReader(f))) == summary["accounts"]

    emails = sorted((out / "email").glob("*.eml"))
    assert len(emails) == sent.get("email/sent", 0)
    for path in emails[:5]:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert message["List-Unsubscribe"] is not None
        assert [part.get_content_type() for part in message.iter_attachments()] == ["application/pdf"]
    lines = (
        (out / "sms" / "sms.jsonl").read_text(encoding="utf-8").splitlines() if sent.get("sms/sent") else []
    )
    assert len(lines) == sent.get("sms/sent", 0)
    assert all(json.loads(line)["segments"] <= 2 for line in lines)
    batches = [b for b in sorted((out / "print").iterdir()) if b.is_dir() and not b.name.startswith(".")]
    letters = sum(len(list(batch.glob("[0-9]*.pdf"))) for batch in batches)
    assert letters == sent.get("letter/sent", 0) > 0
    for batch in batches:
        assert (batch / "READY").exists()
        check = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=batch, check=False)
        assert check.returncode == 0, batch
        # the print file: the cover sheet, then every letter of the manifest, page for page
        with (batch / "manifest.csv").open(encoding="utf-8") as f:
            pages = sum(int(row["pages"]) for row in csv.DictReader(f))
        info = subprocess.run(["pdfinfo", "print.pdf"], cwd=batch, capture_output=True, text=True, check=True)
        shown_pages = re.search(r"^Pages:\s+(\d+)$", info.stdout, re.MULTILINE)
        assert shown_pages is not None and int(shown_pages.group(1)) == 1 + pages
