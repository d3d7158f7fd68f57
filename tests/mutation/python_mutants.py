"""Mutation testing of the Python layer (`make mutation`): mutmut (pinned in pyproject.toml's dev
extra, configured in its [tool.mutmut]) mutates slotguard.api, .services, .db and .aws one change at
a time, and runs, for each mutant, only the fast tests that call the mutated function (mutmut's
stats phase records which test calls which function). A mutant is killed when one of those tests
fails; one that survives is a change to the code no test notices.

    .venv/bin/python -m tests.mutation.python_mutants [slotguard.aws slotguard.api.http ...]

Each argument is a module or package (every mutant in it), or a mutmut mutant name or glob
(`slotguard.aws.sqs.x_send_batch__mutmut_3`, `slotguard.api.http.x_json_response*`); none: all four
packages. `pending` runs, of the four packages, only the mutants without a verdict: those not reached
by an earlier run, and those mutmut reset because their function changed (mutmut keeps every
other verdict, also when a test is added: a survivor a new test kills is checked again only when
named); a long run can so be taken up again where it stopped. Prints
the score (killed / mutants) and each surviving mutant's diff; exits 1 when a mutant survived,
timed out or was suspicious. Ctrl-C stops the run and still reports (the mutants not reached are
"not checked"), and `pending` takes it up again.

mutmut names a mutant by its file's path and the tests import `slotguard.*`, so mutmut runs in
.mutmut/ (ignored by git), where `slotguard` is the layer's package (a link to layers/slotguard)
and the rest of the repository is linked in; mutmut copies it to .mutmut/mutants/ and puts that
first on sys.path (mutmut's copy of the package is the one imported). One PostgreSQL serves the
whole run (DATABASE_URL: each pytest session makes its own database), as does a scratch folder per
pytest process (tests/mutation/mutmut_plugin.py), and one moto server
(SLOTGUARD_TEST_MOTO_URL, tests/conftest.py). mutmut keeps its stats in .mutmut/mutants/ (which
test calls which function, and how long each test takes); a test added later is found and timed
on the next run.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STAGE = ROOT / ".mutmut"
PACKAGES = ("slotguard.api", "slotguard.services", "slotguard.db", "slotguard.aws")
# What the stage links to: the package mutmut mutates (at the stage's top, named as imported), and
# what the tests read from the repository (mutmut copies the tests and [tool.mutmut]'s also_copy).
LINKS = {
    "slotguard": "layers/slotguard",
    "tests": "tests",
    "layers": "layers",
    "docs": "docs",
    "README.md": "README.md",
    "pyproject.toml": "pyproject.toml",
}
BAD = ("survived", "timeout", "suspicious", "segfault")
SHOW_DIFFS = 20  # `mutmut show` takes a second or two each


def patterns(targets: list[str]) -> list[str]:
    """Mutant-name globs: a module or package stands for every mutant in it."""
    out = []
    for target in targets or PACKAGES:
        target = target.strip().replace("/", ".").removesuffix(".py")
        if not target.startswith("slotguard."):
            raise SystemExit(f"not a module of the layer's package: {target!r} (e.g. slotguard.aws)")
        out.append(target if ("*" in target or "__mutmut_" in target) else target + ".*")
    return out


def stage() -> None:
    STAGE.mkdir(exist_ok=True)
    for name, target in LINKS.items():
        link = STAGE / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(Path("..") / target)
    # A stale copy of the tests would keep a deleted test (mutmut copies over what is there).
    shutil.rmtree(STAGE / "mutants" / "tests", ignore_errors=True)
    # mutmut writes its copy of a module only when the module changes, and copies the package's
    # other files (the SQL functions, the migrations) once: a function changed since would be
    # tested in its old text, and a file removed since would still be read (the migration runner
    # lists its folders). Make those files the package's own: each copied if it differs, each
    # one the package no longer has removed.
    package, copy = ROOT / LINKS["slotguard"], STAGE / "mutants" / "slotguard"

    def data_files(root: Path) -> set[Path]:
        return {
            p.relative_to(root)
            for p in root.rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc", ".meta") and "__pycache__" not in p.parts
        }

    if copy.is_dir():
        wanted = data_files(package)
        for gone in data_files(copy) - wanted:
            (copy / gone).unlink()
        for rel in wanted:
            src, dst = package / rel, copy / rel
            if not dst.exists() or dst.read_bytes() != src.read_bytes():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)


def mutmut(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # Ctrl-C reaches mutmut too: it stops its workers, keeps what it checked and exits; this
    # process waits for it and reports (what was not reached is "not checked")
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return subprocess.run(
            [str(Path(sys.executable).parent / "mutmut"), *args],
            cwd=STAGE,
            env=env,
            capture_output=args[0] != "run",
            text=True,
            check=False,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    finally:
        signal.signal(signal.SIGINT, previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", help="modules, packages or mutant names (default: all four)")
    parser.add_argument(
        "--children",
        type=int,
        default=int(os.environ.get("MUTATION_CHILDREN") or 2 * (os.cpu_count() or 1)),
        # the webhook tests wait (visibility timeouts, backoffs) more than they compute
        help="mutants tested side by side (default: twice the cores)",
    )
    args = parser.parse_args(argv)
    # MUTATE="slotguard.aws,slotguard.api" from make: split on commas and spaces
    targets = [t for arg in args.targets for t in re.split(r"[,\s]+", arg) if t]
    pending = targets == ["pending"]
    if "pending" in targets and not pending:
        raise SystemExit("`pending` stands alone: it is every mutant without a verdict, of all four packages")
    globs = patterns([] if pending else targets)
    stage()

    from slotguard_local.moto import MotoServer
    from slotguard_local.postgres import EmbeddedPostgres

    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    basetemp = Path(tempfile.mkdtemp(prefix="slotguard-mutation-"))
    env["SLOTGUARD_MUTATION_BASETEMP"] = str(basetemp)
    postgres = None
    moto = MotoServer(log_path=basetemp / "moto.log").start()
    env["SLOTGUARD_TEST_MOTO_URL"] = moto.endpoint
    started = time.monotonic()
    try:
        if not env.get("DATABASE_URL"):
            postgres = EmbeddedPostgres(basetemp / "pg", durable=False).start()
            env["DATABASE_URL"] = postgres.admin_url
        # named mutants are run again whatever their verdict; with no names, mutmut runs the pending
        run = mutmut("run", "--max-children", str(args.children), *([] if pending else globs), env=env)
    finally:
        moto.stop()
        if postgres is not None:
            postgres.stop(mode="immediate")
        shutil.rmtree(basetemp, ignore_errors=True)
    took = time.monotonic() - started

    listed = mutmut("results", "--all", "true", env=env)
    statuses: dict[str, str] = {}
    for line in listed.stdout.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name and any(fnmatch.fnmatch(name, g) for g in globs):
            statuses[name] = status
    counts = Counter(statuses.values())
    print(f"\nmutmut run {' '.join(globs)}: exit {run.returncode}, {took / 60:.1f} min")
    print(f"{len(statuses)} mutants: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    tested = len(statuses) - counts["no tests"] - counts["not checked"]
    if tested:
        share = 100 * counts["killed"] / tested
        print(f"score: {counts['killed']} killed / {tested} tested ({share:.1f}%); {len(statuses)} in all")
    for status in (*BAD, "no tests", "not checked"):
        names = sorted(n for n, s in statuses.items() if s == status)
        if names:
            print(f"\n{status} ({len(names)}):")
            for name in names:
                print(f"  {name}")
    bad = sorted(n for n, s in statuses.items() if s in BAD)
    for name in bad[:SHOW_DIFFS]:
        print()
        print(mutmut("show", name, env=env).stdout.rstrip())
    if len(bad) > SHOW_DIFFS:
        print(f"\n(the first {SHOW_DIFFS} diffs; any other: cd .mutmut && ../.venv/bin/mutmut show NAME)")
    if run.returncode != 0 or not statuses or counts["not checked"]:
        return 2  # mutmut failed, or the run was stopped before every mutant was checked
    return 1 if any(counts[s] for s in BAD) else 0


if __name__ == "__main__":
    sys.exit(main())
