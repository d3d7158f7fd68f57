"""Builds the Lambda layer without Docker: pip downloads the manylinux aarch64 / CPython 3.13
wheels of the runtime dependencies listed in pyproject.toml, the `slotguard` package is copied
beside them, and everything is compiled to CPython 3.13 bytecode. Used by the CDK app through
local bundling.

Bytecode: /opt is read-only in Lambda, so a layer without `.pyc` files makes every cold start
compile boto3, pydantic and Powertools again. `.pyc` files are architecture-independent, so an
x86_64 python3.13 compiles them for arm64; `unchecked-hash` makes the interpreter trust them
without comparing source timestamps (which a zip does not keep faithfully)."""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "layers" / "slotguard"
# Lambda's Python 3.13 runtime runs on Amazon Linux 2023 (glibc 2.34): any of these wheels load.
PLATFORMS = ("manylinux_2_34_aarch64", "manylinux_2_28_aarch64", "manylinux2014_aarch64")
PYTHON_VERSION = "3.13"
BYTECODE = "compileall --invalidation-mode unchecked-hash"  # part of the asset hash


def python313() -> str:
    """An interpreter of the runtime's version, to compile the layer's bytecode: $PYTHON313, else
    python3.13 on PATH, else pyenv's. Refuses to build a layer it cannot compile."""
    candidates = [os.environ.get("PYTHON313", ""), shutil.which("python3.13") or ""]
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/3.13*/bin/python3.13"), reverse=True)
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 13))"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return candidate
    raise RuntimeError(
        "building the Lambda layer needs a CPython 3.13 interpreter to compile its bytecode: "
        "install python3.13 (e.g. `pyenv install 3.13`) or set PYTHON313=/path/to/python3.13"
    )


def runtime_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements: list[str] = project["dependencies"]
    return requirements


def source_hash() -> str:
    """Changes whenever the layer's content would: the pinned requirements or the package."""
    digest = hashlib.sha256()
    digest.update("\n".join(runtime_requirements()).encode())
    digest.update(f"{PLATFORMS}/{PYTHON_VERSION}/{BYTECODE}".encode())
    for path in sorted(PACKAGE.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(PACKAGE)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def install_packages(target: Path, platforms: list[str] | tuple[str, ...] = PLATFORMS) -> None:
    """pip installs the pinned runtime requirements' CPython 3.13 wheels for `platforms` into
    `target`, without compiling (the bytecode is compiled for 3.13 afterwards)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            "--target",
            str(target),
            *[arg for p in platforms for arg in ("--platform", p)],
            "--implementation",
            "cp",
            "--python-version",
            PYTHON_VERSION,
            "--only-binary=:all:",
            *runtime_requirements(),
        ],
        check=True,
    )


def build_layer(output_dir: str | Path) -> None:
    target = Path(output_dir) / "python"
    target.mkdir(parents=True, exist_ok=True)
    install_packages(target)
    shutil.copytree(
        PACKAGE,
        target / "slotguard",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        dirs_exist_ok=True,
    )
    compile_bytecode(target)


def compile_bytecode(target: Path) -> None:
    subprocess.run(
        [
            python313(),
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            str(target),
        ],
        check=True,
    )
