"""Load a function's handler.py the way a Lambda container does: a fresh module per
container (its own globals: config, connection, clients), from functions/<name>/."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS_DIR = ROOT / "functions"
_serial = itertools.count()


def load_function(name: str, *, fresh: bool = True) -> ModuleType:
    """Import functions/<name>/handler.py; `fresh` gives a new container (new globals)."""
    module_name = f"slotguard_fn_{name}_{next(_serial)}" if fresh else f"slotguard_fn_{name}"
    if not fresh and module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, FUNCTIONS_DIR / name / "handler.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"no handler for function {name}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
