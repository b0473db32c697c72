"""Fixtures of the system tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.system.test_faults import Procs


@pytest.fixture
def procs(tmp_path: Path, spawned: list[subprocess.Popen[bytes]]) -> Procs:
    """Starts block processes and redis-servers; the ``spawned`` fixture ends them."""
    return Procs(tmp_path, spawned)
