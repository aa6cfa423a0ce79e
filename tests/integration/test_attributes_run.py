"""Segments by account attributes through the command line, on SQLite and PostgreSQL: the scores are
imported with their day, the run puts each account on the ladder its score in force chooses, explain
says which value decided, a re-import changes nothing and a changed value is refused at its row.

The shared set-up's card A1 (C1, due 2025-04-23, nothing paid) and loan A2 are late on 2025-05-05; the
US card A3 is current. A1's score is 720 from May (a high-risk segment of its own), 650 from June.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from cli_support import cli_with
from test_cli import write

from duecourse.config import default_config_text

SEGMENT = """
[attributes]
risk_score = "number"
branch = "text"

[[strategy.segments]]
name = "high-risk"
when = { attributes = { risk_score = { min = "700" } } }

  [[strategy.segments.stages]]
  name = "HR-1"
  min_days_past_due = 1

"""
SCORES = """\
account_id,valid_from,risk_score,branch
A1,2025-05-01,720,north
A2,2025-05-01,310.5,south
A1,2025-06-01,650,north
"""


def _setup(db_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    text = default_config_text().replace("[[strategy.stages]]", SEGMENT + "[[strategy.stages]]", 1)
    return cli_with(db_url, tmp_path, text)[0]


def _stages(cli, day: str, folder: Path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    path = folder / f"state-{day}.csv"
    assert cli("export", "state", "--as-of", day, "--out", str(path)) == 0
    with path.open(encoding="utf-8", newline="") as file:
        return {row["account_id"]: row["stage"] for row in csv.DictReader(file)}


def test_the_score_in_force_chooses_the_segment_and_explain_says_so(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = _setup(db_url, tmp_path)
    scores = write(tmp_path, "scores.csv", SCORES)
    capsys.readouterr()
    assert cli("import", "attributes", str(scores)) == 0
    assert "6 attribute values added, 0 already there" in capsys.readouterr().out  # two a row
    assert cli("import", "attributes", str(scores), "--json") == 0
    assert json.loads(capsys.readouterr().out) | {"file": ""} == {
        "ok": True,
        "kind": "attributes",
        "file": "",
        "rows_added": 0,
        "rows_unchanged": 6,
    }

    assert cli("run", "--as-of", "2025-05-05") == 0
    stages = _stages(cli, "2025-05-05", tmp_path)
    assert stages["A1"] == "HR-1"  # 720 from 05-01
    assert stages["A2"] != "HR-1" and stages["A2"] != "current"  # 310.5: the default ladder
    assert cli("explain", "A1", "--as-of", "2025-05-05") == 0
    text = capsys.readouterr().out
    assert "high-risk" in text and "risk_score 720: risk_score ≥ 700" in text

    # From June the score is 650: the default ladder again.
    assert cli("run", "--as-of", "2025-06-02") == 0
    assert _stages(cli, "2025-06-02", tmp_path)["A1"] not in {"HR-1", "current"}


def test_a_changed_value_is_refused_at_its_row_and_nothing_is_written(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = _setup(db_url, tmp_path)
    assert cli("import", "attributes", str(write(tmp_path, "scores.csv", SCORES))) == 0
    changed = write(
        tmp_path,
        "changed.csv",
        "account_id,valid_from,risk_score\nA3,2025-05-01,500\nA1,2025-06-01,651\n",
    )
    capsys.readouterr()
    assert cli("import", "attributes", str(changed)) == 1
    err = capsys.readouterr().err
    assert f"{changed}:3:risk_score: account A1 has risk_score '650' from 2025-06-01 already" in err
    assert "a new value needs a new valid_from" in err
    # All or nothing: A3's new score was not written either.
    again = write(tmp_path, "a3.csv", "account_id,valid_from,risk_score\nA3,2025-05-01,500\n")
    capsys.readouterr()
    assert cli("import", "attributes", str(again)) == 0
    assert "1 attribute values added, 0 already there" in capsys.readouterr().out
