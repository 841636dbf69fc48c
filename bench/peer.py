"""m2e-sync against a general stream processor, side by side: Benthos v4.27.0.

    .venv/bin/m2e-sync stack up
    .venv/bin/python bench/peer.py [--skus 5000] [--updates 10] [--limit 10] [--period 2]

The same topic contents (every SKU updated `--updates` times, the last update the value
that must win), the same sandbox budget (fixed windows), the same machine, one after the
other: one `m2e-sync run variant-sync` process, then Benthos configured the way its
documentation suggests for this job (`kafka_franz` input; output batching of 500 or 1 s,
`archive: json_array` and a mapping into `{"variants": [...]}`; `http_client` PATCH with a
Redis `rate_limit` resource at the same budget, `max_in_flight: 1` (more reorders a SKU's
updates), retries with back-off on 429 and 5xx; a `fallback` to a DLQ topic). Benthos is
built once from the Go module proxy into the tools cache (`bench/peer/` pins its
modules). Reported: time from the first request until the sandbox holds every SKU's last
value, requests, 429s, and SKUs left stale when the run gives up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from common import BOOTSTRAP, REDIS_URL, meter_from_now, produce, stop_workers, worker_env

from tests import tools
from tests.integration.harness import (
    ACCT_A,
    TOKEN_A,
    SandboxServer,
    WorkerProcess,
    create_topics,
    sandbox_config,
    wait_ready,
)

BENTHOS = "github.com/benthosdev/benthos/v4 v4.27.0"
ROUTE = "PATCH /catalog/product/variant/"


def benthos() -> Path:
    """The Benthos binary, built once from bench/peer (pinned in its go.mod and go.sum)."""
    path = tools.CACHE / "bin" / "benthos-v4.27.0"
    if not path.exists():
        print(f"peer: building {BENTHOS} (once; cached in {path.parent})", flush=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, GOFLAGS="-modcacherw")
        subprocess.run(
            [tools._go(), "build", "-o", str(path), "."], cwd=HERE / "peer", env=env, check=True
        )
    return path


def workload(skus: int, updates: int) -> tuple[list[tuple[bytes, bytes]], dict[str, float]]:
    """Every SKU updated `updates` times in turn; returns the messages and each SKU's last
    price."""
    messages, last = [], {}
    for round_ in range(updates):
        for i in range(skus):
            sku = f"P-{i:05d}"
            price = round(10 + round_ + i % 7 / 10, 2)
            body = {"account_token": ACCT_A, "sku": sku, "price": price}
            messages.append((sku.encode(), json.dumps(body).encode()))
            last[sku] = price
    return messages, last


def benthos_config(
    topic: str, sandbox_url: str, limit: int, period: float, in_flight: int = 1
) -> dict[str, Any]:
    return {
        "http": {"enabled": False},
        "logger": {"level": "WARN"},
        "input": {
            "kafka_franz": {
                "seed_brokers": [BOOTSTRAP],
                "topics": [topic],
                "consumer_group": f"bench-peer-{uuid.uuid4().hex[:6]}",
                "start_from_oldest": True,
            }
        },
        "output": {
            "fallback": [
                {
                    "http_client": {
                        "url": f"{sandbox_url}/catalog/product/variant/",
                        "verb": "PATCH",
                        "headers": {"access-token": TOKEN_A, "Content-Type": "application/json"},
                        "rate_limit": "m2e",
                        "max_in_flight": in_flight,
                        "retries": 5,
                        "retry_period": "1s",
                        "max_retry_backoff": "10s",
                        "backoff_on": [429],
                        "batching": {
                            "count": 500,
                            "period": "1s",
                            "processors": [
                                {"archive": {"format": "json_array"}},
                                {
                                    "mapping": 'root = {"variants": this.map_each(u -> '
                                    '{"sku": u.sku, "price": u.price})}'
                                },
                            ],
                        },
                    }
                },
                {"kafka_franz": {"seed_brokers": [BOOTSTRAP], "topic": f"{topic}.dlq"}},
            ]
        },
        "rate_limit_resources": [
            {
                "label": "m2e",
                "redis": {
                    "url": REDIS_URL,
                    "count": limit,
                    "interval": f"{period:g}s",
                    "key": f"bench-peer-{uuid.uuid4().hex[:6]}",
                },
            }
        ],
    }


def start_benthos(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(benthos()), "-c", str(config)], stdout=out, stderr=subprocess.STDOUT
        )


async def until_consistent(
    sandbox: SandboxServer, last: dict[str, float], timeout_s: float
) -> tuple[float | None, int]:
    """Seconds from the first request until every SKU holds its last price (None: never
    within `timeout_s`), and how many SKUs are stale at that point."""
    deadline = time.time() + timeout_s
    stale = len(last)
    while time.time() < deadline:
        stale = sum(
            1
            for sku, price in last.items()
            if (sandbox.variant(TOKEN_A, sku) or {}).get("price") != price
        )
        log = sandbox.requests(ROUTE)
        if stale == 0 and log:
            return time.time() - min(r["t"] for r in log), 0
        await asyncio.sleep(0.25)
    return None, stale


async def one_run(system: str, args: argparse.Namespace, in_flight: int = 1) -> dict[str, Any]:
    sandbox = SandboxServer(sandbox_config())
    await sandbox.start()
    proc: Any = None
    try:
        messages, last = workload(args.skus, args.updates)
        await sandbox.seed_variants(TOKEN_A, list(last), per_product=250)
        topic = await create_topics(BOOTSTRAP, "variant-updates")
        await produce(topic, messages)
        meter_from_now(sandbox, args.limit, args.period)
        tmp = Path(tempfile.mkdtemp(prefix="m2e-peer-"))
        if system == "m2e-sync":
            (tmp / "credentials.yaml").write_text(f"{ACCT_A}: {TOKEN_A}\n")
            env = worker_env(
                topic,
                sandbox.base_url,
                tmp / "credentials.yaml",
                RATE_LIMIT_REQUESTS=args.limit,
                RATE_LIMIT_PERIOD_S=args.period,
            )
            proc = WorkerProcess("variant-sync", env, tmp, "variant-sync")
            await wait_ready(proc, timeout_s=120)
        else:
            config = tmp / "benthos.json"  # JSON is YAML
            config.write_text(
                json.dumps(
                    benthos_config(topic, sandbox.base_url, args.limit, args.period, in_flight)
                )
            )
            proc = start_benthos(config, tmp / "benthos.log")
        took, stale = await until_consistent(sandbox, last, args.timeout)
        log = sandbox.requests(ROUTE)
        return {
            "system": system if system == "m2e-sync" else f"{system} (max_in_flight {in_flight})",
            "seconds": took,
            "requests": sum(1 for r in log if r["status"] != 429),
            "throttled": sum(1 for r in log if r["status"] == 429),
            "stale": stale,
            "skus": len(last),
        }
    finally:
        if isinstance(proc, WorkerProcess):
            await stop_workers([proc])
        elif proc is not None:
            proc.terminate()
            proc.wait(30)
        await sandbox.close()


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    lines = [
        f"{args.skus:,} SKUs × {args.updates} updates, {args.limit} requests per "
        f"{args.period:g} s (fixed windows):"
    ]
    for r in rows:
        took = f"{r['seconds']:.1f} s" if r["seconds"] is not None else f"> {args.timeout:g} s"
        lines.append(
            f"  {r['system']:28} consistent after {took}, {r['requests']} requests, "
            f"{r['throttled']} × 429, {r['stale']} SKUs stale"
        )
    ours, peer = rows[:2]
    if ours["seconds"] and ours["requests"]:
        faster = (peer["seconds"] or args.timeout) / ours["seconds"]
        fewer = (peer["requests"] + peer["throttled"]) / ours["requests"]
        ok = faster >= 4 and fewer >= 10 and ours["stale"] == 0
        lines.append(
            f"  m2e-sync against Benthos with max_in_flight 1: {faster:.1f}× faster to "
            f"consistency, {fewer:.1f}× fewer requests, 429s included (target ≥ 4× and ≥ 10×, "
            f"0 stale: {'met' if ok else 'NOT MET'})"
        )
    for line in lines:
        print(line)
    return lines


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """m2e-sync, then Benthos as documented (max_in_flight 1), then Benthos allowed more
    requests in flight (faster, but a SKU's updates may land out of order)."""
    rows = [await one_run("m2e-sync", args), await one_run("benthos", args)]
    return [*rows, await one_run("benthos", args, in_flight=4)]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("--skus", type=int, default=5000)
    p.add_argument("--updates", type=int, default=10)
    p.add_argument("--limit", type=int, default=10)
    p.add_argument("--period", type=float, default=2.0)
    p.add_argument("--timeout", type=float, default=120.0, help="give up after this long")
    p.add_argument("--write", type=Path, help="also write the figures there")
    return p


def write(path: Path, lines: list[str]) -> None:
    path.write_text(
        "\n".join(
            [
                "# m2e-sync and a general stream processor, side by side",
                "",
                f"Written by `python bench/peer.py --write {path.name}` (in `make bench`) on "
                f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, this 2-CPU machine "
                "(shared and noisy). Benthos v4.27.0 is configured as bench/peer.py "
                "describes; its figures are printed as measured.",
                "",
                "```",
                *lines,
                "```",
                "",
            ]
        )
    )


if __name__ == "__main__":
    arguments = parser().parse_args()
    benthos()
    measured = report(asyncio.run(run(arguments)), arguments)
    if arguments.write:
        write(arguments.write, measured)
