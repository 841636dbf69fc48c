"""`m2e-sync`: the worker commands come from the registry; the developer commands join
only where the developer tools are installed (the worker image has none)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
        "status",
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
    assert commands(parser) == {"run", "tick", "produce", "tail", "dlq", "status"}
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


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_malformed_credentials_file_fails_the_start_without_printing_a_token(
    tmp_path: Path,
) -> None:
    token = "m2e-secret-token-7f3a9"
    creds = tmp_path / "credentials.yaml"
    creds.write_text(f"6f1c2d3e-0001-4a5b-8c9d-000000000001: {token}\n  oops: [{token}\n")
    done = run_cli(
        ["-m", "services.cli", "run", "variant-sync"],
        {"M2E_CREDENTIALS_FILE": str(creds), "M2E_ACCESS_TOKENS": ""},
    )
    assert done.returncode == 1, done.stderr
    assert token not in done.stdout + done.stderr
    assert "M2E_CREDENTIALS_FILE" in done.stderr and str(creds) in done.stderr
    assert "Traceback" not in done.stderr


def test_a_typo_in_a_sandbox_config_names_the_key_not_the_token(tmp_path: Path) -> None:
    token = "sandbox-secret-token-42"
    config = tmp_path / "sandbox.yaml"
    config.write_text(
        f'users:\n  - name: shop\n    acces_token: "{token}"\n'
        '    accounts: [{token: "6f1c2d3e-0001-4a5b-8c9d-000000000001", channel: ebay}]\n'
    )
    done = run_cli(["-m", "m2e_sandbox", "--config", str(config)], {})
    assert done.returncode == 1, done.stderr
    assert token not in done.stdout + done.stderr
    assert "users.0.acces_token" in done.stderr and str(config) in done.stderr
