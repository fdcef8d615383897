"""Running a comparison script in the local database's own interpreter (.local/venv-db, where
SecantusDB and WiredTiger are installed), with deploy/local importable."""

from __future__ import annotations

import subprocess

from deploy.local.stack import LOCAL, REPO


def counts_printed_by(script: str, timeout_s: float) -> list[int]:
    """Run `script` there; it must succeed and print integers (how often each answer came)."""
    result = subprocess.run(
        [str(LOCAL / "venv-db" / "bin" / "python"), "-c", script, str(REPO / "deploy/local")],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [int(n) for n in result.stdout.split()]
