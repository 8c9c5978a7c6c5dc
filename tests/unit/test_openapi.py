"""The OpenAPI document is the contract: every body, parameter and error answer is in it,
and it validates as OpenAPI 3.1 (so clients and fuzzers can use it)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.serialization import encode_json
from openapi_spec_validator import validate

from gateway.app import create_app
from gateway.fast_answers import ROUTES
from shared import errors
from shared.settings import Settings

pytestmark = pytest.mark.unit

METHODS = ("get", "put", "post", "delete", "patch")
# routes that can answer nothing but success (or a 500)
NO_ERRORS = {"/healthz", "/.well-known/jwks.json", "/admin"}
KNOWN_CODES = {
    cls.code
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, errors.WaitroomError)
}


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The document as /schema/openapi.json serves it (built without any server)."""
    settings = Settings(keys_dir=Path(tmp_path_factory.mktemp("keys")))
    doc: dict[str, Any] = msgspec.json.decode(
        encode_json(create_app(settings).openapi_schema.to_schema())
    )
    return doc


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


def test_the_document_validates_as_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_every_post_and_put_declares_its_request_body(document: dict[str, Any]) -> None:
    writes = [(m, p, op) for m, p, op in operations(document) if m in ("post", "put")]
    assert len(writes) >= 7
    for method, path, op in writes:
        body = op.get("requestBody")
        assert body is not None, f"{method.upper()} {path} has no request body"
        schema = body["content"]["application/json"]["schema"]
        assert "$ref" in schema, (path, schema)  # a named, typed object, never just "null"


def test_optional_bodies_are_marked_optional(document: dict[str, Any]) -> None:
    paths = document["paths"]
    assert paths["/v1/rooms/{room}/enqueue"]["post"]["requestBody"]["required"] is False
    assert paths["/v1/session/verify"]["post"]["requestBody"]["required"] is True
    assert paths["/v1/admin/rooms/{room}"]["put"]["requestBody"]["required"] is True


def test_every_route_lists_its_error_answers(document: dict[str, Any]) -> None:
    for method, path, op in operations(document):
        if path in NO_ERRORS:
            continue
        failures = {s: r for s, r in op["responses"].items() if int(s) >= 400}
        assert failures, f"{method.upper()} {path} lists no error answers"
        for status, answer in failures.items():
            codes = re.findall(r"`([a-z_]+)`", answer["description"])
            assert set(codes) <= KNOWN_CODES, (path, status, set(codes) - KNOWN_CODES)
            if path == "/rooms/{room}":  # the page answers a page, whatever happened
                assert set(answer["content"]) == {"text/html"}, (path, status)
                continue
            ref = answer["content"]["application/json"]["schema"]["$ref"]
            if path == "/readyz" and status == "503":
                assert ref.endswith("/Ready")
                continue
            assert ref.endswith("/ErrorBody"), (path, status, ref)
            assert codes, (path, status)


def test_routes_that_name_a_room_document_its_id(document: dict[str, Any]) -> None:
    for method, path, op in operations(document):
        if "{room}" not in path:
            continue
        (room,) = [p for p in op["parameters"] if p["name"] == "room"]
        assert room["in"] == "path"
        assert room["schema"]["pattern"] == "^[A-Za-z0-9_-]{1,64}$", (method, path)
        failures = op["responses"]
        assert "invalid_room_id" in failures["400"]["description"], (method, path)


def test_bearer_routes_declare_the_security_scheme(document: dict[str, Any]) -> None:
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path in ("/v1/rooms/{room}/status", "/v1/session/complete", "/v1/admin/rooms"):
        for op in document["paths"][path].values():
            assert op["security"] == [{"bearer": []}], path


def test_the_answers_from_memory_are_labelled_as_the_framework_labels_their_routes() -> None:
    """gateway/fast_answers.py names its two routes in the metrics itself: the names must
    be the route templates Litestar reports for the same calls."""
    app = create_app(Settings.from_env({}))
    templates = {route.path_format for route in app.routes}
    assert set(ROUTES.values()) <= templates
