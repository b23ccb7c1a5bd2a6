import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_cli(module: str, *args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `python -m module args` as a user would; returns the finished process."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd or REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def quickstart() -> Path:
    return REPO / "sweeps" / "quickstart.yaml"
