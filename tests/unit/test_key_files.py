"""Signing keys and the deployment's salt are never readable by anyone but their owner,
not even for the moment between writing a file and changing its mode."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from shared.keyring import deployment_salt, ensure_keys, write_key

pytestmark = pytest.mark.unit


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keys_are_0600_in_a_0700_folder_even_with_a_loose_umask(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    old = os.umask(0)  # whatever the process's umask, nothing is made readable to others
    try:
        ensure_keys(keys, ("rsa", "ec"))
        rotated = write_key(keys, "rsa")
    finally:
        os.umask(old)
    assert mode(keys) == 0o700
    files = sorted(keys.iterdir())
    assert {p.name for p in files} >= {rotated.name}
    assert all(mode(p) == 0o600 for p in files), {p.name: oct(mode(p)) for p in files}
    assert not list(keys.glob("*.tmp")), "no half-written files left"


def test_a_loose_existing_folder_is_tightened(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o755)
    keys.chmod(0o755)
    ensure_keys(keys)
    assert mode(keys) == 0o700


def test_the_salt_is_made_once_shared_and_private(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    ensure_keys(keys)
    first = deployment_salt(keys)
    assert len(first) >= 32
    assert deployment_salt(keys) == first  # every gateway reading the folder gets the same
    assert mode(keys / "ip-hash-salt") == 0o600
