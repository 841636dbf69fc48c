"""The README's configuration table names every setting the code reads."""

from __future__ import annotations

from pathlib import Path

from m2e_devtools.stack import StackSettings
from shared.config import WorkerSettings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_worker_setting_is_documented() -> None:
    from services.registry import SERVICES

    fields = set(WorkerSettings.model_fields)
    for spec in SERVICES.values():
        fields |= set(spec.settings.model_fields)
    missing = [name.upper() for name in sorted(fields) if name.upper() not in README]
    assert missing == []


def test_every_stack_setting_is_documented() -> None:
    missing = [
        f"M2E_STACK_{n.upper()}"
        for n in StackSettings.model_fields
        if f"M2E_STACK_{n.upper()}" not in README
    ]
    assert missing == []
