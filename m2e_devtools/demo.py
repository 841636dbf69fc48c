"""`m2e-sync demo`: the whole job on one machine, with progress and a summary.

Brings up the broker and Redis (the local stack), the M2E sandbox and the workers, each
as its own process; publishes realistic sample events (SAP Anywhere and M2E products, then
price and stock updates, and a few deliberately invalid ones); shows progress from the
workers' /metrics once a second; prints a summary and where to look next. Everything it
started is stopped at the end, or on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from m2e_devtools import stack as devstack
from m2e_sandbox.config import DEMO_CONFIG_YAML
from services.invoice_upload.samples import sample_invoices
from services.order_poller.samples import samples as sample_ticks
from services.product_sync.samples import sample_products
from services.registry import SERVICES
from services.status import DEMO_WORKERS_FILE
from services.status import gather as gather_accounts
from services.status import merge as merge_accounts
from services.status import table as accounts_table
from services.variant_sync.samples import sample_updates
from shared.topics import results_topic

PRODUCTS, VARIANTS, INVOICES, TICKS = (
    SERVICES[name].topic
    for name in ("product-sync", "variant-sync", "invoice-upload", "order-poller")
)
INVALID = sum(spec.invalid_samples for spec in SERVICES.values())  # refused on purpose


class DemoError(Exception):
    """The demo cannot run as asked; the message says why."""


@dataclass(slots=True)
class Proc:
    name: str
    proc: subprocess.Popen[bytes]
    port: int | None = None
    log: Path | None = None


@dataclass(slots=True)
class Demo:
    settings: devstack.StackSettings
    products: int
    updates: int
    timeout_s: float
    sandbox_port: int
    workdir: Path
    procs: list[Proc] = field(default_factory=list)
    started_stack: bool = False
    http: httpx.AsyncClient = field(default_factory=httpx.AsyncClient)

    # ------------------------------------------------------------------ processes
    def spawn(
        self, name: str, argv: list[str], env: dict[str, str], port: int | None = None
    ) -> Proc:
        log = self.workdir / f"{name}.log"
        proc = subprocess.Popen(
            argv,
            env={**os.environ, **env},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(Proc(name, proc, port, log))
        return self.procs[-1]

    def stop_all(self) -> None:
        DEMO_WORKERS_FILE.unlink(missing_ok=True)
        for p in reversed(self.procs):
            if p.proc.poll() is None:
                p.proc.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.proc.kill()
        self.procs.clear()
        if self.started_stack:
            devstack.down(self.settings, echo=lambda _line: None)

    # ------------------------------------------------------------------ run
    async def run_and_close(self) -> dict[str, Any]:
        try:
            return await self.run()
        finally:
            await self.http.aclose()

    async def run(self) -> dict[str, Any]:
        config = yaml.safe_load(DEMO_CONFIG_YAML)
        accounts = [
            (a["token"], u["access_token"], a["channel"])
            for u in config["users"]
            for a in u["accounts"]
        ]
        creds = self.workdir / "credentials.yaml"
        creds.write_text("".join(f"{token}: {access}\n" for token, access, _ in accounts))
        defaults = self.workdir / "product-defaults.yaml"
        defaults.write_text('"*": {currency: EUR, price: 24.9, quantity: 10}\n')

        if devstack.port_in_use("127.0.0.1", self.sandbox_port):
            raise DemoError(
                f"port {self.sandbox_port} is in use; choose another with --sandbox-port"
            )
        say("starting the M2E sandbox")
        base = f"http://127.0.0.1:{self.sandbox_port}"
        self.spawn(
            "sandbox",
            [sys.executable, "-m", "services.cli", "sandbox", "--port", str(self.sandbox_port)],
            {},
        )
        await wait_http(base + "/_sandbox/stats")
        await self.http.post(base + "/_sandbox/reset", json={})

        start_ends = {
            t: await end_offsets(self.settings.bootstrap_servers, results_topic(t))
            for t in (spec.topic for spec in SERVICES.values())
        }
        for name in SERVICES:
            port = free_port()
            say(f"starting {name} (metrics on http://127.0.0.1:{port}/metrics)")
            self.spawn(
                name,
                [sys.executable, "-m", "services.cli", "run", name],
                {
                    "KAFKA_BOOTSTRAP_SERVERS": self.settings.bootstrap_servers,
                    "REDIS_URL": self.settings.redis_url,
                    "M2E_BASE_URL": base + "/api/v1/api",
                    "M2E_CREDENTIALS_FILE": str(creds),
                    "PRODUCT_DEFAULTS_FILE": str(defaults),
                    "HTTP_PORT": str(port),
                    "HTTP_HOST": "127.0.0.1",
                    "BATCH_LINGER_MS": "500",
                    "RATE_LIMIT_REQUESTS": "100",
                    "RATE_LIMIT_PERIOD_S": "60",
                    "LOG_LEVEL": "WARNING",
                    "ORDER_TRANSACTIONAL_ID": "m2e-sync.order-poller.demo",
                },
                port,
            )

        # `m2e-sync status` (no --url) asks these workers while the demo runs.
        DEMO_WORKERS_FILE.parent.mkdir(parents=True, exist_ok=True)
        DEMO_WORKERS_FILE.write_text(json.dumps(self.worker_urls()))

        product_events, variant_skus = sample_products(accounts, self.products)
        update_events = sample_updates(variant_skus, self.updates)
        invalid = {name: spec.invalid_samples for name, spec in SERVICES.items()}
        say(
            f"publishing {len(product_events)} product events (SAP Anywhere and M2E, "
            f"{invalid['product-sync']} invalid)"
        )
        await publish(self.settings.bootstrap_servers, PRODUCTS, product_events)
        published = {PRODUCTS: len(product_events), VARIANTS: len(update_events)}
        deadline = time.monotonic() + self.timeout_s
        await self.progress(start_ends, {PRODUCTS: len(product_events)}, deadline)
        say(
            f"publishing {len(update_events)} price and stock updates "
            f"({invalid['variant-sync']} invalid)"
        )
        await publish(self.settings.bootstrap_servers, VARIANTS, update_events)
        await self.progress(start_ends, published, deadline)
        first, access = accounts[0][0], accounts[0][1]
        run = time.strftime("%Y%m%d%H%M%S-")
        invoices = sample_invoices(first, await self.sample_order_ids(base, first, access), run)
        ticks = [tick for token, _, ch in accounts for tick in sample_ticks(1, token, ch)]
        say(
            f"publishing {len(invoices)} invoices (real PDFs, {invalid['invoice-upload']} "
            f"invalid) and {len(ticks)} order-poll ticks"
        )
        await publish(self.settings.bootstrap_servers, INVOICES, invoices)
        await publish(self.settings.bootstrap_servers, TICKS, ticks)
        published |= {INVOICES: len(invoices), TICKS: len(ticks)}
        counts = await self.progress(start_ends, published, deadline)
        stats = (await self.http.get(base + "/_sandbox/stats")).json()
        state = (await self.http.get(base + "/_sandbox/state")).json()
        summary = summarize(published, counts, stats, state, await self.metrics_snapshot())
        rows, _unreachable = await gather_accounts(self.worker_urls())
        summary["accounts"] = merge_accounts(rows)
        return summary

    def worker_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p.port}" for p in self.procs if p.port is not None]

    async def sample_order_ids(self, base: str, account: str, access_token: str) -> list[str]:
        response = await self.http.post(
            f"{base}/api/v1/api/order/find/",
            json={"_result": {"limit": 20}},
            params={"channel": "ebay", "account_token": account},
            headers={"access-token": access_token},
        )
        return [o["order_id"] for o in response.json()["list"]]

    async def metrics_snapshot(self) -> dict[str, dict[str, float]]:
        return {p.name: await scrape(self.http, p.port) for p in self.procs if p.port is not None}

    async def progress(
        self, start_ends: dict[str, dict[int, int]], expected: dict[str, int], deadline: float
    ) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        while True:
            for topic in expected:
                counts[topic] = await count_results(
                    self.settings.bootstrap_servers, results_topic(topic), start_ends[topic]
                )
            line = "  ".join(
                f"{t}: {sum(counts[t].values())}/{n} settled" for t, n in expected.items()
            )
            metrics = await self.metrics_snapshot()
            requests = sum(m.get("m2e_sync_api_requests_total", 0) for m in metrics.values())
            throttled = sum(m.get("m2e_sync_api_throttled_total", 0) for m in metrics.values())
            say(f"  {line}  | API requests {requests:.0f}, 429s {throttled:.0f}", progress=True)
            if all(sum(counts[t].values()) >= n for t, n in expected.items()):
                print(flush=True)
                return counts
            if time.monotonic() > deadline:
                print(flush=True)
                raise TimeoutError(f"not every event was settled before the demo's timeout: {line}")
            await asyncio.sleep(1.0)


# ---------------------------------------------------------------------- kafka helpers


async def publish(bootstrap: str, topic: str, events: list[tuple[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=10)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, json.dumps(v).encode(), key=k.encode()) for k, v in events
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return {tp.partition: o for tp, o in ends.items()}
    finally:
        with suppress(asyncio.CancelledError):
            await consumer.stop()


async def count_results(bootstrap: str, topic: str, since: dict[int, int]) -> dict[str, int]:
    """Results published after `since` (end offsets at the demo's start), by status."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    counts: dict[str, int] = {}
    try:
        tps = [TopicPartition(topic, p) for p in since]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, since[tp.partition])
        remaining = {tp for tp in tps if ends[tp] > since[tp.partition]}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            if not batch:
                break
            for tp, records in batch.items():
                for r in records:
                    status = json.loads(r.value)["status"]
                    counts[status] = counts.get(status, 0) + 1
                if records and records[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
    finally:
        with suppress(asyncio.CancelledError):
            await consumer.stop()
    return counts


# ---------------------------------------------------------------------- output


async def scrape(http: httpx.AsyncClient, port: int | None) -> dict[str, float]:
    if port is None:
        return {}
    try:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics", timeout=2)).text
    except httpx.HTTPError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("m2e_sync_") and " " in line:
            name = line.split("{", 1)[0].split(" ", 1)[0]
            with suppress(ValueError):
                out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def summarize(
    published: dict[str, int],
    counts: dict[str, dict[str, int]],
    stats: dict[str, Any],
    state: dict[str, Any],
    metrics: dict[str, dict[str, float]],
) -> dict[str, Any]:
    requests = {route: sum(by.values()) for route, by in stats["requests"].items()}
    items = stats["items"]
    throttled = sum(by.get("429", 0) for by in stats["requests"].values())
    products = sum(len(u["catalog"]) for u in state["users"].values())
    dlq = sum(m.get("m2e_sync_dlq_records_total", 0) for m in metrics.values())
    fetched = sum(m.get("m2e_sync_orders_published_total", 0) for m in metrics.values())
    return {
        "published": published,
        "results": counts,
        "requests": requests,
        "items": items,
        "throttled": throttled,
        "products_in_sandbox": products,
        "dlq": int(dlq),
        "orders_fetched": int(fetched),
    }


def print_summary(summary: dict[str, Any], sandbox_port: int) -> None:
    print("\nSummary")
    print(f"  {'topic':<18}{'published':>10}{'ok':>8}{'superseded':>12}{'failed':>8}")
    for topic, n in summary["published"].items():
        c = summary["results"].get(topic, {})
        print(
            f"  {topic:<18}{n:>10}{c.get('ok', 0):>8}{c.get('superseded', 0):>12}{c.get('failed', 0):>8}"
        )
    print(f"\n  {'M2E API route':<34}{'requests':>9}{'items':>8}{'items/request':>15}")
    for route, n in sorted(summary["requests"].items()):
        got = summary["items"].get(route, 0)
        print(f"  {route:<34}{n:>9}{got:>8}{got / max(1, n):>15.1f}")
    print(
        f"\n  429s: {summary['throttled']}   DLQ records: {summary['dlq']} (the {INVALID} invalid samples)   "
        f"products in the sandbox: {summary['products_in_sandbox']}   orders fetched: {summary['orders_fetched']}"
    )
    print(
        "  orders          kcat -b 127.0.0.1:9092 -C -t orders -e -o -3 -X isolation.level=read_committed"
    )
    print("\nAccounts (m2e-sync status; worst first)")
    print("\n".join("  " + line for line in accounts_table(summary["accounts"]).splitlines()))
    print("\nWhere to look next")
    print(
        f"  sandbox state   curl -s http://127.0.0.1:{sandbox_port}/_sandbox/state | head -c 2000"
    )
    print("  results         kcat -b 127.0.0.1:9092 -C -t product-upserts.results -e -o -5")
    print("  dead letters    kcat -b 127.0.0.1:9092 -C -t product-upserts.dlq -e -f '%k %h\\n'")
    print("  the stack       m2e-sync stack status   (stop it: m2e-sync stack down)")
    print("SUMMARY-JSON " + json.dumps(summary, sort_keys=True), flush=True)


def say(text: str, progress: bool = False) -> None:
    if progress and sys.stdout.isatty():
        print("\r" + text, end="", flush=True)
    else:
        print(text, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_http(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as client:
        while True:
            try:
                await client.get(url, timeout=1)
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{url} did not answer within {timeout_s}s") from None
                await asyncio.sleep(0.2)


def main(products: int, updates: int, timeout_s: float, sandbox_port: int) -> int:
    # The demo's own Kafka clients (topic creation, result counting) retry what aiokafka
    # logs as warnings on topics created a moment ago (NotLeaderForPartition): noise a new
    # user reads as an error. A real failure still ends the demo with its reason.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    settings = devstack.StackSettings()
    running = all(c.running for c in devstack.status(settings))
    devstack.up(settings)
    with tempfile.TemporaryDirectory(prefix="m2e-sync-demo-") as tmp:
        demo = Demo(
            settings,
            products,
            updates,
            timeout_s,
            sandbox_port,
            Path(tmp),
            started_stack=not running,
        )
        try:
            summary = asyncio.run(demo.run_and_close())
        except KeyboardInterrupt:
            print("\ninterrupted: stopping what the demo started", flush=True)
            return 130
        except DemoError as exc:
            print(f"m2e-sync demo: {exc}", file=sys.stderr)
            return 1
        except TimeoutError as exc:
            print(f"\nm2e-sync demo: {exc}", file=sys.stderr)
            for p in demo.procs:
                if p.log is not None:
                    print(
                        f"--- {p.name} log (last lines)\n"
                        + "\n".join(p.log.read_text(errors="replace").splitlines()[-15:]),
                        file=sys.stderr,
                    )
            return 1
        finally:
            demo.stop_all()
    print_summary(summary, sandbox_port)
    return 0
