"""The page's static files and templates: each static file's URL carries a hash of its
content, so browsers cache it for good and never run a stale copy after a change."""

from __future__ import annotations

import hashlib
from pathlib import Path

from litestar.datastructures import CacheControlHeader
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig
from litestar.types import ControllerRouterHandler

PACKAGE_DIR = Path(__file__).parent
STATIC_DIR = PACKAGE_DIR / "static"
TEMPLATES_DIR = PACKAGE_DIR / "templates"


class StaticAssets:
    """Content hashes of the static files, read once when the app is built."""

    def __init__(self, directory: Path = STATIC_DIR) -> None:
        self.directory = directory
        self.versions = {
            path.name: hashlib.sha256(path.read_bytes()).hexdigest()[:12]
            for path in sorted(directory.iterdir())
            if path.is_file()
        }

    def url(self, name: str) -> str:
        """``/static/<name>?v=<content hash>``; an unknown name is a bug in a template."""
        return f"/static/{name}?v={self.versions[name]}"

    def router(self) -> ControllerRouterHandler:
        return create_static_files_router(
            path="/static",
            directories=[self.directory],
            include_in_schema=False,
            name="static",
            # the URLs the pages use change with the content, so a copy may be kept for good
            cache_control=CacheControlHeader(max_age=365 * 86_400, public=True, immutable=True),
        )

    def template_config(self) -> TemplateConfig[JinjaTemplateEngine]:
        def register(engine: JinjaTemplateEngine) -> None:
            engine.engine.globals["asset"] = self.url

        return TemplateConfig(
            directory=TEMPLATES_DIR, engine=JinjaTemplateEngine, engine_callback=register
        )
