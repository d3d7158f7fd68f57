"""Cold import of each handler vs importing its own third-party dependencies, in fresh processes.

The figure: the time a fresh interpreter takes to import functions/<name>/handler.py (its init:
configuration, clients, the resolver and its routes), measured inside the process around the
import, so the interpreter's own start-up is in neither figure. The baseline: the same
interpreter importing, without any slotguard code, exactly the third-party modules that
handler's init loaded (every module of psycopg, pydantic, aws_lambda_powertools, boto3, … it left
in sys.modules, in the order it loaded them), found by one probe import per handler in this run.
So the ratio is what the handler's own code (its modules, the models, the routes and their
OpenAPI analysis, the configuration, the clients it builds) adds to the packages it cannot
do without.

Like Lambda: CPython 3.13 (pyenv's, python3.13 on PATH, or $PYTHON313) on the layer's pinned
packages, built the way infra/layer_build.py builds the layer but for this machine's
architecture (x86_64 wheels of the same versions; the layer's are aarch64), with the same
`unchecked-hash` bytecode; `-B`, as /opt and /var/task are read-only (so handler.py itself is
compiled on every cold start, as in Lambda); the environment a deployed function gets
(RDS Proxy with IAM auth, queue URLs, credentials in the environment). The packages are kept in
.bench-cache/ (keyed by the pinned requirements). Without Python 3.13 the row says so and uses
this interpreter with the venv's packages.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

from bench.common import TABLE, progress
from infra import layer_build

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".bench-cache"
RUNS = int(os.environ.get("BENCH_COLD_RUNS", "9"))
TARGET = "<= 1.25x"
# What Lambda sets for a deployed function (infra/constructs/functions.py), with harmless values:
# nothing is contacted at init.
ENVIRONMENT = {
    "POWERTOOLS_SERVICE_NAME": "bench",
    "POWERTOOLS_METRICS_NAMESPACE": "Slotguard",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "AKIDBENCHBENCHBENCH0",
    "AWS_SECRET_ACCESS_KEY": "bench-secret",
    "AWS_SESSION_TOKEN": "bench-token",
    "DB_HOST": "proxy.bench.invalid",
    "DB_AUTH": "iam",
    "DB_SSLMODE": "verify-full",
    "DB_SSLROOTCERT": "/opt/python/slotguard/certs/amazon-trust-services.pem",
    "WEBHOOK_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/000000000000/bench",
    "WEBHOOK_DLQ_URL": "https://sqs.us-east-1.amazonaws.com/000000000000/bench-dlq",
    "WORKER_STATE_SOURCE": "lambda:00000000-0000-4000-8000-000000000000",
    "DB_ADMIN_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:000000000000:secret:bench",
}
# One fresh import, timed inside the process. argv: the handler's file (or "-"), then the
# third-party modules to import instead. Prints the seconds and, for a handler, the third-party
# modules its import loaded, in load order.
PROBE = r"""
import importlib, importlib.util, json, sys, time
handler, modules, packages = sys.argv[1], sys.argv[2:], PACKAGES
before = set(sys.modules)
t0 = time.perf_counter()
if handler != "-":
    spec = importlib.util.spec_from_file_location("handler", handler)
    module = importlib.util.module_from_spec(spec)
    sys.modules["handler"] = module
    spec.loader.exec_module(module)
else:
    for name in modules:
        importlib.import_module(name)
seconds = time.perf_counter() - t0
loaded = [
    name for name, m in list(sys.modules.items())
    if name not in before and (getattr(m, "__file__", None) or "").startswith(packages)
    and name.split(".")[0] != "slotguard"
]
print(json.dumps({"seconds": seconds, "modules": loaded if handler != "-" else []}))
"""


def _python313() -> str | None:
    try:
        return layer_build.python313()
    except RuntimeError:
        return None


def _packages_313(python: str) -> Path:
    """The layer's pinned packages for this machine's architecture, CPython 3.13, compiled."""
    requirements = layer_build.runtime_requirements()
    key = hashlib.sha256(f"{requirements}{layer_build.BYTECODE}".encode()).hexdigest()[:16]
    target = CACHE / f"layer-py313-{platform.machine()}-{key}"
    if (target / ".complete").exists():
        return target
    machine = platform.machine()
    progress(f"cold start: installing the layer's packages for CPython 3.13 ({machine}) in {target}")
    shutil.rmtree(target, ignore_errors=True)
    platforms = [p.replace("aarch64", machine) for p in layer_build.PLATFORMS]
    layer_build.install_packages(target, platforms)
    _compile(python, target)
    (target / ".complete").touch()
    return target


def _compile(python: str, target: Path) -> None:
    subprocess.run(
        [python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash", str(target)],
        check=True,
    )


def _run(
    python: str, path: list[Path], packages: Path, handler: str, modules: list[str]
) -> tuple[float, list[str]]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join(map(str, path)),
        "PYTHONHASHSEED": "0",
        **ENVIRONMENT,
    }
    out = subprocess.run(
        [python, "-B", "-c", PROBE.replace("PACKAGES", repr(str(packages))), handler, *modules],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"cold import of {handler} failed: {out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return float(result["seconds"]), [str(m) for m in result["modules"]]


def main() -> None:
    python = _python313()
    with tempfile.TemporaryDirectory(prefix="slotguard-cold-") as tmp:
        if python is not None:
            packages = _packages_313(python)
            # The slotguard package as the layer ships it: copied beside the packages, compiled.
            layer = Path(tmp) / "layer"
            shutil.copytree(
                ROOT / "layers" / "slotguard",
                layer / "slotguard",
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            )
            _compile(python, layer)
            path = [layer, packages]
            where = "CPython 3.13, the layer's packages (x86_64 build), .pyc as shipped"
        else:
            python = sys.executable
            packages = Path(next(p for p in sys.path if p.endswith("site-packages")))
            path = [ROOT / "layers", packages]
            where = f"no CPython 3.13 here: Python {platform.python_version()} and the venv's packages"
        functions = sorted(p.parent.name for p in (ROOT / "functions").glob("*/handler.py"))
        progress(f"cold start: {len(functions)} handlers, {RUNS} fresh processes each ({where})")
        TABLE.notes.append(
            f"cold import rows: {where}; each figure is the median of {RUNS} fresh processes importing"
            " the handler, the baseline the median of as many importing the third-party modules that"
            " handler's init loaded (bench/cold_start.py), interleaved"
        )
        for name in functions:
            # The handler's file alone in its own folder, as in the function's asset.
            task = Path(tmp) / "task" / name
            # the function's whole asset, as Lambda gets it (the console's static files beside it)
            shutil.copytree(ROOT / "functions" / name, task, ignore=shutil.ignore_patterns("__pycache__"))
            handler = str(task / "handler.py")
            _, modules = _run(python, path, packages, handler, [])
            own: list[float] = []
            deps: list[float] = []
            for _ in range(RUNS):  # interleaved, so a burst of load hits both alike
                own.append(_run(python, path, packages, handler, [])[0])
                deps.append(_run(python, path, packages, "-", modules)[0])
            top = sorted({m.split(".")[0] for m in modules})
            h, d = median(own) * 1000, median(deps) * 1000
            TABLE.add(
                f"cold import: `{name}` handler vs importing its own third-party dependencies",
                f"{h:.0f} ms",
                f"{d:.0f} ms ({len(modules)} modules of {', '.join(top)})",
                f"{h / d:.2f}x",
                TARGET,
            )


if __name__ == "__main__":
    main()
