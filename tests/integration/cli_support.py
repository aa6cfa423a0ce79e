"""A database set up through the command line, as a user would: a configuration file, ``init``, then
each file imported; the tests that need a portfolio and a strategy start here."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from textwrap import dedent

from test_cli import ACCOUNTS, CUSTOMERS, DUES, PAYMENTS

from duecourse.cli import main

# The shared small portfolio of ``test_cli`` (C1 in Shanghai with a card A1 and a loan A2; C2 in New
# York with a card A3), in the order a user imports it.
PORTFOLIO: tuple[tuple[str, str], ...] = (
    ("customers", CUSTOMERS),
    ("accounts", ACCOUNTS),
    ("dues", DUES),
    ("payments", PAYMENTS),
)


def cli_with(
    db_url: str, tmp_path: Path, config_text: str, files: Sequence[tuple[str, str]] = PORTFOLIO
) -> tuple[Callable[..., int], Path]:
    """The command line on ``db_url`` with ``config_text`` as ``duecourse.toml``, the database made and
    ``files`` imported (kind, CSV text); returns it and the configuration's path."""
    config = tmp_path / "duecourse.toml"
    config.write_text(config_text, encoding="utf-8")

    def cli(*args: str) -> int:
        return main(["--db", db_url, "--config", str(config), *args])

    assert cli("init") == 0
    for kind, body in files:
        path = tmp_path / f"{kind}.csv"
        path.write_text(dedent(body), encoding="utf-8")
        assert cli("import", kind, str(path)) == 0
    return cli, config
