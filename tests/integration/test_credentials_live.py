"""Credentials reloaded live, end to end: a merchant rotates its token (in the sandbox and
in the Secret volume, by a `..data` swap), another revokes its own, a third is added; the
worker follows without a restart, and `/accounts` and `m2e-sync status` say who is
unhealthy and why."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.secret_volume import SecretVolume

from .harness import (
    ACCT_A,
    ACCT_A2,
    ACCT_B,
    ROOT,
    TOKEN_A,
    TOKEN_B,
    create_topics,
    eventually,
    produce,
    read_all,
    sandbox_config,
    update,
    wait_ready,
    worker_env,
)

NEW_A = "it-access-token-a-rotated"


def accounts(worker: Any) -> dict[str, dict[str, Any]]:
    body = httpx.get(f"http://127.0.0.1:{worker.port}/accounts", timeout=5).json()
    return {r["account"]: r for r in body["accounts"]}


def status_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "status", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


def prices(sandbox: Any, token: str, skus: list[str]) -> list[Any]:
    return [(sandbox.variant(token, s) or {}).get("price") for s in skus]


async def start(
    bootstrap: str, sandbox: Any, tmp_path: Path, workers: Any, tokens: dict[str, str]
) -> tuple[Any, SecretVolume, str]:
    volume = SecretVolume(tmp_path / "secret")
    volume.write(tokens)
    topic = await create_topics(bootstrap, "variant-updates")
    env = worker_env(
        bootstrap,
        sandbox.base_url,
        topic,
        f"it-live-{topic}",
        volume.path,
        credentials_reload_s=0.3,
        auth_backoff_s=600,  # a fixed token must not wait for it
        account_park_after_s=600,
    )
    worker = workers("variant-sync", env, "live")
    await wait_ready(worker)
    return worker, volume, topic


async def test_a_rotated_token_and_a_new_account_are_picked_up_without_a_restart(
    bootstrap_servers: str, sandbox_server: Any, tmp_path: Path, workers: Any
) -> None:
    sandbox = await sandbox_server(sandbox_config())
    skus_a = [f"RA{i:03d}" for i in range(50)]
    skus_a2 = [f"RN{i:03d}" for i in range(20)]
    await sandbox.seed_variants(TOKEN_A, skus_a + skus_a2)
    # ACCT_A2 is not in the file yet: its messages are refused as an unknown account.
    worker, volume, topic = await start(
        bootstrap_servers, sandbox, tmp_path, workers, {ACCT_A: TOKEN_A, ACCT_B: TOKEN_B}
    )
    admin = httpx.AsyncClient(base_url=sandbox.base_url.split("/api/")[0])
    rotated = await admin.put("/_sandbox/users/a/access", json={"token": NEW_A})
    assert rotated.is_success

    await produce(bootstrap_servers, topic, [update(ACCT_A, s, price=2.0) for s in skus_a])
    await produce(bootstrap_servers, topic, [update(ACCT_A2, s, price=3.0) for s in skus_a2])
    await eventually(lambda: accounts(worker).get(ACCT_A, {}).get("state") == "unauthorized")
    assert accounts(worker)[ACCT_A]["pending_messages"] == len(skus_a)
    dead = await read_all(bootstrap_servers, f"{topic}.dlq", len(skus_a2))
    assert {dict(r.headers)["error.class"] for r in dead} == {b"UnknownAccount"}

    volume.write({ACCT_A: NEW_A, ACCT_A2: NEW_A, ACCT_B: TOKEN_B})  # the Secret updated
    await eventually(lambda: prices(sandbox, NEW_A, skus_a) == [2.0] * len(skus_a), timeout_s=30)
    await produce(bootstrap_servers, topic, [update(ACCT_A2, s, price=4.0) for s in skus_a2])
    await eventually(lambda: prices(sandbox, NEW_A, skus_a2) == [4.0] * len(skus_a2), timeout_s=30)
    assert accounts(worker)[ACCT_A]["state"] == "ok"
    assert worker.healthy() and worker.proc.poll() is None  # never restarted
    log = worker.log()
    assert NEW_A not in log and TOKEN_A not in log
    assert "credentials reloaded: 3 accounts (1 added, 0 removed, 1 with a new token)" in log


async def test_a_revoked_token_is_reported_unauthorized_and_the_others_go_on(
    bootstrap_servers: str, sandbox_server: Any, tmp_path: Path, workers: Any
) -> None:
    sandbox = await sandbox_server(sandbox_config())
    skus_a, skus_b = [f"VA{i:03d}" for i in range(50)], [f"VB{i:03d}" for i in range(30)]
    await sandbox.seed_variants(TOKEN_A, skus_a)
    await sandbox.seed_variants(TOKEN_B, skus_b)
    worker, _, topic = await start(
        bootstrap_servers,
        sandbox,
        tmp_path,
        workers,
        {ACCT_A: TOKEN_A, ACCT_A2: TOKEN_A, ACCT_B: TOKEN_B},
    )
    admin = httpx.AsyncClient(base_url=sandbox.base_url.split("/api/")[0])
    assert (await admin.put("/_sandbox/users/b/access", json={"revoked": True})).is_success

    await produce(
        bootstrap_servers,
        topic,
        [update(ACCT_B, s, price=5.0) for s in skus_b]
        + [update(ACCT_A, s, price=6.0) for s in skus_a],
    )
    await eventually(lambda: prices(sandbox, TOKEN_A, skus_a) == [6.0] * len(skus_a))
    await eventually(lambda: accounts(worker).get(ACCT_B, {}).get("state") == "unauthorized")
    view = accounts(worker)
    assert view[ACCT_B]["last_error"] == "Unauthorized"
    assert view[ACCT_B]["pending_messages"] == len(skus_b)
    assert view[ACCT_A]["state"] == "ok" and view[ACCT_A]["last_success"] is not None

    done = status_command("--url", f"http://127.0.0.1:{worker.port}")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].split()[:3] == [ACCT_B, "variant-sync", "unauthorized"]
    assert any(line.split()[:3] == [ACCT_A, "variant-sync", "ok"] for line in lines[2:])
    as_json = status_command("--json", "--url", f"http://127.0.0.1:{worker.port}")
    assert json.loads(as_json.stdout)[0]["state"] == "unauthorized"
    assert TOKEN_B not in done.stdout + as_json.stdout
    metrics = httpx.get(f"http://127.0.0.1:{worker.port}/metrics", timeout=5).text
    assert (
        f'm2e_sync_account_state{{account="{ACCT_B}",service="variant-sync",state="unauthorized"}} 4.0'
        in metrics
    )
