"""Shared fixtures: paths to the project and to the read-only reference material in ../shared."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DREAMS = SHARED / "data" / "dreams-spindles"


@pytest.fixture
def dreams_dir():
    """The DREAMS development excerpts, read in place (licence: never copy them into the project)."""
    if not (DREAMS / "excerpt1.txt").is_file():
        pytest.skip("../shared/data/dreams-spindles is not present")
    return DREAMS


def load_vectors(path: pathlib.Path) -> dict:
    """A public test-vector file from ../shared, read in place; skips the test when it is absent."""
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    return json.loads(path.read_text())


def run_cli(*args, timeout=300, **kwargs):
    """Run ``python -m dreamsync ARGS`` in a subprocess; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "dreamsync", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **kwargs)
