"""PySpark stays out of ``duecourse`` until the Spark runner is used."""

from __future__ import annotations

import subprocess
import sys


def test_importing_duecourse_and_its_command_does_not_import_pyspark() -> None:
    code = (
        "import sys\n"
        "import duecourse, duecourse.cli, duecourse.services.portfolio, duecourse.services.spark_run\n"
        "duecourse.cli.build_parser()\n"
        "sys.exit(sorted(m for m in sys.modules if m.split('.')[0] in ('pyspark', 'py4j')) or None)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
