"""The commands README.md shows a user, as written there, and which stage of CI runs each as typed.

`tests/readme/test_readme_as_typed.py` (`make test-readme`, run by .ci/run) runs every command in
AS_TYPED; `.ci/run` runs the rest itself. `tests/test_makefile.py` fails when the README names a
make target or a `python -m` command that neither runs.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# command as the README spells it -> the test that runs it as typed
AS_TYPED: dict[str, str] = {
    "make local": "test_make_local_runs_the_walkthrough_and_stops_on_ctrl_c",
    "make local AWS=localstack": "test_make_local_on_localstack",
    "make local AWS=localstack CDK=1": "test_make_local_on_localstack",
    "make synth": "test_make_synth_and_make_lint",
    "make lint": "test_make_synth_and_make_lint",
    "make smoke": "test_make_local_runs_the_walkthrough_and_stops_on_ctrl_c",
    "make load": "test_make_local_runs_the_walkthrough_and_stops_on_ctrl_c",
    "make bench": "test_make_bench_at_a_small_size",
    "make help": "test_make_help_lists_every_target",
    "make console-vendor": "test_make_console_vendor_copies_the_locked_chart_library",
    "python -m slotguard_local.sign": "test_make_local_runs_the_walkthrough_and_stops_on_ctrl_c",
    "python -m slotguard.admin": "test_make_local_runs_the_walkthrough_and_stops_on_ctrl_c",
    "python -m infra.preflight": "test_make_local_on_localstack",
    "python -m slotguard_local.openapi": "test_the_openapi_command_writes_the_committed_document",
    "make layer-lock": "test_make_layer_lock_writes_the_committed_lock",
    # what `make local` itself runs, named by the README as such: run by the tests of make local
    "python -m slotguard_local.container": "test_make_local_runs_the_walkthrough_and_stops_on_ctrl_c",
    "python -m localstack.runtime.main": "test_make_local_on_localstack",
}


def ci_commands() -> set[str]:
    """The make commands .ci/run itself runs, one a line."""
    text = (ROOT / ".ci" / "run").read_text()
    return {line.strip() for line in text.splitlines() if line.strip().startswith("make ")}


def _code(markdown: str) -> str:
    """The README's code: fenced blocks and inline code spans, nothing of its prose."""
    fenced = re.findall(r"^```[a-z]*\n(.*?)^```", markdown, re.S | re.M)
    without = re.sub(r"^```[a-z]*\n.*?^```", "", markdown, flags=re.S | re.M)
    return "\n".join(fenced + re.findall(r"`([^`\n]+)`", without))


def readme_commands(path: Path = ROOT / "README.md") -> set[str]:
    """Every make command (target and switches) and every `python -m` module the README shows."""
    code = _code(path.read_text())
    found = set()
    for match in re.finditer(r"\bmake((?: [a-z][a-z-]*)+)((?: [A-Z][A-Z0-9_]*=\S+)*)", code):
        for target in match.group(1).split():
            found.add(f"make {target}{match.group(2)}".strip())
    for match in re.finditer(r"\bpython[0-9.]* -m ([A-Za-z_][\w.]*)", code):
        found.add(f"python -m {match.group(1)}")
    return found
