"""The restore drill (deploy/backup/drill.py) in the PostgreSQL tier: on a cluster of its own
with pgBackRest archiving to an encrypted repository, Deni's books are backed up, lost and
restored to a named moment, and come back equal to that moment and to nothing after it.

It needs pgBackRest and PostgreSQL's server binaries; `make test` installs pgBackRest with apt
when run as root (`make pgbackrest`), and this test installs nothing. Without them it skips,
and fails under CI=true, so CI never passes with the drill silently off. It runs the drill as
a separate process, as an operator would; DENI_BACKUP_DRILL_PORT picks its cluster's port
(else a free one). docs/backups.md reports what it measures.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DRILL = REPO / "deploy" / "backup" / "drill.py"
DRILL_TIMEOUT_S = 600

pytestmark = pytest.mark.postgres


def _tools_missing() -> list[str]:
    missing = [] if shutil.which("pgbackrest") else ["pgbackrest (make pgbackrest)"]
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")) and not shutil.which("initdb"):
        missing.append("PostgreSQL's server binaries (initdb)")
    return missing


@pytest.fixture
def drill_tools() -> None:
    if not os.environ.get("DENI_TEST_POSTGRES_URL"):
        pytest.skip("DENI_TEST_POSTGRES_URL is not set: PostgreSQL tier off")
    missing = _tools_missing()
    if missing:
        message = f"the restore drill needs {', '.join(missing)}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.mark.usefixtures("drill_tools")
def test_the_books_survive_losing_the_database_server(tmp_path: Path) -> None:
    out = tmp_path / "drill.json"
    done = subprocess.run(  # noqa: S603 (our own interpreter and script)
        [sys.executable, str(DRILL), "--loans", "20", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=DRILL_TIMEOUT_S,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, f"{done.stdout[-6000:]}\n{done.stderr[-6000:]}"
    report = json.loads(out.read_text())
    checks = report["checks"]
    assert checks == dict.fromkeys(checks, True)
    assert set(checks) >= {
        "every table equals the moment",
        "trial balance equals the moment",
        "deni ledger check passes",
        "deni audit verify passes",
        "nothing after the moment",
        "recovery stopped at the restore point",
        "every repository file is encrypted; no other passphrase opens it",
    }
    books = report["ledger"]
    # Written before the backup, between it and the moment, and after the moment.
    assert 0 < books["entries_at_backup"] < books["entries_at_moment"]
    assert books["entries_at_moment"] < books["entries_at_disaster"]
    assert books["entries_restored"] == books["entries_at_moment"]
    assert books["tables_differing"] == []
    assert report["backup"]["cipher"] == "aes-256-cbc"
    # Measured, not bounded: how long they take is the machine's business (docs/backups.md).
    assert report["rpo"]["archive_lag_s"] > 0
    assert report["rto"]["total_s"] > report["rto"]["restore_s"] > 0
