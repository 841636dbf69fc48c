"""Rate-budget use: 3 replicas of each of the 4 services on one account token.

    .venv/bin/m2e-sync stack up
    .venv/bin/python bench/shared_budget.py [--seconds 60] [--limit 200] [--period 20]

Twelve `m2e-sync run` processes (product-sync, variant-sync, invoice-upload, order-poller,
three of each) share one access token's budget through Redis, against the sandbox
metering the same budget in fixed windows. Every topic holds more work than the budget
can carry, so the budget is the bottleneck throughout. Measured over the complete sandbox
windows of the steady state: requests served ÷ what the windows allow, and 429s.
Target: ≥ 98 % of the limit, zero 429s.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import BOOTSTRAP, meter_from_now, produce, stop_workers, verdict, worker_env

from services.invoice_upload.samples import invoice_pdf
from tests.integration.harness import (
    ACCT_A,
    ACCT_A2,
    TOKEN_A,
    SandboxServer,
    WorkerProcess,
    create_topics,
    order_topics,
    sandbox_config,
    wait_ready,
)

SERVICES = {
    "variant-sync": "variant-updates",
    "product-sync": "product-upserts",
    "invoice-upload": "invoice-uploads",
    "order-poller": "order-poll-ticks",
}


def js(value: Any) -> bytes:
    return json.dumps(value).encode()


VARIANT_BATCH = 50  # variant-sync's batch here: its backlog can fill the budget alone


async def workload(sandbox: SandboxServer, topics: dict[str, str], requests: int) -> None:
    """More work than the budget can carry in the run: 3 × `requests` worth of variant
    PATCHes (variant-sync has the highest priority and may take the whole budget), as many
    invoices (one call each), half as many product creates (a find and a create per 500);
    order polls come from ticks published throughout."""
    variants = [f"SB-{i:06d}" for i in range(3 * requests * VARIANT_BATCH)]
    await sandbox.seed_variants(TOKEN_A, variants, per_product=250)
    accounts = [ACCT_A, ACCT_A2]
    await produce(
        topics["variant-updates"],
        (
            (sku.encode(), js({"account_token": ACCT_A, "sku": sku, "price": i % 500 + 0.5}))
            for i, sku in enumerate(variants)
        ),
    )
    run_id = uuid.uuid4().hex[:6]
    products = []
    for i in range(requests * 250):
        sku = f"SBP-{run_id}-{i:06d}"  # new per run: the catalog view in Redis remembers SKUs
        body = {
            "sku": sku,
            "status": 1,
            "is_simple": True,
            "currency": "EUR",
            "title": f"Budget product {i}",
            "variants": [{"sku": sku, "barcode": None, "price": 9.5, "quantity": 3}],
        }
        products.append((sku.encode(), js({"account_token": accounts[i % 2], "product": body})))
    await produce(topics["product-upserts"], products)
    orders = [o["order_id"] for o in sandbox.sandbox.orders.orders(ACCT_A)]
    invoices = []
    for i in range(requests):
        order = orders[i % len(orders)]
        number = f"INV-SB-{run_id}-{i:06d}"  # new per run: the Redis ledger remembers uploads
        pdf = base64.b64encode(invoice_pdf(order, number)).decode()
        invoices.append(
            (
                order.encode(),
                js(
                    {
                        "account_token": ACCT_A,
                        "order_id": order,
                        "invoice_number": number,
                        "invoice_pdf_base64": pdf,
                    }
                ),
            )
        )
    await produce(topics["invoice-uploads"], invoices)
    ticks = [
        (f"{ch}:{acct}".encode(), js({"account_token": acct, "channel": ch}))
        for _ in range(10)
        for acct, ch in ((ACCT_A, "ebay"), (ACCT_A2, "amazon"))
    ]
    await produce(topics["order-poll-ticks"], ticks)


async def keep_ticking(topic: str, stop: asyncio.Event) -> None:
    """A tick per account a second, as `m2e-sync tick --every 1` would publish."""
    while not stop.is_set():
        await produce(
            topic,
            [
                (f"{ch}:{acct}".encode(), js({"account_token": acct, "channel": ch}))
                for acct, ch in ((ACCT_A, "ebay"), (ACCT_A2, "amazon"))
            ],
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


async def run(
    seconds: float = 60.0,
    limit: int = 200,
    period: float = 20.0,
    replicas: int = 3,
    mode: str = "fixed",
) -> dict[str, Any]:
    # What the budget carries over the whole run, with a margin; split over four topics.
    requests = int((3 * period + seconds) * limit / period / 3) + 20
    config = sandbox_config(orders={"per_account": 200, "new_per_minute": 30})
    config.users = config.users[:1]
    sandbox = SandboxServer(config)
    await sandbox.start()
    procs: list[WorkerProcess] = []
    try:
        topics = {base: await create_topics(BOOTSTRAP, base) for base in SERVICES.values()}
        ticks, orders_topic, cursors = await order_topics(BOOTSTRAP)
        topics["order-poll-ticks"] = ticks
        await workload(sandbox, topics, requests)
        # The budget starts now: the seeding above went through the API unmetered.
        meter_from_now(sandbox, limit, period, mode)
        tmp = Path(tempfile.mkdtemp(prefix="m2e-bench-"))
        creds = tmp / "credentials.yaml"
        creds.write_text(f"{ACCT_A}: {TOKEN_A}\n{ACCT_A2}: {TOKEN_A}\n")
        prefix = f"bench-rl-{uuid.uuid4().hex[:6]}"
        for service, base in SERVICES.items():
            group = f"bench-{service}-{uuid.uuid4().hex[:6]}"
            for r in range(replicas):
                env = worker_env(
                    topics[base],
                    sandbox.base_url,
                    creds,
                    KAFKA_GROUP_ID=group,
                    RATE_LIMIT_REDIS_PREFIX=prefix,
                    RATE_LIMIT_REQUESTS=limit,
                    RATE_LIMIT_PERIOD_S=period,
                    EXPECTED_REPLICAS=replicas * len(SERVICES),
                    ORDERS_TOPIC=orders_topic,
                    ORDER_CURSOR_TOPIC=cursors,
                    ORDER_TRANSACTIONAL_ID=f"{prefix}.order-poller",
                    BATCH_MAX_ITEMS=VARIANT_BATCH if service == "variant-sync" else 500,
                )
                procs.append(WorkerProcess(service, env, tmp, f"{service}-{r}"))
        await wait_ready(*procs, timeout_s=120)
        warmup = 2 * period
        started = time.time()
        stop = asyncio.Event()
        ticker = asyncio.create_task(keep_ticking(topics["order-poll-ticks"], stop))
        await asyncio.sleep(warmup + seconds + period)
        stop.set()
        await ticker
        log = [e for e in sandbox.sandbox.stats.log if e["t"] >= started]
        t0 = started + warmup
        t1 = t0 + seconds
        served, allowed = use_of(log, t0, t1, limit, period, mode)
        # The sandbox's own windows, as its limiter counted them (the log names each one).
        fullest = max(
            Counter(e["window"] for e in log if e["window"] is not None).values(), default=0
        )
        per_route = Counter(e["route"] for e in log if e["status"] != 429)
        return {
            "limit": limit,
            "period_s": period,
            "mode": mode,
            "replicas": replicas * len(SERVICES),
            "seconds": seconds,
            "fullest_window": fullest,
            "served": served,
            "allowed": allowed,
            "use": served / allowed if allowed else 0.0,
            "throttled": sum(1 for e in log if e["status"] == 429),
            "throttled_by_route": dict(Counter(e["route"] for e in log if e["status"] == 429)),
            "per_route": dict(per_route),
            "times": [e["t"] - started for e in log if e["status"] != 429],
            "throttled_times": [e["t"] - started for e in log if e["status"] == 429],
            "crashed": [p.log_path.name for p in procs if p.proc.poll() is not None],
        }
    finally:
        await stop_workers(procs)
        await sandbox.close()


def use_of(
    log: list[dict[str, Any]], t0: float, t1: float, limit: int, period: float, mode: str
) -> tuple[int, int]:
    """Requests served in the steady interval, and what the limit allows in it.

    Fixed windows are counted as the sandbox opened them: from the first window starting
    in the interval to the end of the last one ending in it, so that a window spent in a
    burst at its start is neither cut in half nor counted twice, and time between windows
    (a window opens only at the next request) counts as budget lost. Sliding windows: the
    interval as it is (any stretch of one period holds at most `limit`)."""
    ok = [e for e in log if e["status"] != 429]
    if mode != "fixed":
        return sum(1 for e in ok if t0 <= e["t"] < t1), int((t1 - t0) * limit / period)
    starts = sorted({e["window"] for e in ok if e["window"] is not None})
    inside = [w for w in starts if w >= t0 and w + period <= t1]
    if not inside:
        return 0, 1
    first, last_end = inside[0], inside[-1] + period
    served = sum(1 for e in ok if e["window"] in set(inside))
    return served, round((last_end - first) * limit / period)


def met(r: dict[str, Any]) -> bool:
    return bool(r["use"] >= 0.98 and r["throttled"] == 0)


def report(r: dict[str, Any]) -> None:
    print(
        f"shared budget  {r['replicas']} processes, {r['limit']} req / {r['period_s']:g} s "
        f"({r.get('mode', 'fixed')} windows): "
        f"{r['served']}/{r['allowed']} in {r['seconds']:g} s = {r['use']:.1%} of the limit, "
        f"{r['throttled']} × 429  (target ≥ 98 %, 0 × 429: "
        f"{verdict(met(r))})"
    )
    print(f"               by route: {r['per_route']}")
    if r["throttled"]:
        print(
            f"               429s at {[round(t, 1) for t in r['throttled_times']]} s: {r['throttled_by_route']}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--period", type=float, default=20.0)
    parser.add_argument("--mode", choices=["fixed", "sliding"], default="fixed")
    args = parser.parse_args()
    report(asyncio.run(run(args.seconds, args.limit, args.period, mode=args.mode)))
