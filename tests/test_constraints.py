"""constraints.txt pins every dependency pyproject.toml names, inside its range, and the
venv `make` built holds exactly those versions: a fresh clone installs what was tested."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep, f"constraints.txt: {line!r} is not an exact pin (name==version)"
        pins[canonicalize_name(name)] = version
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + [
        r for e in project["optional-dependencies"].values() for r in e
    ]
    return [Requirement(line) for line in lines]


def test_every_declared_dependency_is_pinned_inside_its_range() -> None:
    pins = _pins()
    problems = []
    for req in _declared():
        pinned = pins.get(canonicalize_name(req.name))
        if pinned is None:
            problems.append(f"{req.name}: not pinned")
        elif not req.specifier.contains(pinned, prereleases=True):
            problems.append(f"{req.name}: pinned {pinned}, outside {req.specifier}")
    assert problems == []


def test_the_venv_holds_the_pinned_versions() -> None:
    pins = _pins()
    found = {
        req.name: (metadata.version(req.name), pins.get(canonicalize_name(req.name)))
        for req in _declared()
    }
    drifted = {name: pair for name, pair in found.items() if pair[0] != pair[1]}
    assert drifted == {}, "installed vs pinned; run `make venv` (or `make lock` to re-pin)"


def test_the_image_installs_the_pinned_versions() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY pyproject.toml constraints.txt ./" in dockerfile
    # Every install that resolves dependencies is held to the pins; the project's own
    # install adds none (--no-deps) on top of the pinned dependency layer.
    installs = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert len(installs) == 3, installs
    for line in installs:
        held = "-c constraints.txt" in line or "--no-deps" in line
        assert held, line
