"""Every error code a Lua script can answer is mapped to a waitroom error."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from shared.errors import (
    SCRIPT_ERRORS,
    BadRole,
    InvalidBody,
    LeaseLost,
    ReplayGap,
    WaitroomError,
    from_script_error,
)

pytestmark = pytest.mark.unit

FAIL_CALL = re.compile(r"\bfail\(\s*'([a-z_]+)'")
WR_LITERAL = re.compile(r"'WR ([a-z_]+)")
ANY_FAIL = re.compile(r"\bfail\(([^)]*)\)")


def lua_files() -> dict[str, str]:
    folder = resources.files("shared") / "lua"
    return {
        f.name: f.read_text(encoding="utf-8") for f in folder.iterdir() if f.name.endswith(".lua")
    }


def lua_codes() -> set[str]:
    codes: set[str] = set()
    for text in lua_files().values():
        codes |= set(FAIL_CALL.findall(text)) | set(WR_LITERAL.findall(text))
    return codes


def test_the_scan_finds_the_codes_it_should() -> None:
    # a broken pattern would make the next test pass on nothing
    assert {"room_not_found", "lease_lost", "bad_role", "events_backlog", "invalid_config"} <= (
        lua_codes()
    )


def test_every_code_a_script_answers_is_mapped() -> None:
    unmapped = sorted(code for code in lua_codes() if code not in SCRIPT_ERRORS)
    assert unmapped == []


def test_every_fail_names_its_code_literally() -> None:
    """So the scan above sees them all: no ``fail(variable)`` outside fail's own body."""
    for name, text in lua_files().items():
        for args in ANY_FAIL.findall(text):
            if name == "_lib.lua" and args == "code, detail":
                continue  # the definition
            assert args.lstrip().startswith("'"), f"{name}: fail({args})"


def test_a_code_becomes_its_error() -> None:
    err = from_script_error("WR lease_lost")
    assert isinstance(err, LeaseLost)
    assert err.detail == LeaseLost.message
    assert isinstance(from_script_error("WR bad_role"), BadRole)
    assert BadRole.status == 500


def test_a_detail_becomes_the_message() -> None:
    err = from_script_error("WR invalid_config heartbeat_timeout must be longer than x")
    assert isinstance(err, InvalidBody)
    assert err.code == "invalid_body"
    assert err.status == 400
    assert err.detail == "heartbeat_timeout must be longer than x"
    gap = from_script_error("WR replay_gap event r:abc:7 names a place")
    assert isinstance(gap, ReplayGap)
    assert gap.detail == "event r:abc:7 names a place"


def test_a_position_the_server_appends_is_not_part_of_the_detail() -> None:
    err = from_script_error("WR lease_lost script: on @user_script:12.")
    assert isinstance(err, LeaseLost)
    assert err.detail == LeaseLost.message


def test_other_errors_are_not_domain_errors() -> None:
    assert from_script_error("user_script:3: attempt to index a nil value") is None
    unknown = from_script_error("WR no_such_code")
    assert type(unknown) is WaitroomError
    assert "no_such_code" in unknown.detail
