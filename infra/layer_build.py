"""Builds the Lambda layer without Docker: pip installs the manylinux aarch64 / CPython 3.13 wheels
that layers/requirements.lock pins, each by its digest (`make layer-lock` writes it from the runtime
dependencies of pyproject.toml, transitive ones included), the `slotguard` package is copied beside
them, and everything is compiled to CPython 3.13 bytecode.

The CDK app takes the built directory as the layer's asset, so the asset hash is the digest of the
built contents themselves. A build is kept in .layer-build/<digest of its inputs> (the lock, the
package, the build settings) and reused by the next synth; the inputs fix every byte (the wheels by
their hashes, bytecode with hash-based invalidation), which a test checks by building twice.

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
LOCK = ROOT / "layers" / "requirements.lock"
BUILD_CACHE = ROOT / ".layer-build"
# Lambda's Python 3.13 runtime runs on Amazon Linux 2023 (glibc 2.34): any of these wheels load.
PLATFORMS = ("manylinux_2_34_aarch64", "manylinux_2_28_aarch64", "manylinux2014_aarch64")
PYTHON_VERSION = "3.13"
# Part of the inputs' digest. `-d /opt/python`: the source path recorded in each .pyc is where Lambda
# mounts the layer, not this machine's build directory (which made two builds differ, and put build
# paths in tracebacks).
LAYER_MOUNT = "/opt/python"
BYTECODE = f"compileall --invalidation-mode unchecked-hash -d {LAYER_MOUNT}"


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
    """The digest of the build's inputs: the lock (every wheel by its hash), the package, the settings."""
    digest = hashlib.sha256()
    digest.update(LOCK.read_bytes())
    digest.update(f"{PLATFORMS}/{PYTHON_VERSION}/{BYTECODE}".encode())
    for path in sorted(PACKAGE.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(PACKAGE)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def wheel_selection(platforms: list[str] | tuple[str, ...] = PLATFORMS) -> list[str]:
    """pip's options choosing the runtime's wheels: CPython 3.13 binaries for `platforms`."""
    return [
        *[arg for p in platforms for arg in ("--platform", p)],
        "--implementation",
        "cp",
        "--python-version",
        PYTHON_VERSION,
        "--only-binary=:all:",
    ]


def install_packages(target: Path, platforms: list[str] | tuple[str, ...] = PLATFORMS) -> None:
    """pip installs the runtime requirements' CPython 3.13 wheels for `platforms` into `target`,
    without compiling (the bytecode is compiled for 3.13 afterwards). For the layer's own platforms,
    exactly the lock's wheels (--require-hashes, --no-deps); for another (the cold-import bench on
    this machine), the pyproject pins, resolved by pip."""
    locked = tuple(platforms) == PLATFORMS
    requirements = ["--require-hashes", "--no-deps", "-r", str(LOCK)] if locked else runtime_requirements()
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
            *wheel_selection(platforms),
            *requirements,
        ],
        check=True,
    )


def built_layer() -> Path:
    """The layer built from the current inputs: from .layer-build when built before, else built now
    (into a temporary directory, renamed when complete)."""
    done = BUILD_CACHE / source_hash()
    if done.is_dir():
        return done
    BUILD_CACHE.mkdir(exist_ok=True)
    partial = BUILD_CACHE / f"{done.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    build_layer(partial)
    try:
        partial.rename(done)
    except OSError:  # another synth finished the same build first: same inputs, same contents
        shutil.rmtree(partial, ignore_errors=True)
    return done


def content_digest(directory: Path) -> str:
    """A digest of a directory's files (relative paths and bytes), as the asset hash covers them."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(directory)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


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
            "-d",
            LAYER_MOUNT,
            str(target),
        ],
        check=True,
    )
