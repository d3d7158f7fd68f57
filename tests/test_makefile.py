"""The Makefile's contract: the switches it knows (and refuses), `make help`, and CI running every
command README.md shows, as typed."""

from __future__ import annotations

import ast
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.readme.commands import AS_TYPED, ROOT, ci_commands, readme_commands

MAKEFILE = (ROOT / "Makefile").read_text()


def make(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "AWS", "CDK")}
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def help_lines() -> dict[str, str]:
    done = make("help")
    assert done.returncode == 0, done.stderr
    return {line.split()[0]: line for line in done.stdout.splitlines() if line.startswith("  ")}


@pytest.mark.parametrize(
    ("switches", "message"),
    [
        (["AWS=nope"], "AWS must be moto or localstack, not 'nope'"),
        (["AWS="], "AWS must be moto or localstack"),
        (["AWS=localstack", "CDK=2"], "CDK must be 1 or 0 (or unset), not '2'"),
        (["AWS=localstack", "CDK=yes"], "CDK must be 1 or 0 (or unset), not 'yes'"),
        (["CDK=1"], "CDK=1 deploys into LocalStack: use it with AWS=localstack"),
    ],
)
def test_a_switch_value_the_makefile_does_not_know_is_refused_naming_the_allowed_ones(
    switches: list[str], message: str
) -> None:
    # When make local is given a value it does not know (dry run: nothing would start either way)
    done = make("-n", "local", *switches)
    # Then it refuses, naming the allowed values
    assert done.returncode == 2, done.stdout
    assert message in done.stderr


@pytest.mark.parametrize(
    ("switches", "runs"),
    [
        ([], "SLOTGUARD_AWS=moto SLOTGUARD_LOCALSTACK_CDK= .venv/bin/python -m slotguard_local"),
        (
            ["AWS=localstack"],
            "SLOTGUARD_AWS=localstack SLOTGUARD_LOCALSTACK_CDK= .venv/bin/python -m slotguard_local",
        ),
        (
            ["AWS=localstack", "CDK=1"],
            "SLOTGUARD_AWS=localstack SLOTGUARD_LOCALSTACK_CDK=1 .venv/bin/python -m slotguard_local",
        ),
        (
            ["AWS=localstack", "CDK=0"],
            "SLOTGUARD_AWS=localstack SLOTGUARD_LOCALSTACK_CDK= .venv/bin/python -m slotguard_local",
        ),
    ],
)
def test_make_local_passes_each_switch_to_the_stack(switches: list[str], runs: str) -> None:
    done = make("-n", "local", *switches)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == runs


def test_the_deploy_switch_does_not_replace_the_cdk_cli() -> None:
    # When make synth runs with the LocalStack deploy switch set (as it would be in a shell that
    # exported it), then it still runs the CDK CLI
    done = make("-n", "synth", "AWS=localstack", "CDK=1")
    assert done.returncode == 0, done.stderr
    assert any(line.startswith("npx --no-install cdk synth ") for line in done.stdout.splitlines())


def test_each_switch_has_one_name_used_for_nothing_else() -> None:
    switches = [name.split("=")[0] for name in help_lines() if "=" in name]
    assert {"AWS", "CDK", "SLOTGUARD_PORT", "LOAD_USERS", "BENCH_N"} <= set(switches)
    for name in switches:
        definitions = re.findall(rf"^{name}\s*(:=|\?=|=|\+=)", MAKEFILE, re.M)
        # a switch is set at most once in the Makefile, and only as a default the caller overrides
        assert definitions in ([], ["?="]), (name, definitions)


def test_make_help_lists_every_target_and_every_switch() -> None:
    listed = help_lines()
    phony = re.search(r"^\.PHONY:(.*)$", MAKEFILE, re.M)
    assert phony
    # every target, one line each
    assert set(phony.group(1).split()) <= set(listed), set(phony.group(1).split()) - set(listed)
    # every variable the Makefile lets a caller set
    defaults = re.findall(r"^([A-Z][A-Z0-9_]*)\s*\?=", MAKEFILE, re.M)
    assert {f"{name}=" for name in defaults} <= {name.split("=")[0] + "=" for name in listed}
    # every knob the benchmarks and the load test read, with the default they really use
    for path in (ROOT / "bench").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and ast.unparse(node.func) == "os.environ.get"
                and isinstance(node.args[0], ast.Constant)
                and str(node.args[0].value).startswith(("BENCH_", "LOAD_"))
                and node.args[0].value not in ("LOAD_TOKEN", "LOAD_ORG_ID", "LOAD_WEBHOOK_SECRET", "LOAD_RUN")
            ):
                name = node.args[0].value
                default = node.args[1].value if len(node.args) > 1 else None  # type: ignore[attr-defined]
                matching = [key for key in listed if key.split("=")[0] == name]
                assert matching, f"{name} ({path.name}) is not in make help"
                if default:
                    assert matching[0] == f"{name}={default}", (matching[0], default)


def test_every_command_the_readme_shows_is_run_as_typed_in_ci() -> None:
    # Given the make commands and python -m modules README.md shows
    shown = readme_commands()
    assert {
        "make local",
        "make test",
        "make local AWS=localstack CDK=1",
        "python -m slotguard_local.sign",
    } <= shown
    # Then each one is run as typed: by .ci/run itself, or by a test of `make test-readme`
    ci = ci_commands()
    assert {"make test", "make test-localstack", "make test-readme"} <= ci
    not_run = shown - set(AS_TYPED) - ci
    assert not not_run, f"README.md shows commands CI never runs as typed: {sorted(not_run)}"
    # And each test named for a command exists
    source = (ROOT / "tests" / "readme" / "test_readme_as_typed.py").read_text()
    for command, test in AS_TYPED.items():
        assert re.search(rf"^def {test}\(", source, re.M), (command, test)


def test_the_readme_extractor_sees_commands_in_code_only(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        "Use the make targets below.\n\n```bash\nmake local AWS=localstack CDK=1   # go\n"
        ".venv/bin/python -m slotguard_local.sign book\n```\n\nthen `make smoke` or `make lint synth`.\n"
    )
    assert readme_commands(readme) == {
        "make local AWS=localstack CDK=1",
        "python -m slotguard_local.sign",
        "make smoke",
        "make lint",
        "make synth",
    }
