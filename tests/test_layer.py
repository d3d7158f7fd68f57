"""The Lambda layer is reproducible: every distribution it holds, transitive ones included, is pinned
by the digest of its wheel in a lock that `make layer-lock` generates; the layer's asset hash is the
digest of the built contents; two builds from the same inputs are byte for byte the same."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "layers" / "requirements.lock"


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="module")
def layer_asset() -> tuple[str, Path]:
    """(the layer's asset hash in the dev template, its staged directory in cdk.out)."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
    from aws_cdk.assertions import Template

    from infra.app import build_app
    from tests.test_infra import CONTEXT

    app = build_app(CONTEXT, outdir=str(ROOT / "cdk.out"))
    app.synth()
    template = Template.from_stack(app.node.find_child("Slotguard-dev"))  # type: ignore[arg-type]
    [layer] = template.find_resources("AWS::Lambda::LayerVersion").values()
    asset_hash: str = layer["Properties"]["Content"]["S3Key"].removesuffix(".zip")
    return asset_hash, ROOT / "cdk.out" / f"asset.{asset_hash}"


def locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of the lock file."""
    found = {}
    for line in LOCK.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        requirement, *options = line.split()
        name, version = requirement.split("==")
        found[_normalized(name)] = (version, [o.removeprefix("--hash=") for o in options])
    return found


def test_every_distribution_in_the_layer_is_pinned_with_the_hash_of_its_wheel(
    layer_asset: tuple[str, Path],
) -> None:
    lock = locked()
    # Given the lock: every line an exact version with a sha256 digest
    assert lock and all(
        hashes and all(h.startswith("sha256:") for h in hashes) for _, hashes in lock.values()
    )
    # Then the built layer holds exactly the lock's distributions, at the lock's versions (the
    # transitive ones too: botocore, urllib3, pydantic-core, ...)
    _, asset = layer_asset
    installed = {}
    for info in (asset / "python").glob("*.dist-info"):
        name, version = info.name.removesuffix(".dist-info").rsplit("-", 1)
        installed[_normalized(name)] = version
    assert installed == {name: version for name, (version, _) in lock.items()}
    assert {"botocore", "urllib3", "pydantic-core", "jmespath"} <= set(lock)
    # And the direct dependencies are pyproject.toml's pins
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        name, version = re.split(r"(?:\[[^]]*\])?==", requirement)
        assert lock[_normalized(name)][0] == version, requirement


def test_the_lock_is_what_make_layer_lock_generates() -> None:
    from infra.layer_lock import lock_text

    # Given the committed lock, When make layer-lock's generator runs again on pyproject.toml
    # Then it writes the same file (a pyproject pin changed without the lock fails here)
    assert lock_text() == LOCK.read_text()
    assert "layer-lock:" in (ROOT / "Makefile").read_text()


def test_the_layers_asset_hash_is_the_digest_of_the_built_contents(layer_asset: tuple[str, Path]) -> None:
    from aws_cdk import FileSystem

    asset_hash, asset = layer_asset
    # Given the staged layer, When CDK's own fingerprint of those files is taken
    # Then it is the asset hash in the template: the hash covers what was built, not its inputs
    assert FileSystem.fingerprint(str(asset)) == asset_hash


def test_building_the_layer_twice_gives_the_same_bytes(tmp_path: Path) -> None:
    from aws_cdk import FileSystem

    from infra.layer_build import build_layer

    # When the layer is built twice from the same inputs, in two places
    build_layer(tmp_path / "one")
    build_layer(tmp_path / "two")
    # Then both have the same files with the same bytes (wheels pinned by hash, bytecode with
    # hash-based invalidation, no timestamps), so the same asset hash
    one, two = (
        sorted(p.relative_to(d) for p in d.rglob("*") if p.is_file())
        for d in (tmp_path / "one", tmp_path / "two")
    )
    assert one == two and len(one) > 1000
    assert FileSystem.fingerprint(str(tmp_path / "one")) == FileSystem.fingerprint(str(tmp_path / "two"))
