"""A pytest plugin for `make mutation` (tests/mutation/python_mutants.py): mutmut runs pytest once
per mutant, in processes side by side, each a session of its own; each gets a temporary folder of
its own (pytest's shared default would be cleared by one session under another's feet)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

BASETEMP_ROOT = Path(os.environ.get("SLOTGUARD_MUTATION_BASETEMP", "/tmp/slotguard-mutation"))  # noqa: S108


def pytest_configure(config: pytest.Config) -> None:
    if not config.option.basetemp:
        BASETEMP_ROOT.mkdir(parents=True, exist_ok=True)
        config.option.basetemp = str(BASETEMP_ROOT / str(os.getpid()))
