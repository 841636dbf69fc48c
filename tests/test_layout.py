"""The layout keeps its promises: the worker core imports nothing above it, no worker file
grows past a screenful of concerns, the worker image carries no sandbox or developer tools,
and no comment points at a document outside the repository."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ABOVE_THE_CORE = ("services", "m2e_sandbox", "m2e_devtools", "tests", "bench")
MAX_LINES = 350


def imports(path: Path) -> set[str]:
    """Every module a file imports, lazy imports inside functions included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def sources(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def test_the_worker_core_imports_nothing_above_it() -> None:
    wrong = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in sources("shared")
        for module in imports(path)
        if module.split(".")[0] in ABOVE_THE_CORE
    }
    assert not wrong, sorted(wrong)


def test_the_workers_import_neither_the_sandbox_nor_the_developer_tools() -> None:
    wrong = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in sources("services")
        for module in imports(path)
        if module.split(".")[0] in ("m2e_sandbox", "m2e_devtools", "tests", "bench")
    }
    assert not wrong, sorted(wrong)


def test_no_worker_file_is_longer_than_a_room_should_be() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in sources("shared", "services")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, long


def test_no_comment_cites_a_document_outside_the_repository() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    cited = [
        name
        for name in tracked
        if name.endswith((".py", ".md", ".yaml", ".yml", ".tpl", ".txt", "Makefile", "Dockerfile"))
        and re.search(r"DESIGN\s*§", (ROOT / name).read_text(errors="replace"))
    ]
    assert not cited, cited


def worker_image_sources() -> list[str]:
    """What the Dockerfile copies into the stages the worker image is built from."""
    stages: dict[str, list[str]] = {}
    current = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("FROM "):
            current = line.split()[-1]
            stages[current] = []
        elif line.startswith("COPY ") and "--from=" not in line:
            stages[current] += line.split()[1:-1]
    return stages["deps"] + stages["build"]


def test_the_worker_image_holds_no_sandbox_no_developer_tools_and_no_aiohttp(
    tmp_path: Path,
) -> None:
    copied = worker_image_sources()
    assert {"shared", "services"} <= set(copied)
    assert not {"m2e_sandbox", "m2e_devtools", "."} & set(copied)
    src = tmp_path / "src"
    src.mkdir()
    for name in copied:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, src / name)
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path / "wheel"),
            str(src),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        pytest.fail(f"the worker image's sources do not build: {built.stderr[-2000:]}")
    [wheel] = (tmp_path / "wheel").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packages = {n.split("/")[0] for n in names if not n.endswith(".dist-info/") and "/" in n}
    assert packages - {n.split("/")[0] for n in names if ".dist-info" in n} == {
        "shared",
        "services",
    }
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [
        line
        for line in zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
        if line.startswith("Requires-Dist: aiohttp")
    ]
    assert requires and all('extra == "sandbox"' in line for line in requires), requires
