"""The documentation a newcomer reads: self-contained, and complete about errors."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import slotguard
from slotguard import errors

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_relative_link_stays_inside_the_repository_and_exists() -> None:
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)[^)]*\)", doc.read_text()):
            if re.match(r"^[a-z]+:", target):
                continue  # an absolute URL (a public standard or tool)
            resolved = (doc.parent / target).resolve()
            assert resolved.is_relative_to(ROOT), f"{doc.name} links outside the repository: {target}"
            assert resolved.exists(), f"{doc.name} links to a missing file: {target}"


def test_the_architecture_and_contract_live_in_the_repository() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "(docs/design.md)" in readme
    design = (ROOT / "docs" / "design.md").read_text()
    for part in ("## HTTP contract", "## Webhooks", "stack.json", "make local"):
        assert part in design


def _error_codes() -> set[str]:
    """Every error code the code can answer: the domain errors and the HTTP layer's own."""
    for module in pkgutil.walk_packages(slotguard.__path__, "slotguard."):
        if module.name.startswith(("slotguard.services", "slotguard.api")):
            importlib.import_module(module.name)
    codes: set[str] = set()
    pending = [errors.DomainError]
    while pending:
        cls = pending.pop()
        codes.add(cls.code)
        pending += cls.__subclasses__()
    for source in (ROOT / "layers" / "slotguard").rglob("*.py"):
        codes |= set(re.findall(r"error_response\(\s*\d{3},\s*\"(\w+)\"", source.read_text()))
    return codes


def test_every_error_code_is_in_the_readmes_table() -> None:
    readme = (ROOT / "README.md").read_text()
    table = re.search(r"^### Error codes\n(.*?)^#", readme, re.S | re.M)
    assert table, "README.md has no '### Error codes' section"
    documented = set(re.findall(r"^\| `(\w+)` \|", table.group(1), re.M))
    assert _error_codes() - documented == set()


def test_the_gateways_own_answers_are_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    assert '{"message":"Unauthorized"}' in readme
    assert '{"message":"Not Found"}' in readme
