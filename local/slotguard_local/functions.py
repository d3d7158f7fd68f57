"""The functions as the local stack runs them: where each one's handler is, which typed config it
reads (so which environment variables its containers get), how many containers it may have.

`load_function` imports a handler into this process (tests that call a handler directly); the
stack never does: it runs each function in its own container processes (slotguard_local.containers).
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

from pydantic import BaseModel

from slotguard.config import (
    BookingConfig,
    CleanupConfig,
    MetricsConfig,
    ProcessorConfig,
    ReceiverConfig,
    ReconcilerConfig,
)
from slotguard.topology import RESERVED_CONCURRENCY

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS_DIR = ROOT / "functions"
_serial = itertools.count()

# Each function's typed config (the model its handler validates at cold start).
CONFIGS: dict[str, type[BaseModel]] = {
    "booking": BookingConfig,
    "metrics": MetricsConfig,
    "webhook_receiver": ReceiverConfig,
    "webhook_processor": ProcessorConfig,
    "dlq_reconciler": ReconcilerConfig,
    "cleanup": CleanupConfig,
}
# The local stack runs the dev stage's reserved concurrency.
LOCAL_STAGE = "dev"
# A function without reserved concurrency draws on the account's unreserved pool (100 and more);
# a laptop cannot mirror that, so it gets this many containers at most.
UNRESERVED_LOCAL_CONCURRENCY = 8
# Variables every container gets from the stack's own environment (AWS credentials, the endpoint
# and region, as Lambda provides them; Powertools settings; the interpreter's). None of these
# prefixes is a config's but AWS_REGION (DatabaseSettings.aws_region), which Lambda sets anyway.
_PASSED_PREFIXES = (
    "AWS_",
    "POWERTOOLS_",
    "PYTHON",
    "LANG",
    "LC_",
    "PATH",
    "HOME",
    "TZ",
    "TMPDIR",
    "VIRTUAL_ENV",
)


def handler_path(name: str) -> Path:
    return FUNCTIONS_DIR / name / "handler.py"


def concurrency(name: str, cap: int | None = None) -> int:
    """The function's reserved concurrency in the dev stage, else UNRESERVED_LOCAL_CONCURRENCY;
    at most `cap` (SLOTGUARD_MAX_CONTAINERS: a small machine's limit) when given."""
    size = RESERVED_CONCURRENCY[LOCAL_STAGE].of(name) or UNRESERVED_LOCAL_CONCURRENCY
    return min(size, cap) if cap else size


def config_variables(model: type[BaseModel]) -> set[str]:
    """The environment variables a typed config reads (as slotguard.config's from_env names them)."""
    names: set[str] = set()
    for name, info in model.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            names |= config_variables(info.annotation)
        else:
            names.add((info.alias or name).upper())
    return names


def function_environment(
    name: str, settings: Mapping[str, str], base: Mapping[str, str], metrics_file: Path | None = None
) -> dict[str, str]:
    """What a container of `name` runs with: the base environment's AWS, Powertools and
    interpreter variables, the variables its own config reads (from the base environment, e.g.
    BOOKING_LOCK_WAIT_MS given to `make local`, then the stack's settings, which win: a
    DATABASE_URL given to the stack is its superuser's), and what Lambda sets itself. Nothing
    another function's config reads. Validated with the function's config, so a missing or bad
    setting fails here, at the stack's start, not in a container."""
    own = config_variables(CONFIGS[name]) if name in CONFIGS else set()
    env = {k: v for k, v in base.items() if k.startswith(_PASSED_PREFIXES)}
    env.update({k: v for k, v in base.items() if k in own})
    env.update({k: v for k, v in settings.items() if k in own})
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "POWERTOOLS_SERVICE_NAME": name,  # as the CDK app sets it, per function
            "PYTHONUNBUFFERED": "1",  # its log lines reach the console as they are written
        }
    )
    if metrics_file is not None:
        env["SLOTGUARD_EMF_FILE"] = str(metrics_file)
    if name in CONFIGS:
        CONFIGS[name].from_env(env)  # type: ignore[attr-defined]
    return env


def load_function(name: str, *, fresh: bool = True) -> ModuleType:
    """Import functions/<name>/handler.py into this process; `fresh` gives new module globals."""
    module_name = f"slotguard_fn_{name}_{next(_serial)}" if fresh else f"slotguard_fn_{name}"
    if not fresh and module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, handler_path(name))
    if spec is None or spec.loader is None:
        raise ImportError(f"no handler for function {name}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
