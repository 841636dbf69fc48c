"""Helpers for tests that run workers against the real broker, Redis and the sandbox."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiohttp.test_utils import TestServer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from m2e_sandbox import SandboxConfig, create_app
from m2e_sandbox.app import SANDBOX, Sandbox
from shared.topics import partitions_of

ROOT = Path(__file__).resolve().parents[2]
TOKEN_A = "it-access-token-a"
TOKEN_B = "it-access-token-b"
ACCT_A = "6f1c2d3e-00a1-4a5b-8c9d-0000000000a1"
ACCT_A2 = "6f1c2d3e-00a2-4a5b-8c9d-0000000000a2"  # same access token as ACCT_A
ACCT_B = "6f1c2d3e-00b1-4a5b-8c9d-0000000000b1"
CREDENTIALS = {ACCT_A: TOKEN_A, ACCT_A2: TOKEN_A, ACCT_B: TOKEN_B}


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free port never handed out before in this process: a port is free again once its
    probe socket closes, and two processes started together could both be given it."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def sandbox_config(
    requests: int = 1_000_000, period_s: float = 60.0, mode: str = "fixed", **extra: Any
) -> SandboxConfig:
    return SandboxConfig.model_validate(
        {
            "users": [
                {
                    "name": "a",
                    "access_token": TOKEN_A,
                    "accounts": [
                        {"token": ACCT_A, "channel": "ebay"},
                        {"token": ACCT_A2, "channel": "amazon"},
                    ],
                },
                {
                    "name": "b",
                    "access_token": TOKEN_B,
                    "accounts": [{"token": ACCT_B, "channel": "ebay"}],
                },
            ],
            "rate_limit": {"requests": requests, "period_s": period_s, "mode": mode},
            "orders": {"per_account": 5},
            **extra,
        }
    )


class SandboxServer:
    """The sandbox on a real loopback port, served by the test's own event loop."""

    def __init__(self, config: SandboxConfig) -> None:
        self.app = create_app(config)
        self.server = TestServer(self.app, host="127.0.0.1", port=free_port())

    @property
    def sandbox(self) -> Sandbox:
        return self.app[SANDBOX]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/api/v1/api"

    async def start(self) -> None:
        await self.server.start_server()

    async def close(self) -> None:
        await self.server.close()

    async def seed_variants(self, token: str, skus: Iterable[str], per_product: int = 10) -> None:
        """Create products holding the given variant SKUs (price 0, quantity 0)."""
        skus = list(skus)
        products = []
        for i in range(0, len(skus), per_product):
            chunk = skus[i : i + per_product]
            products.append(
                {
                    "sku": f"P-{chunk[0]}",
                    "status": 1,
                    "is_simple": len(chunk) == 1,
                    "currency": "EUR",
                    "title": f"Product {chunk[0]}",
                    "variants": [
                        {"sku": s, "barcode": None, "price": 0, "quantity": 0} for s in chunk
                    ],
                }
            )
        async with httpx.AsyncClient(base_url=self.base_url) as client:
            for i in range(0, len(products), 500):
                resp = await client.post(
                    "/catalog/product/", json=products[i : i + 500], headers={"access-token": token}
                )
                assert resp.status_code == 200, resp.text
        self.sandbox.stats.requests.clear()
        self.sandbox.stats.items.clear()
        self.sandbox.stats.log.clear()

    def variant(self, token: str, sku: str) -> dict[str, Any] | None:
        return self.sandbox.users[token].catalog.variant(sku)

    def requests(self, route: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.sandbox.stats.log if route is None or r["route"] == route]


async def create_topics(bootstrap: str, base: str, partitions: int = 4) -> str:
    """`<base>`, `<base>.results`, `<base>.dlq` with a unique prefix; returns the input name."""
    name = f"it.{uuid.uuid4().hex[:8]}.{base}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(n, partitions, 1) for n in (name, f"{name}.results", f"{name}.dlq")]
        )
    finally:
        await admin.close()
    return name


async def produce(bootstrap: str, topic: str, messages: Iterable[tuple[str | None, Any]]) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    n = 0
    try:
        futures = []
        for key, value in messages:
            raw = value if isinstance(value, bytes) or value is None else json.dumps(value).encode()
            futures.append(await producer.send(topic, raw, key=key.encode() if key else None))
            n += 1
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return n


async def read_all(bootstrap: str, topic: str, expect: int, timeout_s: float = 60.0) -> list[Any]:
    """Read `topic` from the beginning until `expect` records (or the timeout)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expect and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for records in batch.values():
                out += records
    finally:
        await consumer.stop()
    return out


async def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {
        tp.partition: meta.offset
        for tp, meta in offsets.items()
        if tp.topic == topic and meta.offset >= 0
    }


async def partitions(bootstrap: str, topic: str) -> list[int]:
    return [tp.partition for tp in await partitions_of(bootstrap, topic)]


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in await partitions(bootstrap, topic)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
    finally:
        # aiokafka 0.14 re-raises the CancelledError of its own internal task here.
        with contextlib.suppress(asyncio.CancelledError):
            await consumer.stop()
    return {tp.partition: off for tp, off in ends.items()}


async def eventually(check: Any, timeout_s: float = 60.0, every_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(every_s)


async def wait_ready(*procs: WorkerProcess, timeout_s: float = 60.0, any_: bool = False) -> None:
    """Until every process (or, with `any_`, one of them) answers /readyz; a process that
    exits or never gets ready fails the test with its exit code and the tail of its log."""
    deadline = time.monotonic() + timeout_s
    while True:
        states = [p.ready() for p in procs]
        if any(states) if any_ else all(states):
            return
        exited = [p for p in procs if p.proc.poll() is not None]
        if exited or time.monotonic() > deadline:
            report = "\n".join(p.describe() for p in (exited or procs))
            why = "exited" if exited else f"not ready within {timeout_s}s"
            raise AssertionError(f"worker {why}:\n{report}")
        await asyncio.sleep(0.2)


def write_credentials(tmp: Path) -> Path:
    path = tmp / "credentials.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in CREDENTIALS.items()))
    return path


class WorkerProcess:
    """`m2e-sync run SERVICE` as a real process, killable with any signal."""

    def __init__(self, service: str, env: dict[str, str], log_dir: Path, name: str = "w") -> None:
        self.port = free_port()
        self.log_path = log_dir / f"{name}-{self.port}.log"
        self._log = self.log_path.open("wb")
        full_env = {**os.environ, **env, "HTTP_PORT": str(self.port), "HTTP_HOST": "127.0.0.1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "run", service],
            env=full_env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples (those with these label values), 0 when absent or the
        process does not answer."""
        try:
            text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return 0.0
        marks = [f'{k}="{v}"' for k, v in labels.items()]
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                if all(mark in line for mark in marks):
                    total += float(line.rsplit(" ", 1)[1])
        return total

    def ready(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def healthy(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    async def wait(self, timeout_s: float = 60.0) -> int:
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if self.proc.poll() is None:
            self.proc.kill()
            raise AssertionError(
                f"worker did not exit within {timeout_s}s; log: {self.log()[-3000:]}"
            )
        return int(self.proc.returncode)

    def describe(self, tail: int = 4000) -> str:
        """Name, exit code and the end of the log, for a failing test's report."""
        code = self.proc.poll()
        state = "running" if code is None else f"exit code {code}"
        return f"--- {self.log_path.name} ({state}) ---\n{self.log()[-tail:]}"

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop_now(self) -> None:
        self.signal(signal.SIGKILL)
        self.proc.wait()
        self._log.close()


async def wait_all_committed(
    bootstrap: str, group: str, topic: str, timeout_s: float = 60.0
) -> None:
    """Until the group's committed offsets reach the topic's end in every partition."""
    target = {p: e for p, e in (await end_offsets(bootstrap, topic)).items() if e > 0}

    async def reached() -> bool:
        return await committed(bootstrap, group, topic) == target

    await eventually(reached, timeout_s=timeout_s)


def worker_settings(bootstrap: str, base_url: str, topic: str, tmp: Path, **overrides: Any) -> Any:
    """Settings of an in-process worker on `topic` with a new group (`settings.kafka_group_id`),
    of the settings class of the service whose topic it is."""
    from services.registry import for_topic
    from shared.config import load_settings

    spec = for_topic(topic)

    values: dict[str, Any] = {
        "kafka_bootstrap_servers": bootstrap,
        "m2e_base_url": base_url,
        "m2e_credentials_file": write_credentials(tmp),
        "kafka_input_topic": topic,
        "kafka_group_id": f"it-{uuid.uuid4().hex[:8]}",
        "commit_interval_ms": 200,
    }
    values.update(overrides)
    return load_settings(spec.settings if spec is not None else None, **values)


@dataclass(frozen=True)
class Run:
    """One test's input topic (with its results and DLQ), a consumer group of its own and
    the sandbox's credentials: what every worker of the test is given."""

    bootstrap: str
    base_url: str
    topic: str
    creds: Path
    group: str = field(default_factory=lambda: f"it-{uuid.uuid4().hex[:8]}")

    def env(self, **extra: Any) -> dict[str, str]:
        """The environment of a worker process of this run."""
        return worker_env(
            self.bootstrap, self.base_url, self.topic, self.group, self.creds, **extra
        )


async def new_run(
    bootstrap: str, sandbox: SandboxServer, tmp: Path, base: str, partitions: int = 4
) -> Run:
    """A new topic named after `base` (results and DLQ too) against `sandbox`."""
    topic = await create_topics(bootstrap, base, partitions)
    return Run(bootstrap, sandbox.base_url, topic, write_credentials(tmp))


def update(account: str, sku: str, **fields: Any) -> tuple[str, dict[str, Any]]:
    return sku, {"account_token": account, "sku": sku, **fields}


def worker_env(
    bootstrap: str, base_url: str, topic: str, group: str, creds: Path, **extra: Any
) -> dict[str, str]:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "M2E_BASE_URL": base_url,
        "M2E_CREDENTIALS_FILE": str(creds),
        "KAFKA_INPUT_TOPIC": topic,
        "KAFKA_GROUP_ID": group,
        "BATCH_LINGER_MS": "200",
        "RATE_LIMIT_ENABLED": "false",
        "COMMIT_INTERVAL_MS": "200",
        "SHUTDOWN_GRACE_S": "20",
        "LOG_LEVEL": "INFO",
    }
    env.update({k.upper(): str(v) for k, v in extra.items()})
    return env


async def order_topics(bootstrap: str) -> tuple[str, str, str]:
    ticks = await create_topics(bootstrap, "order-poll-ticks")
    run = ticks.split(".")[1]
    orders, cursors = f"it.{run}.orders", f"it.{run}.order-cursors"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(orders, 4, 1),
                NewTopic(cursors, 1, 1, topic_configs={"cleanup.policy": "compact"}),
            ]
        )
    finally:
        await admin.close()
    return ticks, orders, cursors


def record_applied(monkeypatch: Any, prefix: str) -> list[tuple[str, float]]:
    """(sku, price) of every variant update the sandbox applies to a SKU starting with
    `prefix`, in the order applied."""
    from m2e_sandbox.catalog import Catalog

    applied: list[tuple[str, float]] = []
    original = Catalog.update_variant

    def recording(self: Catalog, item: Any) -> None:
        if item.sku.startswith(prefix):
            applied.append((item.sku, item.price))
        original(self, item)

    monkeypatch.setattr(Catalog, "update_variant", recording)
    return applied


def in_order(applied: list[tuple[str, float]]) -> bool:
    """Each SKU's prices were applied in increasing order (the tests send them so)."""
    per_sku: dict[str, list[float]] = {}
    for sku, price in applied:
        per_sku.setdefault(sku, []).append(price)
    return all(prices == sorted(prices) for prices in per_sku.values())
