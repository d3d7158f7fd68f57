"""A pytest plugin for `make mutation` (tests/mutation/python_mutants.py): mutmut runs pytest once
per mutant, in processes side by side, each a session of its own.

- Each session gets a temporary folder of its own (pytest's shared default would be cleared by one
  session under another's feet).
- A mutant's tests run cheapest first, by the time of each test's body as mutmut's stats phase
  timed it (not its fixtures' set-up): mutmut stops at the first failure, so a mutant a quick test
  kills costs that test, not the slow ones mutmut happened to list before it. Each test module's
  tests stay together (its module-scoped fixtures are set up once).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

BASETEMP_ROOT = Path(os.environ.get("SLOTGUARD_MUTATION_BASETEMP", "/tmp/slotguard-mutation"))  # noqa: S108
STATS = Path("mutmut-stats.json")  # mutmut runs pytest in .mutmut/mutants/, where it keeps its stats


def pytest_configure(config: pytest.Config) -> None:
    if not config.option.basetemp:
        BASETEMP_ROOT.mkdir(parents=True, exist_ok=True)
        config.option.basetemp = str(BASETEMP_ROOT / str(os.getpid()))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Only a mutant's run (mutmut names it), never the stats phase, which is what times the tests
    if "__mutmut_" not in os.environ.get("MUTANT_UNDER_TEST", "") or not STATS.is_file():
        return
    took: dict[str, float] = json.loads(STATS.read_text(encoding="utf-8")).get("duration_by_test", {})
    unknown = max(took.values(), default=0.0) + 1.0  # a test not timed yet goes last

    def cost(item: pytest.Item) -> float:
        return took.get(item.nodeid, unknown)

    def module(item: pytest.Item) -> str:
        return item.nodeid.split("::", 1)[0]

    module_cost: dict[str, float] = {}
    for item in items:
        module_cost[module(item)] = min(module_cost.get(module(item), unknown), cost(item))
    items.sort(key=lambda item: (module_cost[module(item)], module(item), cost(item)))
