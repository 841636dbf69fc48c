"""The worker core against the real broker and the sandbox: delivery, commits, crashes."""

from __future__ import annotations

import json
import random
import signal
import uuid
from pathlib import Path
from typing import Any

from services.variant_sync import VariantSync
from shared.bootstrap import build_parts
from shared.config import load_settings

from .harness import (
    ACCT_A,
    ACCT_B,
    CREDENTIALS,
    TOKEN_A,
    TOKEN_B,
    WorkerProcess,
    committed,
    create_topics,
    end_offsets,
    eventually,
    new_run,
    produce,
    read_all,
    sandbox_config,
    update,
    wait_all_committed,
    worker_env,
    worker_settings,
    write_credentials,
)


async def test_updates_arrive_merged_in_order_with_one_result_each(
    bootstrap_servers: str, sandbox_server: Any, tmp_path: Path
) -> None:
    sandbox = await sandbox_server(sandbox_config())
    skus = [f"V{i:04d}" for i in range(300)]
    await sandbox.seed_variants(TOKEN_A, skus)
    await sandbox.seed_variants(TOKEN_B, skus)
    topic = await create_topics(bootstrap_servers, "variant-updates")
    rng = random.Random(3)
    expected: dict[tuple[str, str], dict[str, Any]] = {}
    messages = []
    for i in range(3000):
        account, sku = rng.choice([ACCT_A, ACCT_B]), rng.choice(skus)
        fields = rng.choice(
            [{"price": round(i * 0.01, 2)}, {"quantity": i}, {"price": i / 4, "quantity": i % 97}]
        )
        messages.append(update(account, sku, **fields))
        expected.setdefault((account, sku), {}).update(fields)
    messages.append(("bad", b"{not json"))
    await produce(bootstrap_servers, topic, messages)

    settings = worker_settings(
        bootstrap_servers, sandbox.base_url, topic, tmp_path, batch_linger_ms=200
    )
    parts = build_parts(VariantSync(set(CREDENTIALS)), settings)
    await parts.worker.start()
    try:
        results = await read_all(bootstrap_servers, f"{topic}.results", len(messages))
        await wait_all_committed(bootstrap_servers, settings.kafka_group_id, topic)
    finally:
        await parts.worker.stop()

    assert len(results) == len(messages)
    statuses = [json.loads(r.value)["status"] for r in results]
    assert statuses.count("ok") == 3000 and statuses.count("failed") == 1
    for (account, sku), fields in expected.items():
        variant = sandbox.variant(CREDENTIALS[account], sku)
        assert variant is not None
        for name, value in fields.items():
            assert variant[name] == value, (account, sku, name)
    dlq = await read_all(bootstrap_servers, f"{topic}.dlq", 1)
    assert [r.value for r in dlq] == [b"{not json"]
    assert dict(dlq[0].headers)["error.class"] == b"ValidationError"
    # Coalescing: far fewer requests than messages, each at most 500 items.
    patches = sandbox.requests("PATCH /catalog/product/variant/")
    assert all(r["items"] <= 500 for r in patches)
    assert len(patches) < 100


async def test_rejected_items_fail_alone_with_the_apis_message(
    bootstrap_servers: str, sandbox_server: Any, tmp_path: Path
) -> None:
    sandbox = await sandbox_server(sandbox_config())
    known = [f"K{i:03d}" for i in range(497)]
    await sandbox.seed_variants(TOKEN_A, known)
    unknown = ["NOPE-1", "NOPE-2", "NOPE-3"]
    skus = [*known[:100], unknown[0], *known[100:300], unknown[1], *known[300:], unknown[2]]
    topic = await create_topics(bootstrap_servers, "variant-updates", partitions=1)
    await produce(bootstrap_servers, topic, [update(ACCT_A, s, price=5.0) for s in skus])
    settings = load_settings(
        kafka_bootstrap_servers=bootstrap_servers,
        m2e_base_url=sandbox.base_url,
        m2e_credentials_file=write_credentials(tmp_path),
        kafka_input_topic=topic,
        kafka_group_id=f"it-{uuid.uuid4().hex[:8]}",
        batch_linger_ms=2000,
    )
    parts = build_parts(VariantSync(set(CREDENTIALS)), settings)
    await parts.worker.start()
    try:
        results = [
            json.loads(r.value) for r in await read_all(bootstrap_servers, f"{topic}.results", 500)
        ]
    finally:
        await parts.worker.stop()
    failed = {r["sku"]: r for r in results if r["status"] == "failed"}
    assert set(failed) == set(unknown)
    assert failed["NOPE-2"]["error"]["message"] == "item 301: sku: variant 'NOPE-2' is not found"
    assert failed["NOPE-2"]["http_status"] == 404
    assert sum(r["status"] == "ok" for r in results) == 497
    requests = sandbox.requests("PATCH /catalog/product/variant/")
    assert [r["items"] for r in requests] == [0, 497]  # the 500-item batch, then the 497 good ones
    assert len(requests) <= 3 * 9 + 1


async def test_sigterm_flushes_publishes_and_commits_before_exit(
    bootstrap_servers: str, sandbox_server: Any, tmp_path: Path, workers: Any
) -> None:
    sandbox = await sandbox_server(sandbox_config())
    skus = [f"T{i:03d}" for i in range(50)]
    await sandbox.seed_variants(TOKEN_A, skus)
    run = await new_run(bootstrap_servers, sandbox, tmp_path, "variant-updates")
    topic, group = run.topic, run.group
    # A linger of 10 minutes: nothing is sent unless shutdown flushes it.
    worker = workers(
        "variant-sync",
        run.env(
            batch_linger_ms=600_000,
        ),
    )
    await eventually(worker.ready, timeout_s=60)
    await produce(bootstrap_servers, topic, [update(ACCT_A, s, quantity=7) for s in skus])
    await eventually(lambda: worker.metric("m2e_sync_messages_consumed_total") == 50)
    assert worker.healthy()  # the poll loop is alive
    assert sandbox.requests("PATCH /catalog/product/variant/") == []
    worker.signal(signal.SIGTERM)
    assert await worker.wait(timeout_s=30) == 0, worker.log()[-3000:]
    assert all(sandbox.variant(TOKEN_A, s)["quantity"] == 7 for s in skus)  # type: ignore[index]
    ends = await end_offsets(bootstrap_servers, topic)
    assert await committed(bootstrap_servers, group, topic) == {
        p: e for p, e in ends.items() if e > 0
    }
    assert len(await read_all(bootstrap_servers, f"{topic}.results", 50, timeout_s=10)) == 50


async def test_sigkill_mid_batch_loses_nothing_and_never_commits_ahead(
    bootstrap_servers: str, sandbox_server: Any, tmp_path: Path, workers: Any
) -> None:
    sandbox = await sandbox_server(sandbox_config(faults={"latency_ms": 150}))
    skus = [f"S{i:04d}" for i in range(3000)]
    await sandbox.seed_variants(TOKEN_A, skus, per_product=50)
    run = await new_run(bootstrap_servers, sandbox, tmp_path, "variant-updates")
    topic, group = run.topic, run.group
    # One message per SKU, each with its own price: what reached the sandbox is visible.
    messages = [update(ACCT_A, s, price=float(i + 1)) for i, s in enumerate(skus)]
    await produce(bootstrap_servers, topic, messages)
    env = run.env(
        batch_max_items=50,
    )
    first = workers("variant-sync", env, "first")
    await eventually(
        lambda: len(sandbox.requests("PATCH /catalog/product/variant/")) >= 8, timeout_s=60
    )
    # Batches fly side by side: 8 requests can be on the wire before the first commit.

    async def some_committed() -> bool:
        return bool(await committed(bootstrap_servers, group, topic))

    await eventually(some_committed, timeout_s=30, every_s=0.05)
    first.signal(signal.SIGKILL)
    await first.wait()

    # Every committed offset stands for an item the sandbox already holds.
    offsets = await committed(bootstrap_servers, group, topic)
    assert offsets, "the worker committed something before it was killed"
    by_partition = await _messages_by_partition(bootstrap_servers, topic)
    for partition, upto in offsets.items():
        for value in by_partition[partition][:upto]:
            assert sandbox.variant(TOKEN_A, value["sku"])["price"] == value["price"]  # type: ignore[index]
    delivered_before_restart = sum(sandbox.variant(TOKEN_A, s)["price"] > 0 for s in skus)  # type: ignore[index]
    assert delivered_before_restart < len(skus), "the kill came mid-run"

    workers("variant-sync", env, "second")
    await eventually(
        lambda: all(sandbox.variant(TOKEN_A, s)["price"] > 0 for s in skus), timeout_s=120
    )  # type: ignore[index]
    for sku, value in messages:
        assert sandbox.variant(TOKEN_A, sku)["price"] == value["price"]  # type: ignore[index]
    await wait_all_committed(bootstrap_servers, group, topic, timeout_s=30)


async def _messages_by_partition(bootstrap: str, topic: str) -> dict[int, list[dict[str, Any]]]:
    ends = await end_offsets(bootstrap, topic)
    records = await read_all(bootstrap, topic, sum(ends.values()))
    out: dict[int, list[dict[str, Any]]] = {p: [] for p in ends}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        out[record.partition].append(json.loads(record.value))
    return out


async def test_a_worker_that_cannot_reach_the_broker_exits_non_zero_saying_why(
    tmp_path: Path,
) -> None:
    env = worker_env(
        "127.0.0.1:1", "http://127.0.0.1:1/api/v1/api", "t", "g", write_credentials(tmp_path)
    )
    env["STARTUP_TIMEOUT_S"] = "2"
    worker = WorkerProcess("variant-sync", env, tmp_path, "nobroker")
    assert await worker.wait(timeout_s=60) == 1
    assert (
        "STARTUP_TIMEOUT_S=2s" in worker.log()
        and "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1" in worker.log()
    )
