"""The Lua the server runs: the generated header, and error positions put back in the
files' own lines."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from shared import events, keys, line
from shared.scripts import (
    HEADER,
    PRELUDE,
    ROLE_SCRIPTS,
    SCRIPT_NAMES,
    WINDOW_SCRIPTS,
    join_parts,
    lua_file,
    lua_header,
    script_header,
    script_source,
)

pytestmark = pytest.mark.unit

KEY_LINE = re.compile(r"^local K_([A-Z_]+) = KEYS\[(\d+)\]$", re.M)
LEASE_LINE = re.compile(r"^local K_LEASE = \{ (.*) \}$", re.M)


def test_the_header_names_the_keys_in_roomkeys_order() -> None:
    header = lua_header()
    all_keys = keys.RoomKeys("r").all()
    named = KEY_LINE.findall(header)
    assert len(named) == len(keys.ROOM_KEY_NAMES)
    for name, index in named:
        assert all_keys[int(index) - 1] == f"wr:{{r}}:{name.lower()}"
    leases = LEASE_LINE.search(header)
    assert leases is not None
    roles = dict(re.findall(r"(\w+) = KEYS\[(\d+)\]", leases[1]))
    assert set(roles) == set(keys.LEASE_ROLES)
    for role, index in roles.items():
        assert all_keys[int(index) - 1] == keys.RoomKeys("r").lease(role)
    assert len(named) + len(roles) == len(all_keys)


def test_the_header_carries_the_python_constants() -> None:
    header = lua_header()
    for name, value in {
        "MAX_PRIORITY": line.MAX_PRIORITY,
        "PRIORITY_SPAN": line.PRIORITY_SPAN,
        "RATE_TAU_MS": line.RATE_TAU_MS,
        "SCHEMA_VERSION": events.SCHEMA_VERSION,
    }.items():
        assert f"\nlocal {name} = {value}\n" in header


def test_only_the_header_indexes_keys_or_restates_its_constants() -> None:
    folder = resources.files("shared") / "lua"
    for f in folder.iterdir():
        if not f.name.endswith(".lua"):
            continue
        header = script_header(f.name[:-4])
        header_names = set(re.findall(r"^local (\w+) =", header, re.M))
        text = f.read_text(encoding="utf-8")
        assert "KEYS[" not in text, f.name
        assert not re.search(r"\bfields\.v = \d", text), f.name
        used = set(re.findall(r"\bK_[A-Z_]+\b", text))
        assert used <= header_names, (f.name, used - header_names)
        defined_again = set(re.findall(r"^local (\w+) =", text, re.M)) & header_names
        assert not defined_again, (f.name, defined_again)


def test_positions_are_put_back_in_their_part() -> None:
    text, source_map = join_parts([("head", "a\nb"), ("lib.lua", "c\nd\ne\n"), ("x.lua", "f\n")])
    assert text == "a\nb\nc\nd\ne\nf\n"
    assert source_map.locate(1) == ("head", 1)
    assert source_map.locate(3) == ("lib.lua", 1)
    assert source_map.locate(5) == ("lib.lua", 3)
    assert source_map.locate(6) == ("x.lua", 1)
    message = "user_script:4: attempt to index a nil value script: on @user_script:6."
    assert source_map.translate(message) == (
        "lib.lua:2: attempt to index a nil value script: on @x.lua:1."
    )
    assert source_map.translate("WR lease_lost") == "WR lease_lost"


@pytest.mark.parametrize("name", SCRIPT_NAMES + WINDOW_SCRIPTS + ROLE_SCRIPTS)
def test_every_line_of_a_script_leads_back_to_its_file(name: str) -> None:
    text, source_map = script_source(name)
    lines = text.split("\n")
    files = {
        HEADER: script_header(name).split("\n"),
        PRELUDE: lua_file(PRELUDE).split("\n"),
        f"{name}.lua": lua_file(f"{name}.lua").split("\n"),
    }
    for number in range(1, len(lines)):
        part, own = source_map.locate(number)
        assert files[part][own - 1] == lines[number - 1], (part, own)
    assert source_map.locate(len(lines) - 1)[0] == f"{name}.lua"
