"""Builds the Lambda layer without Docker: pip downloads the manylinux aarch64 / CPython 3.13
wheels of the runtime dependencies listed in pyproject.toml, and the `slotguard` package is
copied beside them. Used by the CDK app through local bundling."""

from __future__ import annotations

import hashlib
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


def runtime_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements: list[str] = project["dependencies"]
    return requirements


def source_hash() -> str:
    """Changes whenever the layer's content would: the pinned requirements or the package."""
    digest = hashlib.sha256()
    digest.update("\n".join(runtime_requirements()).encode())
    digest.update(f"{PLATFORMS}/{PYTHON_VERSION}".encode())
    for path in sorted(PACKAGE.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(PACKAGE)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def build_layer(output_dir: str | Path) -> None:
    target = Path(output_dir) / "python"
    target.mkdir(parents=True, exist_ok=True)
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
            *[arg for p in PLATFORMS for arg in ("--platform", p)],
            "--implementation",
            "cp",
            "--python-version",
            PYTHON_VERSION,
            "--only-binary=:all:",
            *runtime_requirements(),
        ],
        check=True,
    )
    shutil.copytree(
        PACKAGE,
        target / "slotguard",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        dirs_exist_ok=True,
    )
