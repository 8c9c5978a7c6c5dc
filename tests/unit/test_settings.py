"""Settings: parsing, errors, secrets from files, and the help texts and README table that
are written from the same declarations."""

from __future__ import annotations

import ast
import dataclasses
import ipaddress
from pathlib import Path

import pytest

from shared.env_settings import SettingsError, number, shown_default, url, variables
from shared.settings import (
    COMMANDS,
    DemoSettings,
    Part,
    RateLimits,
    Settings,
    declared,
    environment_help,
    help_page,
    readme_block,
    with_readme_block,
)
from waitroom.up import child_env

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_values_are_parsed_by_type() -> None:
    s = Settings.from_env(
        {
            "WAITROOM_PORT": "9001",
            "WAITROOM_LOG_LEVEL": "",
            "WAITROOM_QUEUE_TOKEN_ALG": "es256",
            "WAITROOM_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.1,",
            "WAITROOM_RATE_LIMITS": "off",
            "WAITROOM_LIMIT_ENQUEUE": "5 per second",
            "WAITROOM_KEYS_DIR": "/srv/keys",
            "WAITROOM_TOKEN_BINDING": "Yes",
            "WAITROOM_PUBLIC_URL": "https://wait.example/",
            "WAITROOM_NATS_URL": "nats://a:4222,nats://b:4222",
            "OTHER": "ignored",
        }
    )
    assert s.port == 9001
    assert s.log_level == "info"  # empty means unset
    assert s.queue_token_alg == "ES256"  # any case, given back as declared
    assert s.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.1.1/32"),
    )
    assert s.rate_limits == RateLimits(enabled=False, enqueue="5 per second")
    assert s.keys_dir == Path("/srv/keys")
    assert s.token_binding is True
    assert s.public_url == "https://wait.example"
    assert s.nats_url == "nats://a:4222,nats://b:4222"


def test_unset_means_the_declared_defaults() -> None:
    s = Settings.from_env({})
    assert s == Settings(instance=s.instance)
    assert s.variables_set == frozenset()
    assert s.rate_limits == RateLimits()
    assert s.ip_hash_salt == ""  # the gateway then uses the deployment's own salt
    assert DemoSettings.from_env({}) == DemoSettings()


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"WAITROOM_PORT": "eighty"}, "WAITROOM_PORT must be a whole number (got 'eighty')"),
        ({"WAITROOM_PORT": "70000"}, "WAITROOM_PORT must be at most 65535"),
        ({"WAITROOM_LEASE_MS": "5"}, "WAITROOM_LEASE_MS must be at least 100 (got '5')"),
        ({"WAITROOM_TRUSTED_PROXIES": "10.0.0.0/8,nope"}, "'nope' is not one"),
        ({"WAITROOM_RELAY": "maybe"}, "WAITROOM_RELAY must be true or false"),
        ({"WAITROOM_QUEUE_TOKEN_ALG": "HS256"}, "must be one of RS256, ES256"),
        ({"WAITROOM_LOG_LEVEL": "loud"}, "WAITROOM_LOG_LEVEL must be one of debug, info"),
        ({"WAITROOM_LIMIT_STATUS": "often"}, "WAITROOM_LIMIT_STATUS must be a rate"),
        ({"WAITROOM_PUBLIC_URL": "wait.example"}, "must be a URL starting with http://"),
        ({"WAITROOM_NATS_URL": "nats://a:4222,http://b"}, "WAITROOM_NATS_URL must be a URL"),
        ({"WAITROOM_STREAM": "a.b"}, "WAITROOM_STREAM must be a JetStream stream name"),
        ({"WAITROOM_DEMO_PORT": "0"}, "WAITROOM_DEMO_PORT must be at least 1"),
    ],
)
def test_an_unusable_value_is_named_with_what_it_must_be(env: dict[str, str], says: str) -> None:
    cls = DemoSettings if "WAITROOM_DEMO_PORT" in env else Settings
    with pytest.raises(SettingsError) as caught:
        cls.from_env(env)
    assert says in str(caught.value)


def test_parsers_for_settings_to_come() -> None:
    seconds = number(0.5)
    assert seconds("2.5") == 2.5
    for bad, says in (("soon", "a number"), ("nan", "finite"), ("0.1", "at least 0.5")):
        with pytest.raises(ValueError, match=says):
            seconds(bad)
    assert url("redis", "unix")("unix:///run/redis.sock") == "unix:///run/redis.sock"
    with pytest.raises(ValueError, match="valid host and port"):
        url("redis")("redis://db:port/0")


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(
            {"WAITROOM_PORT": "x", "WAITROOM_LIMIT_SESSION": "y", "WAITROOM_RELAY": "z"}
        )
    assert [p.split()[0] for p in caught.value.problems] == [
        "WAITROOM_PORT",
        "WAITROOM_LIMIT_SESSION",
        "WAITROOM_RELAY",
    ]


def test_a_secret_is_never_repeated_in_an_error() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"WAITROOM_REDIS_URL": "http://user:hunter2hunter2@db:6379"})
    assert "WAITROOM_REDIS_URL must be a URL starting with redis://" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    settings = Settings(admin_key="a-very-secret-admin-key-0123456789")
    assert "a-very-secret" not in repr(settings)


def test_secrets_can_come_from_files(tmp_path: Path) -> None:
    key = tmp_path / "admin_key"
    key.write_text("from-a-file-admin-key-0123456789\n")
    url = tmp_path / "redis_url"
    url.write_text("redis://:pw@db:6379/0")
    s = Settings.from_env(
        {"WAITROOM_ADMIN_KEY_FILE": str(key), "WAITROOM_REDIS_URL_FILE": str(url)}
    )
    assert s.admin_key == "from-a-file-admin-key-0123456789"  # the newline is dropped
    assert s.redis_url == "redis://:pw@db:6379/0"
    assert s.was_set("admin_key")
    assert s.was_set("redis_url")
    # an empty _FILE counts as unset, like any empty variable
    assert Settings.from_env({"WAITROOM_ADMIN_KEY_FILE": ""}).admin_key == ""


@pytest.mark.parametrize(
    ("env", "says"),
    [
        (
            {"WAITROOM_ADMIN_KEY": "x" * 30, "WAITROOM_ADMIN_KEY_FILE": "{key}"},
            "WAITROOM_ADMIN_KEY and WAITROOM_ADMIN_KEY_FILE are both set",
        ),
        ({"WAITROOM_IP_HASH_SALT_FILE": "{missing}"}, "cannot read"),
        ({"WAITROOM_NATS_URL_FILE": "{empty}"}, "is empty"),
        ({"WAITROOM_REDIS_URL_FILE": "{key}"}, "WAITROOM_REDIS_URL_FILE ({key}) must be a URL"),
    ],
)
def test_file_problems_are_named(tmp_path: Path, env: dict[str, str], says: str) -> None:
    files = {"key": tmp_path / "key", "missing": tmp_path / "missing", "empty": tmp_path / "e"}
    files["key"].write_text("not-a-url-but-a-key-0123456789")
    files["empty"].write_text(" \n")
    named = {k: str(v) for k, v in files.items()}
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({k: v.format(**named) for k, v in env.items()})
    assert says.format(**named) in str(caught.value)
    assert "not-a-url-but-a-key" not in str(caught.value)


def test_only_secrets_are_read_from_files(tmp_path: Path) -> None:
    port = tmp_path / "port"
    port.write_text("9000")
    assert Settings.from_env({"WAITROOM_PORT_FILE": str(port)}).port == 8000


def test_keyword_construction_and_changes() -> None:
    s = Settings(port=1234, rate_limits=RateLimits(enabled=False), instance="i-1")
    changed = s.with_changes(port=4321)
    assert (changed.port, changed.rate_limits.enabled, changed.instance) == (4321, False, "i-1")
    assert s.port == 1234
    read = Settings.from_env({"WAITROOM_LOG_LEVEL": "DEBUG", "WAITROOM_INSTANCE": "pod-7"})
    assert read.log_level == "debug"
    assert read.was_set("log_level")
    assert read.was_set("instance")
    assert not read.was_set("redis_url")
    assert read.variables_set == {"WAITROOM_LOG_LEVEL", "WAITROOM_INSTANCE"}


def test_declarations_are_complete_and_consistent() -> None:
    names = [var.name for var, _ in declared()]
    assert len(names) == len(set(names)), "a variable is declared twice"
    for cls in (Settings, DemoSettings, RateLimits):
        declared_fields = {f.name for _, f in variables(cls)}
        for f in dataclasses.fields(cls):
            if f.name != "variables_set" and f.name != "rate_limits":
                assert f.name in declared_fields, f"{cls.__name__}.{f.name} has no variable"
    for var, f in declared():
        assert var.name.startswith("WAITROOM_"), var.name
        assert var.help, var.name
        assert "\n" not in var.help, var.name
        assert var.parts, var.name
        assert all(isinstance(p, Part) for p in var.parts), var.name
        literal = f.default is not dataclasses.MISSING and f.default not in ("", ())
        if literal and var.shown is None:
            # the default as written in the help parses back to the default itself
            assert var.parse(shown_default(var, f)) == f.default, var.name


def test_help_lists_exactly_what_a_part_reads() -> None:
    for part in Part:
        text = environment_help(part)
        for var, _ in declared():
            listed = f"  {var.name}  (default: " in text
            assert listed == (part in var.parts), f"{part}: {var.name}"
    gateway = environment_help(Part.GATEWAY)
    assert "  WAITROOM_PORT  (default: 8000)\n      port to listen on" in gateway
    assert "WAITROOM_ADMIN_KEY_FILE, a file holding it" in gateway
    assert "WAITROOM_HEARTBEAT_TICK_MS" not in gateway
    assert "WAITROOM_HEARTBEAT_TICK_MS" in environment_help(Part.HEARTBEAT)
    assert all(len(line) <= 79 or "(default:" in line for line in gateway.splitlines())
    assert help_page("python -m x: does x.\n", Part.KEYS).startswith("python -m x: does x.\n\n")


def test_each_entry_point_prints_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.__main__ import main as gateway_main
    from waitroom.cli import main as cli_main

    gateway_main(["--help"])
    assert capsys.readouterr().out.endswith(environment_help(Part.GATEWAY) + "\n")
    for part in COMMANDS:
        command = part.value.removeprefix("waitroom ")
        argv = [command, "list", "--help"] if command == "keys" else [command, "--help"]
        with pytest.raises(SystemExit):
            cli_main(argv)
        out = capsys.readouterr().out
        assert environment_help(part) in out, command


def test_the_readme_table_is_the_generated_one() -> None:
    readme = (ROOT / "README.md").read_text()
    assert with_readme_block(readme) == readme, (
        "README.md's configuration table is stale: run `python -m shared.settings --readme`"
    )
    assert readme_block() in readme
    for var, _ in declared():
        assert f"| `{var.name}` |" in readme


def test_the_readme_block_is_replaced_between_its_markers() -> None:
    stale = "intro\n<!-- settings:begin -->\nold table\n<!-- settings:end -->\nafter\n"
    fresh = with_readme_block(stale)
    assert fresh == f"intro\n{readme_block()}\nafter\n"
    assert with_readme_block(fresh) == fresh


def test_up_hands_its_parts_values_not_files() -> None:
    base = {"WAITROOM_ADMIN_KEY_FILE": "/run/secrets/k", "WAITROOM_LEASE_MS": "500", "X": "y"}
    env = child_env(base, WAITROOM_ADMIN_KEY="k" * 30)
    assert env == {"WAITROOM_ADMIN_KEY": "k" * 30, "WAITROOM_LEASE_MS": "500", "X": "y"}
    Settings.from_env(env)  # would fail with both set


PACKAGES = ("shared", "gateway", "admission_worker", "heartbeat_worker", "waitroom")


def test_no_module_reads_the_environment_outside_main() -> None:
    """Settings are read once, in ``main``: code elsewhere never looks up a variable."""
    lookups = ("os.environ.get", "os.getenv", "os.environ.setdefault")
    offenders = []
    for package in PACKAGES:
        for source in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(source.read_text())
            for node in ast.walk(tree):
                looked_up = (isinstance(node, ast.Attribute) and ast.unparse(node) in lookups) or (
                    isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ"
                )
                if looked_up:
                    offenders.append(f"{source.relative_to(ROOT)}: {ast.unparse(node)}")
    assert offenders == []
