"""The one composition root: picks the database and configuration for a command, the API or a test."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from duecourse.config import Config, load_config
from duecourse.store.db import default_url, make_engine


@dataclass(frozen=True)
class App:
    """What every service needs: the database and the validated configuration."""

    url: str
    engine: Engine
    config: Config


def bootstrap(db_url: str | None = None, config_path: Path | None = None) -> App:
    """Build the application; nothing connects before this is called."""
    url = db_url or os.environ.get("DUECOURSE_DATABASE_URL") or default_url()
    config = load_config(config_path)
    return App(url=url, engine=make_engine(url), config=config)
