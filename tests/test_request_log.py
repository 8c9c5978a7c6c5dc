"""One log format on stderr, uvicorn's records included, and a request id on every line
of a request: against a real ``python -m gateway``."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import httpx
import pytest

from shared.settings import Settings
from tests.helpers.servers import ModuleProc, settings_env
from waitroom.processes import free_port, wait_for_port

HEX_ID = re.compile(r"[0-9a-f]{32}")
KEYS = {"event", "level", "logger", "timestamp"}
CONSOLE_LINE = re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+Z \[(debug|info|warning|error|critical) *\] ")
BAD_KEY = {"Authorization": "Bearer not-the-admin-key"}


def run_gateway(settings: Settings, log: Path, *, json_lines: bool) -> dict[str, str]:
    """Start the gateway, make the requests of this test, stop it; the ids it answered."""
    port = free_port()
    env = settings_env(
        settings,
        WAITROOM_PORT=str(port),
        WAITROOM_LOG_LEVEL="info",
        WAITROOM_ACCESS_LOG="all",
        WAITROOM_LOG_JSON="true" if json_lines else "false",
    )
    gateway = ModuleProc("gateway", env, log).start()
    ids: dict[str, str] = {}
    try:
        wait_for_port(port, 20, gateway.proc)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for name, sent in {
                "given": "req-42.a:b/c=",
                "made": None,
                "junk": "a b<script>",
                "long": "x" * 129,
            }.items():
                headers = dict(BAD_KEY, **({"X-Request-ID": sent} if sent else {}))
                answer = client.get("/v1/admin/rooms", headers=headers)
                assert answer.status_code == 401, answer.text
                ids[name] = answer.headers["x-request-id"]
            ids["quiet"] = client.get("/healthz").headers["x-request-id"]
    finally:
        gateway.signal(signal.SIGTERM)
        assert gateway.wait() == 0
    return ids


def test_every_line_is_json_with_the_same_keys_and_a_request_carries_its_id(
    settings: Settings, tmp_path: Path
) -> None:
    log = tmp_path / "gateway.log"
    ids = run_gateway(settings, log, json_lines=True)
    assert ids["given"] == "req-42.a:b/c="  # a sane id from a proxy is kept
    for name in ("made", "junk", "long", "quiet"):
        assert HEX_ID.fullmatch(ids[name]), name  # the rest get a new one each
    assert len(set(ids.values())) == len(ids)

    records = [json.loads(line) for line in log.read_text().splitlines()]
    for record in records:
        assert record.keys() >= KEYS, record
    by_logger = {record["logger"] for record in records}
    assert {"gateway", "operators", "uvicorn.error"} <= by_logger
    uvicorn = [r["event"] for r in records if r["logger"] == "uvicorn.error"]
    assert "Application startup complete." in uvicorn
    assert "Application shutdown complete." in uvicorn

    for name in ("given", "made", "junk", "long"):
        lines = [r for r in records if r.get("request_id") == ids[name]]
        assert [r["event"] for r in lines] == ["admin_auth_failed", "request"], name
        assert lines[1]["status"] == 401
    assert not [r for r in records if r.get("request_id") == ids["quiet"]]  # not logged
    # outside a request no id is bound: it was cleared after each one
    outside = [r for r in records if r["event"] in ("gateway_started", "gateway_stopped")]
    assert len(outside) == 2
    assert all("request_id" not in r for r in outside)
    assert all("request_id" not in r for r in records if r["logger"] == "uvicorn.error")


@pytest.mark.slow
def test_console_lines_share_one_layout_too(settings: Settings, tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    ids = run_gateway(settings, log, json_lines=False)
    lines = log.read_text().splitlines()
    for line in lines:
        assert CONSOLE_LINE.match(line), line
    assert any("[uvicorn.error]" in line and "startup complete" in line for line in lines)
    mine = [line for line in lines if f"request_id={ids['made']}" in line]
    assert len(mine) == 2
    assert "admin_auth_failed" in mine[0]
    assert "[operators]" in mine[0]


def test_by_default_only_errors_and_slow_requests_are_logged(
    settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "gateway.log"
    env = settings_env(settings, WAITROOM_PORT=str(port), WAITROOM_LOG_LEVEL="info")
    env.pop("WAITROOM_ACCESS_LOG", None)  # the default: errors
    gateway = ModuleProc("gateway", env, log).start()
    try:
        wait_for_port(port, 20, gateway.proc)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            ok = client.get("/.well-known/jwks.json")
            bad = client.get("/v1/admin/rooms", headers=BAD_KEY)
    finally:
        gateway.signal(signal.SIGTERM)
        assert gateway.wait() == 0
    logged = {
        r.get("request_id")
        for r in map(json.loads, log.read_text().splitlines())
        if r["event"] == "request"
    }
    assert bad.headers["x-request-id"] in logged
    assert ok.headers["x-request-id"] not in logged
