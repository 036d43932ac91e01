"""Run promtool/amtool; a missing tool fails the test with the way to install it (never skips)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from devstack.observability import INSTALL_HINT
from tests.support import ROOT


def run_tool(*command: str, cwd=ROOT, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run a Prometheus/Alertmanager CLI; fail the calling test if it is missing or exits non-zero."""
    path = shutil.which(command[0])
    if path is None:
        pytest.fail(f"{command[0]} not found on PATH: {INSTALL_HINT}")
    result = subprocess.run(
        [path, *command[1:]], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result
