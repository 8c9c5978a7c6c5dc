"""Small corrections to the OpenAPI document Litestar builds from the handlers."""

from __future__ import annotations

from typing import Any

from litestar.openapi.spec import Operation, RequestBody


class OptionalBody(Operation):
    """The operation of a route whose body may be left out: Litestar marks every request
    body required and offers ``null`` for an optional one; the document says what the
    route takes instead (no body, or the typed object)."""

    def to_schema(self) -> dict[str, Any]:
        body = self.request_body
        if isinstance(body, RequestBody):
            body.required = False
            for media in (body.content or {}).values():
                schema = media.schema
                choices = getattr(schema, "one_of", None)
                if choices:
                    kept = [c for c in choices if getattr(c, "type", None) != "null"]
                    if len(kept) == 1:
                        media.schema = kept[0]
        return super().to_schema()
