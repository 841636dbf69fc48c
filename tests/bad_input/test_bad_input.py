"""Every hostile input lands in its DLQ with a reason naming the problem; the workers
(real `m2e-sync run` processes) stay up and go on consuming what follows."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from tests.integration.harness import (
    ACCT_A,
    TOKEN_A,
    WorkerProcess,
    create_topics,
    order_topics,
    read_all,
    sandbox_config,
    wait_all_committed,
    wait_ready,
    worker_env,
    write_credentials,
)

from .cases import CASES, invoice, tick, variant

SERVICE = {
    "variant-updates": "variant-sync",
    "product-upserts": "product-sync",
    "invoice-uploads": "invoice-upload",
    "order-poll-ticks": "order-poller",
}


def test_there_are_at_least_40_cases_across_the_four_topics() -> None:
    assert sum(len(c) for c in CASES.values()) >= 40
    assert all(len(c) >= 5 for c in CASES.values())


async def send(
    bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=8 << 20, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value, key=key, partition=0)  # offset = case index
    finally:
        await producer.stop()


def valid(topic: str, sandbox: Any) -> tuple[bytes, bytes]:
    """One good event per topic, sent after the hostile ones."""
    if topic == "variant-updates":
        return b"BAD-V", json.dumps(variant(price=9.99)).encode()
    if topic == "product-upserts":
        from .cases import product

        return b"BAD-P", json.dumps(product()).encode()
    if topic == "invoice-uploads":
        order = sandbox.sandbox.orders.orders(ACCT_A)[0]["order_id"]
        return order.encode(), json.dumps(invoice(order_id=order)).encode()
    return f"ebay:{ACCT_A}".encode(), json.dumps(tick()).encode()


async def test_hostile_inputs_go_to_the_dlq_with_their_reason_and_consumption_goes_on(
    bootstrap_servers: str, sandbox_server: Any, tmp_path: Path
) -> None:
    sandbox = await sandbox_server(sandbox_config())
    await sandbox.seed_variants(TOKEN_A, ["BAD-V"])
    creds = write_credentials(tmp_path)
    workers: dict[str, WorkerProcess] = {}
    topics: dict[str, str] = {}
    groups = {base: f"bad-{time.monotonic_ns()}-{i}" for i, base in enumerate(SERVICE)}
    for base, service in SERVICE.items():
        extra: dict[str, Any] = {
            "invoice_url_allowlist": "files.example.com,.cdn.example.com",
            "batch_linger_ms": 100,
        }
        if base == "order-poll-ticks":
            topic, extra["orders_topic"], extra["order_cursor_topic"] = await order_topics(
                bootstrap_servers
            )
        else:
            topic = await create_topics(bootstrap_servers, base)
        topics[base] = topic
        env = worker_env(bootstrap_servers, sandbox.base_url, topic, groups[base], creds, **extra)
        workers[base] = WorkerProcess(service, env, tmp_path, service)
    try:
        await wait_ready(*workers.values(), timeout_s=90)
        for base, cases in CASES.items():
            records = [(key, value) for _name, key, value, _reason in cases]
            await send(bootstrap_servers, topics[base], [*records, valid(base, sandbox)])

        failures = []
        for base, cases in CASES.items():
            dlq = await read_all(bootstrap_servers, f"{topics[base]}.dlq", len(cases), timeout_s=90)
            by_offset = {int(dict(r.headers)["source.offset"]): r for r in dlq}
            for offset, (name, _key, value, pattern) in enumerate(cases):
                record = by_offset.get(offset)
                if record is None:
                    failures.append(f"{base}: {name}: not in the DLQ")
                    continue
                reason = dict(record.headers)["error.message"].decode()
                if not re.search(pattern, reason, re.IGNORECASE):
                    failures.append(f"{base}: {name}: reason {reason!r} does not match {pattern!r}")
                headers = dict(record.headers)
                if "truncated.value-bytes" in headers:  # near the broker limit: cut, and says so
                    kept = (
                        record.value is not None
                        and value is not None
                        and value.startswith(record.value)
                    )
                    if not kept or int(headers["truncated.value-bytes"]) != len(value or b""):
                        failures.append(f"{base}: {name}: a truncated dead letter is not a prefix")
                elif record.value != value:
                    failures.append(f"{base}: {name}: the DLQ lost the original bytes")
            # The good event after them is processed: one ok result at its offset.
            results = await read_all(
                bootstrap_servers, f"{topics[base]}.results", len(cases) + 1, timeout_s=90
            )
            last = next(
                (
                    json.loads(r.value)
                    for r in results
                    if json.loads(r.value)["source"]
                    == {"topic": topics[base], "partition": 0, "offset": len(cases)}
                ),
                {},
            )
            if last.get("status") != "ok":
                failures.append(f"{base}: the valid event after the hostile ones: {last}")
        assert not failures, "\n".join(failures)
        for base in CASES:  # nothing is retried forever: every partition commits to its end
            await wait_all_committed(bootstrap_servers, groups[base], topics[base], timeout_s=30)
        for base, worker in workers.items():
            assert worker.proc.poll() is None and worker.healthy(), (base, worker.log()[-2000:])
    finally:
        for worker in workers.values():
            worker.signal(15)
        await asyncio.gather(*(w.wait() for w in workers.values()))
