"""What the whole suite shares: a bytecode cache for its Python processes.

The suite starts a few hundred Python processes besides its own: the SQLite worker of the bulk paths (one
or more per bulk read or write), the dispatcher's and the letters' worker processes (spawned), Spark's
Python workers, the command line in a subprocess, and pytest-xdist's workers. Each imports NumPy, PyArrow,
Polars and more. Where ``PYTHONDONTWRITEBYTECODE`` is set (or ``python -B``), no ``.pyc`` is ever written,
so every one of those processes compiles all of it from source again: collecting the suite took 12.5 s
instead of 2.5 s, a SQLite worker started in 0.65 s instead of 0.35 s.

There the suite keeps the bytecode it compiles in a folder of its own outside the source tree
(``sys.pycache_prefix``, and ``PYTHONPYCACHEPREFIX`` for the processes it starts), so nothing is written
beside the sources. Python checks each cached file against its source's modification time and size, so
an edited module is compiled again. ``DUECOURSE_TEST_BYTECODE=0`` leaves the setting as it was.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from pathlib import Path


def _private_folder(path: Path) -> bool:
    """``path`` exists or was made as a folder of this user's alone (not a link, not shared)."""
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        found = path.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(found.st_mode) and found.st_uid == os.getuid() and not found.st_mode & 0o077


def _cache_bytecode() -> None:
    if not sys.dont_write_bytecode or os.environ.get("DUECOURSE_TEST_BYTECODE") == "0":
        return
    prefix = os.environ.get("PYTHONPYCACHEPREFIX") or sys.pycache_prefix
    folder = Path(prefix) if prefix else Path(tempfile.gettempdir()) / f"duecourse-test-pycache-{os.getuid()}"
    if not prefix and not _private_folder(folder):
        return
    sys.pycache_prefix = str(folder)
    sys.dont_write_bytecode = False
    os.environ["PYTHONPYCACHEPREFIX"] = str(folder)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


_cache_bytecode()
