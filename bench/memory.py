"""Resident memory of a worker process holding 20,000 pending items.

    .venv/bin/m2e-sync stack up
    .venv/bin/python bench/memory.py [--pending 20000]

A real `m2e-sync run` process per service, against the sandbox with a budget of one
request an hour, so every item consumed stays pending (decoded, coalesced, unsent). RSS
from /proc/<pid>/status once the worker reports the items pending, against the same
process idle after start. product-sync carries SAP Anywhere-shaped products with two
variants each (~1.5 KB a message); variant-sync carries small partial updates.
Target: ≤ 200 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import BOOTSTRAP, produce, verdict
from product_upserts import event

from tests.integration.harness import (
    ACCT_A,
    TOKEN_A,
    SandboxServer,
    WorkerProcess,
    create_topics,
    eventually,
    sandbox_config,
)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def messages(service: str, n: int) -> list[tuple[bytes, bytes]]:
    rng = random.Random(5)
    out = []
    for i in range(n):
        if service == "product-sync":
            sku = f"MEM-{i:06d}"
            body = event(rng, ACCT_A, sku, i)
        else:
            sku = f"MEMV-{i:06d}"
            body = {"account_token": ACCT_A, "sku": sku, "price": 1.5, "quantity": i % 90}
        out.append((sku.encode(), json.dumps(body).encode()))
    return out


async def measure(service: str, base: str, pending: int) -> dict[str, Any]:
    sandbox = SandboxServer(sandbox_config(requests=1, period_s=3600.0))
    await sandbox.start()
    tmp = Path(tempfile.mkdtemp(prefix="m2e-bench-mem-"))
    creds = tmp / "credentials.yaml"
    creds.write_text(f"{ACCT_A}: {TOKEN_A}\n")
    topic = await create_topics(BOOTSTRAP, base)
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
        "KAFKA_INPUT_TOPIC": topic,
        "KAFKA_GROUP_ID": f"bench-mem-{uuid.uuid4().hex[:6]}",
        "M2E_BASE_URL": sandbox.base_url,
        "M2E_CREDENTIALS_FILE": str(creds),
        "RATE_LIMIT_REQUESTS": "1",
        "RATE_LIMIT_PERIOD_S": "3600",
        "LOG_LEVEL": "WARNING",
    }
    worker = WorkerProcess(service, env, tmp, service)
    try:
        await eventually(worker.ready, timeout_s=60)
        await asyncio.sleep(2.0)
        idle = rss_mb(worker.proc.pid)
        body = messages(service, pending)
        await produce(topic, body)
        await eventually(lambda: worker.metric("m2e_sync_pending_items") >= pending, timeout_s=120)
        await asyncio.sleep(2.0)  # let allocation settle
        held = worker.metric("m2e_sync_pending_items")
        loaded = rss_mb(worker.proc.pid)
        return {
            "service": service,
            "pending": held,
            "message_bytes": sum(len(v) for _, v in body) / len(body),
            "idle_mb": idle,
            "rss_mb": loaded,
        }
    finally:
        worker.signal(15)
        await worker.wait(60)
        await sandbox.close()


async def run(pending: int = 20_000) -> list[dict[str, Any]]:
    return [
        await measure("product-sync", "product-upserts", pending),
        await measure("variant-sync", "variant-updates", pending),
    ]


def met(row: dict[str, Any]) -> bool:
    return bool(row["rss_mb"] <= 200)


def report(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        print(
            f"memory    {r['service']:13} {r['pending']:,.0f} pending ({r['message_bytes']:,.0f} B each): "
            f"RSS {r['rss_mb']:.0f} MB (idle {r['idle_mb']:.0f} MB; target ≤ 200 MB: "
            f"{verdict(met(r))})"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--pending", type=int, default=20_000)
    report(asyncio.run(run(parser.parse_args().pending)))
