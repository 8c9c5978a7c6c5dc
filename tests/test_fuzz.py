"""The OpenAPI document as a contract, checked by a fuzzer: schemathesis generates calls
for every operation from the document and runs them against a real gateway process. No
answer may be a 500, every status must be one the route declares, and every body must fit
its declared schema (so every error is the JSON error shape)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from litestar.serialization import encode_json
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.config._checks import NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES
from schemathesis.specs.openapi.checks import positive_data_acceptance

from gateway.app import create_app
from shared.settings import Settings
from tests.helpers.api import ADMIN_KEY
from tests.helpers.servers import ModuleProc, Servers
from waitroom.processes import free_port, wait_for_port

pytestmark = pytest.mark.slow

SEMANTIC_400 = {
    "PUT /v1/admin/rooms/{room}",
    "POST /v1/rooms/{room}/enqueue",
    "POST /v1/admin/rooms/{room}/invites",
}


NEGATIVE_STATUSES = [*NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES, "413"]
"""What a call that breaks the document may be answered (schemathesis's list, and 413)."""


@pytest.fixture(scope="module")
def fuzzed_gateway(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m gateway`` on its own database (the fuzzer makes rooms with odd names)."""
    folder = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    env = dict(os.environ)
    env.update(
        WAITROOM_REDIS_URL=servers.redis_url.rsplit("/", 1)[0] + "/3",
        WAITROOM_NATS_URL=servers.nats_url,
        WAITROOM_KEYS_DIR=str(folder / "keys"),
        WAITROOM_ADMIN_KEY=ADMIN_KEY,
        WAITROOM_PORT=str(port),
        WAITROOM_RATE_LIMITS="false",
        WAITROOM_LOG_LEVEL="warning",
    )
    proc = ModuleProc("gateway", env, folder / "gateway.log").start()
    try:
        wait_for_port(port, 20, proc.proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Any:
    settings_ = Settings(keys_dir=Path(tmp_path_factory.mktemp("keys")))
    document = msgspec.json.decode(encode_json(create_app(settings_).openapi_schema.to_schema()))
    # a body made invalid by growing past the size limit is refused as too large (413,
    # documented on every route that takes a body) before it is read as invalid
    config = SchemathesisConfig.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": NEGATIVE_STATUSES}}}
    )
    return schemathesis.openapi.from_dict(document, config=config)


def test_the_gateway_keeps_its_documented_contract(api_schema: Any, fuzzed_gateway: str) -> None:
    """Every operation, a bounded number of generated calls each. As an operator, so the
    admin routes are fuzzed past their key check; the people's and the site's routes then
    see the admin key as a (bad) token, which they must refuse in the documented way."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, fuzzed_gateway, mode)


def fuzz(operation: Any, base_url: str, mode: GenerationMode) -> None:
    """Calls that fit the document must be served as it says; calls that do not must be
    refused with a documented 4xx error, never a 500."""
    # some checks need what the store holds: a room's fields together (creating one needs
    # target_url; a timeout must outlast its interval), a join's proof of work (a made-up
    # challenge is well formed but not ours), its party size against the room's, its lane
    # and invite against the room's, an invite's expiry against the clock: a body the
    # schema allows may still be refused there, with a 400 and its reason
    excluded = [positive_data_acceptance] if operation.label in SEMANTIC_400 else []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=25,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def call(case: Any) -> None:
        case.call_and_validate(
            base_url=base_url,
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            excluded_checks=excluded,
            allow_redirects=False,
            timeout=10,
        )

    try:
        call()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        # nothing about this operation can be sent wrong (no parameters, no body)
