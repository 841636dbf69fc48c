"""The README's configuration table names every setting the code reads."""

from __future__ import annotations

from pathlib import Path

from shared.config import WorkerSettings
from shared.devstack import StackSettings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_worker_setting_is_documented() -> None:
    missing = [name.upper() for name in WorkerSettings.model_fields if name.upper() not in README]
    assert missing == []


def test_every_stack_setting_is_documented() -> None:
    missing = [
        f"M2E_STACK_{n.upper()}"
        for n in StackSettings.model_fields
        if f"M2E_STACK_{n.upper()}" not in README
    ]
    assert missing == []
