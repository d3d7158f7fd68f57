"""The local stack's private files (secrets, tokens, queued webhooks) are never world-readable."""

from __future__ import annotations

import os
from pathlib import Path

from slotguard_local.files import write_private


def test_a_private_file_is_created_0600_whatever_the_umask(tmp_path: Path) -> None:
    # Given a umask that would leave new files readable and writable by everyone
    old = os.umask(0)
    try:
        # When a private file is written
        write_private(tmp_path / "secret.json", '{"k": 1}')
    finally:
        os.umask(old)
    # Then only its owner may read it, and it holds exactly what was written
    assert (tmp_path / "secret.json").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "secret.json").read_text() == '{"k": 1}'
    assert [p.name for p in tmp_path.iterdir()] == ["secret.json"]


def test_rewriting_a_world_readable_file_makes_it_private(tmp_path: Path) -> None:
    # Given an older copy that was world-readable
    path = tmp_path / "queued-messages.json"
    path.write_text("old")
    path.chmod(0o644)
    # When it is written again as a private file
    write_private(path, "new")
    # Then the new content lives in a file created private (not the old inode chmod'ed)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text() == "new"
