import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def cli_env():
    """Environment for subprocess CLI tests: one torch thread, repo on the path."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def kdp_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "kdp_edge.cli", *args]
