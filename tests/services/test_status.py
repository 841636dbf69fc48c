"""`m2e-sync status`: the workers' /accounts gathered, replicas merged, worst first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from services import status
from services.cli import main


def row(account: str, service: str = "variant-sync", **kw: Any) -> dict[str, Any]:
    base = {
        "account": account,
        "service": service,
        "state": "ok",
        "configured": True,
        "pending_messages": 0,
        "parked_messages": 0,
        "oldest_pending_s": 0.0,
        "last_success": "2026-12-02T08:00:00+00:00",
        "last_error": None,
        "requests_in_window": 1,
        "budget_used": 0.01,
    }
    return base | kw


WORKERS = {
    "http://one:8000": [
        row("acct-ok"),
        row("acct-401", state="unauthorized", pending_messages=3, last_error="Unauthorized"),
    ],
    "http://two:8000": [
        row("acct-ok", last_success="2026-12-02T08:05:00+00:00"),
        row("acct-401", pending_messages=4, oldest_pending_s=41.0),
        row("acct-slow", state="throttled", last_error="Throttled"),
    ],
}


def transport() -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        base = f"{request.url.scheme}://{request.url.host}:{request.url.port}"
        if base not in WORKERS or request.url.path != "/accounts":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={"accounts": WORKERS[base]})

    return httpx.MockTransport(answer)


async def test_replicas_merge_worst_state_summed_backlog_latest_success() -> None:
    rows, failures = await status.gather(list(WORKERS), transport=transport())
    assert failures == []
    merged = status.merge(rows)
    assert [(r["account"], r["state"]) for r in merged] == [
        ("acct-401", "unauthorized"),
        ("acct-slow", "throttled"),
        ("acct-ok", "ok"),
    ]
    first = merged[0]
    assert (first["pending_messages"], first["oldest_pending_s"]) == (7, 41.0)
    assert first["last_error"] == "Unauthorized"
    assert merged[2]["last_success"] == "2026-12-02T08:05:00+00:00"
    assert merged[2]["requests_in_window"] == 2


async def test_the_table_is_worst_first_and_an_unreachable_worker_fails_the_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = await status.status([*WORKERS, "http://gone:8000"], transport=transport())
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ACCOUNT", "SERVICE", "STATE"]
    assert lines[1].split()[:3] == ["acct-401", "variant-sync", "unauthorized"]
    assert "41.0s" in lines[1] and "08:00:00" in lines[1]
    assert code == 1 and "unreachable: http://gone:8000" in err


async def test_json_output_is_the_merged_rows(capsys: pytest.CaptureFixture[str]) -> None:
    assert await status.status(list(WORKERS), as_json=True, transport=transport()) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["account"] == "acct-401" and len(rows) == 3


def test_without_urls_it_asks_the_local_demo_or_says_how_to_start_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(status, "DEMO_WORKERS_FILE", tmp_path / "workers.json")
    assert main(["status"]) == 1
    assert "m2e-sync demo" in capsys.readouterr().err
    (tmp_path / "workers.json").write_text(json.dumps(["http://127.0.0.1:9"]))
    assert status.demo_urls() == ["http://127.0.0.1:9"]
