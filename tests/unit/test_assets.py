"""Static files are addressed by their content, so a changed file gets a new URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.assets import STATIC_DIR, StaticAssets

pytestmark = pytest.mark.unit


def test_every_static_file_gets_a_content_version(tmp_path: Path) -> None:
    assets = StaticAssets()
    for path in STATIC_DIR.iterdir():
        assert assets.url(path.name).startswith(f"/static/{path.name}?v=")
    (tmp_path / "a.js").write_text("one")
    before = StaticAssets(tmp_path).url("a.js")
    (tmp_path / "a.js").write_text("two")
    after = StaticAssets(tmp_path).url("a.js")
    assert before != after
    with pytest.raises(KeyError):
        assets.url("missing.js")
