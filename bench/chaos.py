"""`make chaos`: variant-sync under crashes and faults; nothing may be lost.

    .venv/bin/m2e-sync stack up
    .venv/bin/python bench/chaos.py [--events 100000] [--kills 10] [--seconds 60]

Three `m2e-sync run variant-sync` processes share a Redis budget against the sandbox,
which fails 10 % of calls with a 500, 5 % with a 429, 1 % by holding the request until
the client times out and 1 % by resetting the connection. While the events are produced
over `--seconds`: a worker is SIGKILLed `--kills` times (a new one takes its place), the
Kafka broker restarts once (at 40 %), and Redis is SIGKILLed once (at 60 %) and comes
back 5 s later. At 20 % the sandbox starts holding every request longer than
REVOKE_FLUSH_DEADLINE_S while a fourth replica joins and, two seconds after it is ready,
leaves: two rebalances whose revoked partitions have sends in flight, which must be
cancelled, not re-sent after the new owner's. One event in 997 is invalid (a negative
price, its own SKU).

Checked at the end, against what the input topic holds:
- no item lost: every SKU's price and quantity in the sandbox equal the last valid
  update of that SKU in the topic (per-key order is partition order);
- every input message has a result; extra results from redelivery are counted and
  reported (at-least-once), as are items the API received more than once;
- the DLQ holds exactly the invalid inputs.
The exit code is 0 only if every invariant holds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import BOOTSTRAP, REDIS_URL

from m2e_devtools import stack as devstack
from m2e_sandbox.config import FaultConfig
from tests.integration.harness import (
    ACCT_A,
    ACCT_B,
    TOKEN_A,
    TOKEN_B,
    SandboxServer,
    WorkerProcess,
    committed,
    create_topics,
    end_offsets,
    read_all,
    sandbox_config,
    write_credentials,
)

TOKENS = {ACCT_A: TOKEN_A, ACCT_B: TOKEN_B}
REVOKE_FLUSH_DEADLINE_S = 0.5
SLICE_TIMEOUT_S = 30.0
SLOW_API_MS = 1200  # longer than the revoke deadline, shorter than M2E_TIMEOUT_S


def events_for(n: int, skus: dict[str, list[str]], seed: int) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 997 == 996:
            sku = f"BAD-{i:07d}"
            body: dict[str, Any] = {"account_token": ACCT_A, "sku": sku, "price": -1.0}
        else:
            account = rng.choice(list(skus))
            sku = rng.choice(skus[account])
            body = {"account_token": account, "sku": sku}
            body |= rng.choice(
                [
                    {"price": round(rng.uniform(1, 999), 2)},
                    {"quantity": rng.randrange(10_000)},
                    {"price": float(i % 1000), "quantity": i % 777},
                ]
            )
        out.append((sku.encode(), json.dumps(body).encode()))
    return out


async def produce_paced(topic: str, events: list[tuple[bytes, bytes]], seconds: float) -> int:
    """Produce in slices over `seconds`; a slice that fails (the broker restarting) is sent
    again, as an upstream producer would: the input may then hold duplicates. A slice not
    acknowledged within SLICE_TIMEOUT_S is sent again on a new producer: after a broker
    restart an aiokafka producer has been seen to retry its connection without end."""

    async def fresh() -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            bootstrap_servers=BOOTSTRAP,
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=15000,
        )
        await producer.start()
        return producer

    async def close(producer: AIOKafkaProducer) -> None:
        with contextlib.suppress(KafkaError, TimeoutError):
            async with asyncio.timeout(10):
                await producer.stop()

    producer = await fresh()
    resent = 0
    slices = max(1, int(seconds * 4))
    size = -(-len(events) // slices)
    started = time.monotonic()
    try:
        for n, i in enumerate(range(0, len(events), size)):
            chunk = events[i : i + size]
            while True:
                try:
                    async with asyncio.timeout(SLICE_TIMEOUT_S):
                        futures = [await producer.send(topic, v, key=k) for k, v in chunk]
                        await asyncio.gather(*futures)
                    break
                except KafkaError:
                    resent += 1
                    await asyncio.sleep(1.0)
                except TimeoutError:
                    resent += 1
                    await close(producer)
                    while True:
                        try:
                            producer = await fresh()
                            break
                        except KafkaError:
                            await asyncio.sleep(1.0)
            await asyncio.sleep(max(0.0, started + (n + 1) * seconds / slices - time.monotonic()))
    finally:
        await close(producer)
    return resent


async def run(
    events: int = 100_000,
    kills: int = 10,
    seconds: float = 60.0,
    replicas: int = 3,
    broker_restart: bool = True,
    redis_kill: bool = True,
    skus_per_account: int = 2500,
    seed: int = 7,
    say: Any = print,
    faults: FaultConfig | None = None,
    rebalance: bool = True,
) -> dict[str, Any]:
    stack = devstack.StackSettings()
    sandbox = SandboxServer(sandbox_config(requests=600, period_s=1.0))
    await sandbox.start()
    tmp = Path(tempfile.mkdtemp(prefix="m2e-chaos-"))
    workers: list[WorkerProcess] = []
    log: list[str] = []
    try:
        skus = {a: [f"{a[-2:]}-{i:05d}" for i in range(skus_per_account)] for a in TOKENS}
        for account, token in TOKENS.items():
            await sandbox.seed_variants(token, skus[account], per_product=100)
        faults = faults or FaultConfig(
            error_rate=0.10,
            throttle_rate=0.05,
            timeout_rate=0.01,
            reset_rate=0.01,
            timeout_hold_s=3.0,
            seed=seed,
        )
        sandbox.sandbox.set_faults(faults)
        topic = await create_topics(BOOTSTRAP, "variant-updates")
        group = f"chaos-{uuid.uuid4().hex[:6]}"
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
            "KAFKA_INPUT_TOPIC": topic,
            "KAFKA_GROUP_ID": group,
            "KAFKA_SESSION_TIMEOUT_MS": "6000",
            "M2E_BASE_URL": sandbox.base_url,
            "M2E_CREDENTIALS_FILE": str(write_credentials(tmp)),
            "M2E_TIMEOUT_S": "2",
            "REDIS_URL": REDIS_URL,
            "RATE_LIMIT_REDIS_PREFIX": group,
            "RATE_LIMIT_REQUESTS": "60",
            "RATE_LIMIT_PERIOD_S": "1",
            "EXPECTED_REPLICAS": str(replicas),
            "BATCH_LINGER_MS": "200",
            "COMMIT_INTERVAL_MS": "200",
            "SHUTDOWN_GRACE_S": "10",
            "REVOKE_FLUSH_DEADLINE_S": str(REVOKE_FLUSH_DEADLINE_S),
            "LOG_LEVEL": "WARNING",
        }
        spawned = 0

        def spawn() -> WorkerProcess:
            nonlocal spawned
            spawned += 1
            worker = WorkerProcess("variant-sync", env, tmp, f"chaos-{spawned}")
            workers.append(worker)
            return worker

        for _ in range(replicas):
            spawn()
        body = events_for(events, skus, seed)
        say(
            f"chaos: {events:,} events over {seconds:g}s, {replicas} workers, {kills} kills, faults on"
        )
        started = time.monotonic()
        producing = asyncio.create_task(produce_paced(topic, body, seconds))
        rng = random.Random(seed)
        plan: list[tuple[float, str]] = [
            ((k + 0.5) * seconds / kills, "kill") for k in range(kills)
        ]
        if broker_restart:
            plan.append((0.4 * seconds, "broker"))
        if redis_kill:
            plan.append((0.6 * seconds, "redis"))
        if rebalance:
            plan.append((0.2 * seconds, "rebalance"))
        for at, what in sorted(plan):
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            if what == "kill":
                live = [w for w in workers if w.proc.poll() is None]
                victim = rng.choice(live)
                victim.stop_now()
                spawn()
                log.append(
                    f"{time.monotonic() - started:5.1f}s SIGKILL {victim.log_path.stem}, started a new worker"
                )
            elif what == "rebalance":
                held = faults.model_copy(update={"latency_ms": SLOW_API_MS})
                sandbox.sandbox.set_faults(held)
                joiner = spawn()
                t = time.monotonic()
                # In a thread: a blocking probe would stall the sandbox, which shares this
                # loop, and hold its requests far longer than the latency asked for.
                while not await asyncio.to_thread(joiner.ready) and time.monotonic() - t < 30:
                    await asyncio.sleep(0.2)
                await asyncio.sleep(2.0)
                joiner.signal(15)
                await joiner.wait(60)
                sandbox.sandbox.set_faults(faults)
                log.append(
                    f"{time.monotonic() - started:5.1f}s a replica joined and left while the API "
                    f"held every request {SLOW_API_MS} ms (revoke deadline "
                    f"{REVOKE_FLUSH_DEADLINE_S * 1000:.0f} ms)"
                )
            elif what == "broker":
                t = time.monotonic()
                await asyncio.to_thread(devstack.restart, stack, "kafka")
                log.append(
                    f"{time.monotonic() - started:5.1f}s Kafka broker restarted ({time.monotonic() - t:.1f}s down)"
                )
            else:
                await asyncio.to_thread(devstack.kill, stack, "redis")
                log.append(f"{time.monotonic() - started:5.1f}s Redis SIGKILLed")
                await asyncio.sleep(5.0)
                await asyncio.to_thread(devstack.restart, stack, "redis")
                log.append(f"{time.monotonic() - started:5.1f}s Redis back (empty: no persistence)")
            say("chaos: " + log[-1])
        resent = await producing
        say("chaos: all events produced; waiting for the workers to commit everything")
        ends = await end_offsets(BOOTSTRAP, topic)
        target = {p: e for p, e in ends.items() if e > 0}
        deadline = time.monotonic() + 600
        while await committed(BOOTSTRAP, group, topic) != target:
            if time.monotonic() > deadline:
                raise AssertionError("the workers did not commit every input within 10 minutes")
            await asyncio.sleep(1.0)
        elapsed = time.monotonic() - started
        live = [w for w in workers if w.proc.poll() is None]
        for w in live:
            w.signal(15)
        exits = [await w.wait(60) for w in live]
        sandbox.sandbox.set_faults(FaultConfig())
        cancelled = sum(
            int(n) for w in workers for n in re.findall(r"(\d+) sends cancelled", w.log())
        )
        return await verify(sandbox, topic, sum(ends.values()), TOKENS) | {
            "sends_cancelled": cancelled,
            "events": events,
            "kills": kills,
            "seconds": elapsed,
            "resent_slices": resent,
            "workers_started": spawned,
            "clean_exits": exits.count(0),
            "timeline": log,
            "api": {
                route: dict(counts) for route, counts in sandbox.sandbox.stats.requests.items()
            },
        }
    finally:
        for w in workers:
            if w.proc.poll() is None:
                w.stop_now()
        await sandbox.close()
        if not devstack.running(stack, "redis"):
            devstack.restart(stack, "redis")


async def verify(
    sandbox: SandboxServer, topic: str, inputs: int, tokens: dict[str, str]
) -> dict[str, Any]:
    records = await read_all(BOOTSTRAP, topic, inputs, timeout_s=120)
    expected: dict[tuple[str, str], dict[str, Any]] = {}
    invalid: set[str] = set()
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        body = json.loads(record.value)
        if body["sku"].startswith("BAD-"):
            invalid.add(body["sku"])
            continue
        fields = {k: v for k, v in body.items() if k in ("price", "quantity")}
        expected.setdefault((body["account_token"], body["sku"]), {}).update(fields)
    lost = []
    for (account, sku), fields in expected.items():
        stored = sandbox.variant(tokens[account], sku) or {}
        if any(stored.get(k) != v for k, v in fields.items()):
            lost.append((sku, fields, {k: stored.get(k) for k in fields}))
    # Everything the results topic holds (redelivery adds to it): read until it stops growing.
    results = await read_all(BOOTSTRAP, f"{topic}.results", 10**9, timeout_s=20)
    per_source = Counter(
        (json.loads(r.value)["source"]["partition"], json.loads(r.value)["source"]["offset"])
        for r in results
    )
    sources = {(r.partition, r.offset) for r in records}
    dlq = await read_all(BOOTSTRAP, f"{topic}.dlq", len(invalid), timeout_s=60)
    dlq_keys = {r.key.decode() for r in dlq}
    sent_items = sum(sandbox.sandbox.stats.items.values())
    applied = len(expected)
    return {
        "inputs": inputs,
        "skus": applied,
        "lost": len(lost),
        "lost_examples": lost[:5],
        "missing_results": len(sources - set(per_source)),
        "duplicate_results": sum(n - 1 for n in per_source.values() if n > 1),
        "dlq_records": len(dlq),
        "dlq_expected": len(invalid),
        "dlq_only_invalid": dlq_keys == invalid,
        "items_accepted_by_api": sent_items,
        "ok": not lost and not (sources - set(per_source)) and dlq_keys == invalid,
    }


def lines(r: dict[str, Any]) -> list[str]:
    answers: Counter[str] = Counter()
    for counts in r["api"].values():
        answers.update(counts)
    return [
        *r["timeline"],
        f"{r['inputs']:,} input messages ({r['events']:,} events; {r['resent_slices']} slices re-sent "
        f"while the broker restarted) over {r['skus']:,} SKUs in {r['seconds']:.0f} s; "
        f"{r['workers_started']} workers started, {r['kills']} SIGKILLed",
        f"API answers: {answers.get('200', 0):,} × 200, {answers.get('500', 0):,} × 500, "
        f"{answers.get('429', 0):,} × 429, {answers.get('0', 0):,} timeouts and resets",
        f"sends cancelled at revocations (their partitions' new owners sent them): "
        f"{r['sends_cancelled']}",
        f"lost items: {r['lost']}" + (f" e.g. {r['lost_examples']}" if r["lost"] else ""),
        f"inputs without a result: {r['missing_results']}",
        f"duplicate results (redelivered after kills and rebalances; at-least-once): {r['duplicate_results']:,}",
        f"items the API accepted: {r['items_accepted_by_api']:,} for {r['inputs']:,} inputs "
        "(coalescing merges updates of one SKU; redelivery repeats some)",
        f"DLQ: {r['dlq_records']} records for {r['dlq_expected']} invalid inputs; "
        f"only invalid inputs: {r['dlq_only_invalid']}",
        f"invariants: {'HOLD' if r['ok'] else 'BROKEN'}",
    ]


def report(r: dict[str, Any]) -> None:
    for line in lines(r):
        print(f"  {line}")


def write(r: dict[str, Any], path: Path, command: str) -> None:
    from suite import machine

    text = [
        "# Fault-injection results",
        "",
        f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        f"Machine: {machine()}",
        "",
        "Three variant-sync processes, a Redis budget, the sandbox failing 10 % of calls with "
        "500, 5 % with 429, 1 % with timeouts and 1 % with connection resets; workers SIGKILLed "
        "and replaced, the broker restarted, Redis SIGKILLed and restarted, a replica joining "
        "and leaving while the API held every request past the revoke deadline (see "
        "bench/chaos.py).",
        "",
        *[f"- {line}" for line in lines(r)],
        "",
    ]
    path.write_text("\n".join(text))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    result = asyncio.run(run(args.events, args.kills, args.seconds))
    report(result)
    if args.events >= 100_000:  # the full run is the one on record
        write(result, Path(__file__).with_name("CHAOS.md"), "make chaos")
    sys.exit(0 if result["ok"] else 1)
