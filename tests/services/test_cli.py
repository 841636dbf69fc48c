"""`m2e-sync`: the worker commands come from the registry; the developer commands join
only where the developer tools are installed (the worker image has none)."""

from __future__ import annotations

import sys

import pytest

from services import cli
from services.registry import SERVICES


def commands(parser: object) -> set[str]:
    sub = next(a for a in parser._actions if a.dest == "command")  # type: ignore[attr-defined]
    return set(sub.choices)


def test_run_offers_exactly_the_registered_workers() -> None:
    parser = cli.build_parser()
    assert parser.parse_args(["run", "variant-sync"]).service == "variant-sync"
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices["run"]._actions[-1].choices) == set(SERVICES)
    assert parser.parse_args(["tick"]).topic == SERVICES["order-poller"].topic


def test_developer_commands_join_when_installed() -> None:
    assert commands(cli.build_parser()) == {
        "run",
        "tick",
        "produce",
        "tail",
        "dlq",
        "stack",
        "sandbox",
        "demo",
        "schemas",
    }


def test_without_the_developer_tools_only_the_worker_commands_remain(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, cli.DEV_COMMANDS, None)  # as in the worker image
    parser = cli.build_parser()
    assert commands(parser) == {"run", "tick", "produce", "tail", "dlq"}
    with pytest.raises(SystemExit):
        parser.parse_args(["stack", "up"])
    assert "invalid choice: 'stack'" in capsys.readouterr().err


def test_a_broken_developer_tool_is_not_mistaken_for_a_missing_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = cli.importlib.import_module

    def broken(name: str) -> object:
        if name == cli.DEV_COMMANDS:
            raise ModuleNotFoundError("No module named 'somedep'", name="somedep")
        return real(name)

    monkeypatch.setattr(cli.importlib, "import_module", broken)
    with pytest.raises(ModuleNotFoundError, match="somedep"):
        cli.build_parser()
