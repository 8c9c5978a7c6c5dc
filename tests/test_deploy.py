"""The deployment, checked offline: the image's contents, compose.yaml against the Compose
Specification's schema, the Kubernetes manifests against the API schemas of a pinned
Kubernetes version, and every PromQL expression of the dashboard and the alert rules
against the metric catalogue (shared/metric_names.py). No Docker engine and no cluster
run here; these are the checks that can be made without them.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import GatewayMetrics
from gateway.serving import uvicorn_options
from shared import keys, metric_names
from shared.metric_names import BY_NAME, BY_SAMPLE, FAMILIES, TARGET_LABELS
from shared.settings import Settings
from shared.worker_process import GRACE_SECONDS

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"
COMPOSE_SCHEMA_SHA256 = "d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"
KUBERNETES_VERSION = "1.33.0"
"""The Kubernetes API the manifests are validated against (kubernetes-validate ships
schemas for 1.25 to 1.37)."""

ENTRY_MODULES = (
    "gateway.__main__",
    "admission_worker.__main__",
    "heartbeat_worker.__main__",
    "waitroom.cli",  # the console script `waitroom`
    "waitroom.up",  # `waitroom up`, imported lazily by the CLI
    "waitroom.demo_site",  # started by `waitroom up` as `python -m waitroom.demo_site`
)
SECRET_VARIABLES = ("WAITROOM_ADMIN_KEY", "WAITROOM_IP_HASH_SALT", "WAITROOM_METRICS_TOKEN")


# --- helpers -------------------------------------------------------------------------------


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@cache
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def waitroom_services() -> dict[str, dict[str, Any]]:
    image = "${WAITROOM_IMAGE:-waitroom:local}"
    return {name: svc for name, svc in services().items() if svc.get("image") == image}


def command_text(service: dict[str, Any]) -> str:
    command = service.get("command", [])
    return command if isinstance(command, str) else " ".join(command)


def healthcheck_text(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return test if isinstance(test, str) else " ".join(test)


@cache
def k8s_documents() -> tuple[tuple[str, dict[str, Any]], ...]:
    """Every manifest under k8s/ (subfolders too), with the file it came from."""
    return tuple(
        (str(path.relative_to(ROOT)), doc)
        for path in sorted((ROOT / "k8s").rglob("*.yaml"))
        for doc in yaml_documents(path)
    )


def k8s_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in k8s_documents() if doc["kind"] == kind]


def k8s_named(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [doc for doc in k8s_kind(kind) if doc["metadata"]["name"] == name]
    return doc


def pod_templates() -> list[tuple[str, dict[str, Any]]]:
    """(workload name, pod template) of every Deployment, StatefulSet and Job."""
    return [
        (doc["metadata"]["name"], doc["spec"]["template"])
        for doc in (*k8s_kind("Deployment"), *k8s_kind("StatefulSet"), *k8s_kind("Job"))
    ]


def selects(match_labels: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in match_labels.items())


def pods_selected(match_labels: dict[str, str]) -> list[str]:
    return [
        name
        for name, template in pod_templates()
        if selects(match_labels, template["metadata"]["labels"])
    ]


def containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    spec = template["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


# --- the image -----------------------------------------------------------------------------


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def declared_packages() -> set[str]:
    """Top-level packages pyproject.toml's [tool.setuptools.packages.find] include names."""
    patterns = pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    tops = {pattern.rstrip("*").rstrip(".") for pattern in patterns}
    return {top for top in tops if (ROOT / top / "__init__.py").exists()}


def dockerfile_copies() -> list[tuple[str, str]]:
    """(source, destination) of each COPY of the build context (not --from) in the file."""
    copies = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["COPY"] and not any(p.startswith("--from") for p in parts):
            *sources, destination = parts[1:]
            copies += [(source, destination) for source in sources]
    return copies


def project_module_path(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imported_modules(path: Path, module: str) -> Iterator[str]:
    """Every module a file imports, at any depth (lazy imports inside functions too)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, node.module] if node.module else parent)
            else:
                base = node.module or ""
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def project_modules_reached() -> set[str]:
    """The project's own modules the entry points import, transitively."""
    seen: set[str] = set()
    todo = list(ENTRY_MODULES)
    while todo:
        module = todo.pop()
        path = project_module_path(module)
        if module in seen or path is None:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages run too
        todo += list(imported_modules(path, module))
    return seen


def test_dockerfile_copies_every_declared_package() -> None:
    copies = dict(dockerfile_copies())
    copied = {source for source in copies if (ROOT / source / "__init__.py").exists()}
    assert copied == declared_packages(), "the Dockerfile and pyproject.toml disagree"
    for source, destination in copies.items():
        assert (ROOT / source).exists(), f"COPY {source}: no such path"
        if source in copied:
            assert destination == f"./{source}"
    # pyproject.toml names README.md as the readme: the build needs it
    assert {"pyproject.toml", "README.md"} <= set(copies)


def test_entry_points_import_only_copied_packages() -> None:
    reached = project_modules_reached()
    tops = {module.split(".")[0] for module in reached}
    # the demo site is part of `waitroom up`: the package once forgotten in the image
    assert "waitroom_site" in tops
    copied = {source for source, _ in dockerfile_copies()}
    assert tops <= copied, f"imported but not copied into the image: {tops - copied}"
    scripts = pyproject()["project"]["scripts"]
    assert scripts["waitroom"] == "waitroom.cli:main"


def test_image_runs_as_non_root_from_wheels_without_build_tools() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    assert len(starts) == 2, "a build stage and a final stage"
    assert " AS build" in lines[starts[0]]
    build, final = "\n".join(lines[: starts[1]]), "\n".join(lines[starts[1] :])
    assert "pip wheel" in build
    assert "--no-index --find-links=/wheels" in final
    assert "pip uninstall --yes pip setuptools wheel" in final
    assert not re.search(r"apt-get install|gcc|build-essential", final)
    users = re.findall(r"^USER (\S+)", final, flags=re.MULTILINE)
    assert users
    assert users[-1].split(":")[0] not in ("0", "root")
    assert re.search(r'^CMD \["python", "-m", "gateway"\]', final, flags=re.MULTILINE)


def dockerignore_excludes(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` out of the build context, as Docker reads it:
    the last pattern that matches the path or one of its parent folders decides."""
    excluded = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        regex = regex.replace(r"\?", "[^/]")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def test_dockerignore_lets_in_what_the_image_needs_and_nothing_secret() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for source, _ in dockerfile_copies():
        needed = [f for f in tracked if f == source or f.startswith(source + "/")]
        assert needed, f"COPY {source}: nothing tracked there"
        left_out = [f for f in needed if dockerignore_excludes(f)]
        assert not left_out, f".dockerignore leaves out files the image needs: {left_out}"
    for secret in (
        ".waitroom/keys/rsa-1-a.pem",
        "secrets/admin_key",
        "secrets/keys/rsa-1-a.pem",
        ".venv/bin/python",
        ".git/HEAD",
        "tests/test_deploy.py",
        ".env",
        "gateway/__pycache__/app.cpython-311.pyc",
    ):
        assert dockerignore_excludes(secret), f"{secret} would reach the build context"


def build_image_wheel(tmp_path: Path) -> Path:
    """Build the project's wheel from exactly what the Dockerfile copies, as its build
    stage does (without fetching anything), and unpack it."""
    context = tmp_path / "context"
    context.mkdir()
    for source, _ in dockerfile_copies():
        if (ROOT / source).is_dir():
            shutil.copytree(
                ROOT / source, context / source, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy(ROOT / source, context / source)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"),
            *("--no-build-isolation", "--no-index", "--wheel-dir", str(wheels), str(context)),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("waitroom-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return site


@pytest.mark.slow
def test_image_wheel_holds_and_runs_every_entry_point(tmp_path: Path) -> None:
    site = build_image_wheel(tmp_path)
    for module in project_modules_reached():
        path = Path(*module.split("."))
        assert (site / path).with_suffix(".py").exists() or (site / path / "__init__.py").exists()
    for data in ("shared/lua/admit.lua", "gateway/templates/room.html", "gateway/static"):
        assert (site / data).exists(), f"package data missing from the wheel: {data}"
    (entry_points,) = site.glob("waitroom-*.dist-info/entry_points.txt")
    assert "waitroom = waitroom.cli:main" in entry_points.read_text()
    # each entry point answers --help from the wheel's copy, not from this checkout
    check = (
        "import runpy, sys; sys.path.insert(0, sys.argv[1]); mod = sys.argv[2]; "
        "sys.argv = [mod, '--help']; "
        "runpy.run_module(mod, run_name='__main__') if mod != 'waitroom.cli' else None; "
        "import waitroom.cli, waitroom_site, gateway; "
        "assert all(m.__file__.startswith(sys.path[0]) "
        "for m in (waitroom.cli, waitroom_site, gateway)), 'imported from the checkout'; "
        "mod == 'waitroom.cli' and waitroom.cli.main(['--help'])"
    )
    for module in ("gateway", "admission_worker", "heartbeat_worker", "waitroom.demo_site"):
        run = subprocess.run(
            [sys.executable, "-c", check, str(site), module],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, run.stderr
        assert "WAITROOM_" in run.stdout, f"{module} --help printed no settings"
    run = subprocess.run(
        [sys.executable, "-c", check, str(site), "waitroom.cli"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "probe" in run.stdout


# --- Compose -------------------------------------------------------------------------------


def compose_validator() -> jsonschema.protocols.Validator:
    raw = COMPOSE_SCHEMA.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == COMPOSE_SCHEMA_SHA256, "see tests/data/README.md"
    schema = json.loads(raw)
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def test_compose_file_follows_the_compose_specification() -> None:
    validator = compose_validator()
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(compose())]
    assert not errors, "\n".join(errors)
    # the schema is really applied: a misspelt key is refused
    broken = json.loads(json.dumps(compose()))
    broken["services"]["gateway"]["healtcheck"] = broken["services"]["gateway"]["healthcheck"]
    assert not validator.is_valid(broken)


def test_every_compose_service_has_a_healthcheck() -> None:
    for name, service in services().items():
        assert "healthcheck" in service, f"{name} has no healthcheck"
        assert not service["healthcheck"].get("disable"), name


def test_waitroom_services_probe_what_the_processes_offer() -> None:
    found = waitroom_services()
    assert "/healthz" in healthcheck_text(found["gateway"])
    assert "/readyz?nats=optional" in healthcheck_text(found["gateway"])
    for role in ("admission", "heartbeat"):
        service = found[f"{role}-worker"]
        assert f"python -m {role}_worker" in command_text(service)
        assert f"waitroom probe {role}" in healthcheck_text(service)
        assert service["deploy"]["replicas"] == 2
    assert found["demo"]["command"] == ["python", "-m", "waitroom.demo_site"]
    assert found["demo"]["environment"]["WAITROOM_DEMO_HOST"] == "0.0.0.0"  # noqa: S104
    for name, service in found.items():
        assert service["user"] == "${WAITROOM_UID:-10001}:${WAITROOM_GID:-10001}", name
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name


def test_nats_cluster_names_all_three_nodes() -> None:
    nodes = {
        name: svc for name, svc in services().items() if svc.get("image", "").startswith("nats:")
    }
    assert sorted(nodes) == ["nats-1", "nats-2", "nats-3"]
    expected_routes = {f"nats://{name}:6222" for name in nodes}
    for name, service in nodes.items():
        flags = dict(arg.split("=", 1) for arg in service["command"][1:] if "=" in arg)
        assert "--jetstream" in service["command"]
        assert flags["--server_name"] == name
        assert flags["--cluster_name"] == "waitroom"
        assert set(flags["--routes"].split(",")) == expected_routes
        assert "js-enabled-only=true" in healthcheck_text(service)
    for name, service in waitroom_services().items():
        if name == "demo":
            continue
        env = service["environment"]
        urls = set(env["WAITROOM_NATS_URL"].split(","))
        assert urls == {f"nats://{node}:4222" for node in nodes}, name
        assert env["WAITROOM_STREAM_REPLICAS"] == "3", name


def test_compose_secrets_are_files_never_environment() -> None:
    declared = compose()["secrets"]
    for name, secret in declared.items():
        assert secret["file"].startswith("./secrets/"), name
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "secrets/admin_key"], cwd=ROOT, check=False
    )
    assert ignored.returncode == 0, "./secrets must be git-ignored"
    gateway = services()["gateway"]
    env = gateway["environment"]
    assert set(gateway["secrets"]) == {"admin_key", "ip_hash_salt", "signing_keys"}
    assert env["WAITROOM_ADMIN_KEY_FILE"] == "/run/secrets/admin_key"
    assert env["WAITROOM_IP_HASH_SALT_FILE"] == "/run/secrets/ip_hash_salt"
    assert env["WAITROOM_KEYS_DIR"] == "/run/secrets/signing_keys"
    for name, service in services().items():
        environment = service.get("environment", {})
        for variable in SECRET_VARIABLES:
            assert variable not in environment, f"{name}: {variable} in plain environment"
        for variable, value in environment.items():
            if variable.endswith("_FILE") and str(value).startswith("/run/secrets/"):
                assert str(value).split("/")[3] in service.get("secrets", []), variable
    # nor anywhere in the text (an x- block merged in, a command line)
    text = (ROOT / "compose.yaml").read_text()
    assert not re.search(r"WAITROOM_(ADMIN_KEY|IP_HASH_SALT)\s*[:=]\s*\S", text)


def test_compose_bind_mounts_exist() -> None:
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


def test_dragonfly_flags_fit_the_lua_scripts() -> None:
    command = services()["dragonfly"]["command"]
    assert "--lock_on_hashtags" in command
    assert "--dbfilename=" in command  # no snapshot can come back older than the stream
    joined = " ".join(command)
    for refused in ("allow-undeclared-keys", "disable-atomicity", "--cluster_mode"):
        assert refused not in joined
    # every flag is explained in a comment of compose.yaml
    comments = " ".join(
        line for line in (ROOT / "compose.yaml").read_text().splitlines() if "#" in line
    )
    for flag in (arg.split("=")[0] for arg in command):
        assert flag in comments, f"no comment says why DragonFly gets {flag}"
    for flag in ("--cluster_mode", "--default_lua_flags"):
        assert flag in comments, f"no comment says why DragonFly goes without {flag}"
    # what --lock_on_hashtags relies on: every key a room script gets shares the room's tag
    for key in keys.RoomKeys("sale").all():
        assert "{sale}" in key
    for script in (ROOT / "shared" / "lua").glob("*.lua"):
        text = script.read_text()
        assert "--!df" not in text, f"{script.name} sets DragonFly flags"
        assert "#!lua" not in text, f"{script.name} sets script flags"
        assert not re.search(r"redis\.call\('(KEYS|SCAN)'", text), script.name
    k8s_args = k8s_named("StatefulSet", "dragonfly")["spec"]["template"]["spec"]["containers"][0]
    assert {"--lock_on_hashtags", "--dbfilename="} <= set(k8s_args["args"])


def test_nginx_streams_events_and_keeps_tokens_out_of_logs() -> None:
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    mounted = services()["lb"]["volumes"]
    assert "./deploy/nginx.conf:/etc/nginx/conf.d/default.conf:ro" in mounted
    events = conf[conf.index("location ~ ^/v1/rooms/[^/]+/events$") :]
    events = events[: events.index("}")]
    assert "proxy_buffering off;" in events
    assert "proxy_read_timeout 1h;" in events
    log_format = conf[conf.index("log_format") : conf.index(";", conf.index("log_format"))]
    for leaky in ("$request ", '$request"', "$request_uri", "$args", "$query_string"):
        assert leaky not in log_format
    assert "$uri" in log_format
    assert "access_log /var/log/nginx/access.log waitroom;" in conf
    assert "location = /metrics {\n        return 404;" in conf


def test_compose_secrets_script_makes_private_files_once(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    script = str(tmp_path / "deploy" / "compose-secrets")
    first = subprocess.run([script], env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    made = tmp_path / "secrets"
    admin_key = (made / "admin_key").read_text()
    assert len(admin_key) >= 32
    assert list((made / "keys").glob("rsa-*.pem"))
    for path in (made / "admin_key", made / "ip_hash_salt", *(made / "keys").iterdir()):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    again = subprocess.run([script], env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "kept" in again.stdout
    assert (made / "admin_key").read_text() == admin_key
    if os.getuid() != 0:
        assert f"WAITROOM_UID={os.getuid()}" in (tmp_path / ".env").read_text()


# --- Kubernetes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "doc"),
    [
        pytest.param(src, doc, id=f"{src}:{doc['kind']}/{doc['metadata']['name']}")
        for src, doc in k8s_documents()
    ],
)
def test_manifest_follows_the_kubernetes_api(source: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_kubernetes_validation_really_refuses_a_broken_manifest() -> None:
    broken = json.loads(json.dumps(k8s_named("Deployment", "waitroom-gateway")))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_deployments_have_probes_resources_and_graceful_stops() -> None:
    for deployment in k8s_kind("Deployment"):
        name = deployment["metadata"]["name"]
        template = deployment["spec"]["template"]
        for container in containers(template):
            resources = container["resources"]
            assert resources["requests"]["cpu"], name
            assert resources["requests"]["memory"], name
            assert resources["limits"]["memory"], name
        main = template["spec"]["containers"][0]
        assert main["livenessProbe"], name
        grace = template["spec"]["terminationGracePeriodSeconds"]
        if name == "waitroom-gateway":
            assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert main["readinessProbe"]["httpGet"]["path"] == "/readyz?nats=optional"
            pause = int(main["lifecycle"]["preStop"]["exec"]["command"][1])
            drain = int(uvicorn_options(Settings())["timeout_graceful_shutdown"])
            assert grace >= pause + drain + 10, "the pod is killed before uvicorn has drained"
        else:
            role = name.removeprefix("waitroom-").removesuffix("-worker")
            assert main["livenessProbe"]["exec"]["command"] == ["waitroom", "probe", role]
            assert main["command"] == ["python", "-m", f"{role}_worker"]
            assert grace >= GRACE_SECONDS + 10, "the worker is killed before its loops finish"
            env = {e["name"]: e for e in main["env"]}
            assert env["WAITROOM_INSTANCE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_workloads_spread_and_have_disruption_budgets() -> None:
    budgets = k8s_kind("PodDisruptionBudget")
    for doc in (*k8s_kind("Deployment"), *k8s_kind("StatefulSet")):
        name = doc["metadata"]["name"]
        spec = doc["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert selects(spec["selector"]["matchLabels"], labels), f"{name}: selector misses pods"
        covering = [
            pdb for pdb in budgets if selects(pdb["spec"]["selector"]["matchLabels"], labels)
        ]
        assert len(covering) == 1, f"{name}: {len(covering)} disruption budgets"
        if spec["replicas"] > 1:
            pod = spec["template"]["spec"]
            assert pod["topologySpreadConstraints"], name
            assert pod["affinity"]["podAntiAffinity"], name
    for pdb in budgets:
        assert len(pods_selected(pdb["spec"]["selector"]["matchLabels"])) == 1, pdb["metadata"]


def test_services_hpa_and_ingress_point_at_what_exists() -> None:
    for service in k8s_kind("Service"):
        assert pods_selected(service["spec"]["selector"]), service["metadata"]["name"]
    (hpa,) = k8s_kind("HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "waitroom-gateway")
    assert k8s_named("Deployment", target["name"])
    services_by_name = {svc["metadata"]["name"]: svc for svc in k8s_kind("Service")}
    for ingress in k8s_kind("Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                ports = {p["name"] for p in services_by_name[backend["name"]]["spec"]["ports"]}
                assert backend["port"]["name"] in ports


def test_config_and_secret_references_exist() -> None:
    config_maps = {doc["metadata"]["name"] for doc in k8s_kind("ConfigMap")}
    secrets = {doc["metadata"]["name"] for doc in k8s_kind("Secret")} | {"waitroom-keys"}
    for name, template in pod_templates():
        for volume in template["spec"].get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets, name
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps, name
        for container in containers(template):
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in config_maps, name
            for variable in container.get("env", []):
                assert variable["name"] not in SECRET_VARIABLES, f"{name}: {variable['name']}"
                if variable["name"].endswith("_FILE"):
                    mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
                    assert any(variable["value"].startswith(m + "/") for m in mounts), name


def test_configmap_matches_the_stores_it_names() -> None:
    data = k8s_named("ConfigMap", "waitroom-config")["data"]
    nats = k8s_named("StatefulSet", "nats")
    assert data["WAITROOM_STREAM_REPLICAS"] == "3" == str(nats["spec"]["replicas"])
    pods = {f"nats-{i}.nats-headless.waitroom.svc.cluster.local" for i in range(3)}
    assert {
        url.removeprefix("nats://").removesuffix(":4222")
        for url in data["WAITROOM_NATS_URL"].split(",")
    } == pods
    conf = k8s_named("ConfigMap", "nats-config")["data"]["nats.conf"]
    assert set(re.findall(r"nats://([^:\s]+):6222", conf)) == pods
    assert "jetstream" in conf
    assert "lame_duck_duration" in conf
    assert data["WAITROOM_REDIS_URL"].startswith("redis://dragonfly.waitroom.svc")
    assert k8s_named("Service", "dragonfly")


def test_network_policies_let_in_only_what_needs_in() -> None:
    policies = k8s_kind("NetworkPolicy")
    default = [p for p in policies if p["spec"]["podSelector"] == {}]
    assert default, "a default deny for every pod"
    assert "ingress" not in default[0]["spec"]
    outside_reachable = set()
    for policy in policies:
        targets = pods_selected(policy["spec"]["podSelector"].get("matchLabels", {}))
        assert targets, f"{policy['metadata']['name']} selects no pod"
        for rule in policy["spec"].get("ingress", []):
            for peer in rule["from"]:
                if "namespaceSelector" in peer:
                    outside_reachable.update(targets)
                else:
                    assert pods_selected(peer["podSelector"]["matchLabels"]), peer
    assert outside_reachable == {"waitroom-gateway", "nats"}  # nats: only its monitor port
    nats_outside = [
        rule
        for rule in k8s_named("NetworkPolicy", "nats")["spec"]["ingress"]
        if any("namespaceSelector" in peer for peer in rule["from"])
    ]
    assert [r["ports"] for r in nats_outside] == [[{"port": 8222, "protocol": "TCP"}]]
    store_clients = {
        name
        for rule in k8s_named("NetworkPolicy", "dragonfly")["spec"]["ingress"]
        for peer in rule["from"]
        for name in pods_selected(peer["podSelector"]["matchLabels"])
    }
    assert store_clients == {
        "waitroom-gateway",
        "waitroom-admission-worker",
        "waitroom-heartbeat-worker",
        "waitroom-recover",
    }


def gateway_routes(tmp_path: Path) -> set[str]:
    from gateway.app import create_app

    app = create_app(Settings(keys_dir=tmp_path / "keys"))
    return {route.path for route in app.routes}


INTERNAL_ROUTES = {"/healthz", "/readyz", "/metrics"}


def ingress_serves(path: str) -> list[dict[str, Any]]:
    """The Ingresses whose paths take ``path`` (route templates filled in with 'x'), the one
    that wins first: with use-regex, ingress-nginx tries the longest path first."""
    concrete = re.sub(r"\{[^}]+\}", "x", path)
    found: list[tuple[int, dict[str, Any]]] = []
    for ingress in k8s_kind("Ingress"):
        for rule in ingress["spec"]["rules"]:
            for entry in rule["http"]["paths"]:
                kind, pattern = entry["pathType"], entry["path"]
                if (
                    (kind == "Exact" and concrete == pattern)
                    or (kind == "Prefix" and (concrete + "/").startswith(pattern.rstrip("/") + "/"))
                    or (kind == "ImplementationSpecific" and re.match(pattern, concrete))
                ):
                    found.append((len(pattern), ingress))
    return [ingress for _, ingress in sorted(found, key=lambda item: -item[0])]


def test_ingress_routes_public_paths_and_keeps_tokens_out_of_logs(tmp_path: Path) -> None:
    for path in gateway_routes(tmp_path):
        served = ingress_serves(path)
        if path in INTERNAL_ROUTES:
            assert not served, f"{path} must stay inside the cluster"
        else:
            assert served, f"{path} is neither routed by the Ingress nor listed as internal"
    for path in ("/v1/rooms/{room}/events", "/rooms/{room}/go"):
        notes = ingress_serves(path)[0]["metadata"]["annotations"]
        assert notes["nginx.ingress.kubernetes.io/enable-access-log"] == "false", path
    events = ingress_serves("/v1/rooms/{room}/events")[0]["metadata"]["annotations"]
    assert events["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert int(events["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(events["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600
    log_format = k8s_named("ConfigMap", "ingress-nginx-controller")["data"]["log-format-upstream"]
    assert "$uri" in log_format
    assert not re.search(r"\$(request|request_uri|args|query_string|http_referer)\b", log_format)


# --- metrics, dashboard, alert rules -------------------------------------------------------


def test_metric_catalogue_is_well_formed() -> None:
    names = [family.name for family in FAMILIES]
    assert len(names) == len(set(names))
    for family in FAMILIES:
        assert re.fullmatch(r"waitroom_[a-z][a-z0-9_]*", family.name), family.name
        assert not family.name.endswith("_total"), "prometheus-client adds _total itself"
        assert family.help.endswith("."), family.name
        assert all(re.fullmatch(r"[a-z][a-z0-9_]*", label) for label in family.labels)
        assert not set(family.labels) & {*TARGET_LABELS, "le"}, family.name
        assert bool(family.buckets) == (family.type == "histogram"), family.name
        assert family.exported_by, family.name
    assert set(metric_names.LEASE_ROLES) == set(keys.LEASE_ROLES)
    lua = " ".join(p.read_text() for p in (ROOT / "shared" / "lua").glob("*.lua"))
    for reason in metric_names.EXPIRY_REASONS:
        assert f"'{reason}'" in lua, f"no script expires for {reason}"


def test_gateway_metrics_of_today_are_in_the_catalogue() -> None:
    class Signed:
        signed: ClassVar[dict[str, int]] = {"queue": 2, "access": 1}

    metrics = GatewayMetrics(Signed(), outbox_bound=10)  # type: ignore[arg-type]
    metrics.observe("enqueue", 201, 0.01)
    metrics.sse_open.set(1)
    for family in text_string_to_metric_families(metrics.render().decode()):
        name = family.name
        if name not in BY_NAME:  # the parser shows a counter's _created as its own family
            assert name in BY_SAMPLE, f"{name} is not in shared/metric_names.py"
            continue
        declared = BY_NAME[name]
        assert declared.type == family.type, name
        for sample in family.samples:
            labels = set(sample.labels) - {"le"}
            assert labels == set(declared.labels), f"{sample.name}: {labels}"


BUILTIN_SERIES = {"up": frozenset(TARGET_LABELS)}
"""Series Prometheus makes itself that the rules may use."""

GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


class PromQLLabelError(AssertionError):
    pass


def selector_labels(selector: promql_parser.VectorSelector) -> frozenset[str]:
    name = selector.name or ""
    family = BY_SAMPLE.get(name)
    labels = family.sample_labels(name) if family else BUILTIN_SERIES.get(name)
    if labels is None:
        raise PromQLLabelError(f"{name} is not in shared/metric_names.py")
    used = {m.name for m in selector.matchers.matchers} - {"__name__"}
    if not used <= labels:
        raise PromQLLabelError(f"{name} has no label {sorted(used - labels)}")
    return labels


LABEL_KEEPING_CALLS = {
    "rate", "irate", "increase", "delta", "idelta", "deriv", "abs", "ceil", "floor", "round",
    "clamp", "clamp_min", "clamp_max", "max_over_time", "min_over_time", "avg_over_time",
    "sum_over_time", "count_over_time", "last_over_time", "changes", "resets",
}  # fmt: skip


def output_labels(expr: Any) -> frozenset[str] | None:
    """The labels the result of ``expr`` carries (None for a scalar), checking on the way
    that every label a matcher, a grouping or a vector match names is really there."""
    if isinstance(expr, promql_parser.VectorSelector):
        return selector_labels(expr)
    if isinstance(expr, promql_parser.MatrixSelector):
        return selector_labels(expr.vector_selector)
    if isinstance(expr, promql_parser.NumberLiteral | promql_parser.StringLiteral):
        return None
    if isinstance(expr, promql_parser.ParenExpr | promql_parser.UnaryExpr):
        return output_labels(expr.expr)
    if isinstance(expr, promql_parser.SubqueryExpr):
        return output_labels(expr.expr)
    if isinstance(expr, promql_parser.AggregateExpr):
        inner = output_labels(expr.expr) or frozenset()
        modifier = expr.modifier
        grouping = frozenset(modifier.labels) if modifier else frozenset()
        if not grouping <= inner:
            raise PromQLLabelError(f"{expr}: grouping by {sorted(grouping - inner)}")
        if modifier and modifier.type == promql_parser.AggModifierType.Without:
            return inner - grouping
        return grouping
    if isinstance(expr, promql_parser.Call):
        name = expr.func.name
        vectors = [output_labels(arg) for arg in expr.args if isinstance(arg, promql_parser.Expr)]
        vector = next((labels for labels in vectors if labels is not None), frozenset())
        if name == "histogram_quantile":
            if "le" not in vector:
                raise PromQLLabelError(f"{expr}: histogram_quantile without le")
            return vector - {"le"}
        if name in LABEL_KEEPING_CALLS:
            return vector
        if name in ("scalar", "time"):
            return None
        if name in ("vector", "absent"):
            return frozenset()
        raise PromQLLabelError(f"{name}(): not known to this check; teach it")
    if isinstance(expr, promql_parser.BinaryExpr):
        return binary_labels(expr)
    raise PromQLLabelError(f"unexpected PromQL node {type(expr).__name__}")


def binary_labels(expr: promql_parser.BinaryExpr) -> frozenset[str] | None:
    lhs, rhs = output_labels(expr.lhs), output_labels(expr.rhs)
    if lhs is None or rhs is None:
        return lhs if rhs is None else rhs
    modifier = expr.modifier
    matching = modifier.matching if modifier else None
    if matching is not None:
        named = frozenset(matching.labels)
        if not (named <= lhs and named <= rhs):
            raise PromQLLabelError(f"{expr}: on/ignoring names a label one side lacks")
        if matching.type == promql_parser.LabelModifierType.Include:
            keys_left, keys_right = named, named
        else:
            keys_left, keys_right = lhs - named, rhs - named
    else:
        keys_left, keys_right = lhs, rhs
    set_operation = str(expr.op) in ("and", "or", "unless")
    many_to_one = (
        modifier is not None and modifier.card != promql_parser.VectorMatchCardinality.OneToOne
    )
    if not set_operation and not many_to_one and keys_left != keys_right:
        # one-to-one matching on different label sets matches nothing: an empty result
        raise PromQLLabelError(f"{expr}: sides never match ({sorted(keys_left ^ keys_right)})")
    return rhs if modifier and str(modifier.card).endswith("OneToMany") else lhs


def sums_a_room_figure(expr: Any) -> bool:
    """``sum`` over waitroom_room_* counts a room once per gateway."""
    found = False

    def visit(node: Any) -> bool:
        nonlocal found
        if isinstance(node, promql_parser.AggregateExpr) and str(node.op) == "sum":
            inner: list[str] = []

            def collect(child: Any) -> bool:
                if isinstance(child, promql_parser.VectorSelector) and child.name:
                    inner.append(child.name)
                return True

            promql_parser.walk(node.expr, collect)
            found = found or any(name.startswith("waitroom_room_") for name in inner)
        return True

    promql_parser.walk(expr, visit)
    return found


def check_promql(text: str) -> None:
    for variable, value in GRAFANA_VARIABLES.items():
        text = text.replace(variable, value)
    expr = promql_parser.parse(text)
    output_labels(expr)
    assert not sums_a_room_figure(expr), f"{text}: use max by (room) for per-room figures"


def rule_expressions() -> list[tuple[str, str]]:
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "waitroom-rules.yaml").read_text())
    return [(r["alert"], r["expr"]) for group in rules["groups"] for r in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        (ROOT / "deploy" / "grafana" / "dashboards" / "waitroom.json").read_text()
    )
    return loaded


def dashboard_expressions() -> list[tuple[str, str]]:
    return [
        (f"{panel['title']}/{target['refId']}", target["expr"])
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    ]


@pytest.mark.parametrize(("where", "expr"), rule_expressions() + dashboard_expressions())
def test_promql_names_catalogued_metrics_and_labels(where: str, expr: str) -> None:
    check_promql(expr)


@pytest.mark.parametrize(
    "expr",
    [
        "waitroom_room_wating",  # a misspelt metric
        'waitroom_room_waiting{route="x"}',  # a label the family lacks
        "sum by (route) (waitroom_room_waiting)",  # grouping by a missing label
        "waitroom_room_waiting > waitroom_outbox_bound",  # sides that never match
        "sum(waitroom_room_waiting)",  # a room figure summed over the gateways
        "histogram_quantile(0.9, sum by (route) (rate(waitroom_http_request_seconds_bucket[5m])))",
        "waitroom_http_requests",  # a counter is scraped as _total
    ],
)
def test_promql_check_catches_mistakes(expr: str) -> None:
    with pytest.raises(AssertionError):
        check_promql(expr)


def test_alert_rules_file_is_well_formed() -> None:
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "waitroom-rules.yaml").read_text())
    assert set(rules) == {"groups"}
    group_names = [group["name"] for group in rules["groups"]]
    assert len(group_names) == len(set(group_names))
    alerts = []
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    for group in rules["groups"]:
        assert set(group) <= {"name", "interval", "rules"}
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert re.fullmatch(r"Waitroom[A-Za-z]+", rule["alert"])
            assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
            assert rule["labels"]["severity"] in ("warning", "critical")
            notes = rule["annotations"]
            assert set(notes) == {"summary", "description", "runbook_url"}
            anchor = notes["runbook_url"].split("#")[1]
            assert anchor == rule["alert"].lower()
            assert re.search(rf"^### {rule['alert']}$", runbook, flags=re.MULTILINE), anchor
            alerts.append(rule["alert"])
    assert len(alerts) == len(set(alerts))


def test_dashboard_is_well_formed() -> None:
    board = dashboard()
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [target["refId"] for target in panel["targets"]]
        assert refs, panel["title"]
        assert len(refs) == len(set(refs)), panel["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    query = variables["room"]["query"]["query"]
    metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", query).groups()  # type: ignore[union-attr]
    assert label in BY_SAMPLE[metric].sample_labels(metric)
    # the monitoring profile provisions exactly this folder
    provider = yaml.safe_load(
        (ROOT / "deploy" / "grafana" / "provisioning" / "dashboards" / "waitroom.yaml").read_text()
    )
    mounted = services()["grafana"]["volumes"]
    assert (
        f"./deploy/grafana/dashboards:{provider['providers'][0]['options']['path']}:ro" in mounted
    )


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    return found


def test_promtool_accepts_the_rules_and_their_cases_pass() -> None:
    tool = promtool()
    folder = ROOT / "deploy" / "prometheus"
    for args in (
        ["check", "rules", "waitroom-rules.yaml"],
        ["test", "rules", "waitroom-rules.test.yaml"],
        ["check", "config", "--syntax-only", "prometheus.yml"],
    ):
        run = subprocess.run(
            [tool, *args], cwd=folder, capture_output=True, text=True, timeout=120, check=False
        )
        assert run.returncode == 0, run.stdout + run.stderr


# --- the runbook ---------------------------------------------------------------------------


def test_runbook_covers_operations_and_every_alert() -> None:
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    headings = re.findall(r"^#+ (.+)$", runbook, flags=re.MULTILINE)
    for needed in (
        "Scale gateways",
        "Scale workers",
        "Rotate the signing keys",
        "Rotate the admin key",
        "Data store lost",
        "A NATS node lost",
        "Drain a worker",
        "Alerts",
    ):
        assert any(h.startswith(needed) for h in headings), f"runbook: no section {needed!r}"
    for alert, _ in rule_expressions():
        assert alert in headings, f"runbook: no section for {alert}"
