"""Shared fixtures: the bundled MNIST (loaded once), the nerve command-line tool, the checkout."""
import os
import subprocess
from pathlib import Path

import pytest

import nerve

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def mnist():
    return nerve.datasets.mnist()


@pytest.fixture(scope="session")
def cli():
    """Runs the `nerve` executable of this checkout (NERVE_CLI overrides where it is)."""
    exe = os.environ.get("NERVE_CLI", str(ROOT / ".build" / "release" / "nerve"))
    if not Path(exe).is_file():
        pytest.fail(f"the nerve executable is not at {exe}: run swift build -c release (or set NERVE_CLI)")

    def run(*args):
        r = subprocess.run([exe, *map(str, args)], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout

    return run


@pytest.fixture(scope="session")
def root():
    return ROOT
