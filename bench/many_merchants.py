"""Many merchants on one deployment: 1,000 accounts over 500 access tokens, every account
trickling updates while one account drains a large backlog, 3 variant-sync replicas.

    .venv/bin/m2e-sync stack up
    .venv/bin/python bench/many_merchants.py [--accounts 1000] [--tokens 500] [--rate 0.1]
        [--seconds 60] [--hot 500000] [--replicas 3] [--key-by-account] [--env NAME=VALUE]
    .venv/bin/python bench/many_merchants.py --write bench/MERCHANTS.md   # every scenario

The sandbox (in this process) meters 100 requests per 60 s per access token, as M2E does;
the hot account has a token of its own (its items per request are read per token).
Every account has its own SKUs and sends `--rate` updates per second (each with a new
price); after a third of the run the hot account's backlog (`--hot` updates over 50,000
SKUs) is published at once, by a process of its own. Without one, the run's first minute
and the rest are compared (lag bounded). Measured, for the trickling accounts: produce → the sandbox
applying the update, p50 and p99, before and during the hot drain (and, of the latter,
those published once the workers had consumed the whole backlog); for the hot account,
items per request; per worker process: CPU seconds per 10,000 messages and per request,
RSS, /metrics samples, KafkaTimeoutErrors in the log; Redis commands per second; 429s;
final results published twice. Targets (issue "many merchants"): at 0.1 update/s per account
p99 ≤ linger + 500 ms before and during the hot drain; 0 × 429; hot account ≥ 490 items
per request; RSS ≤ 300 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import BOOTSTRAP, REDIS_URL, make_topic, percentile, produce, verdict
from memory import rss_mb

from m2e_sandbox.catalog import Catalog
from m2e_sandbox.config import RateLimitConfig, SandboxConfig
from shared import gc_tuning
from tests.integration.harness import SandboxServer, WorkerProcess, end_offsets, wait_ready

LINGER_MS = 200
HOT_SKUS = 50_000
SKUS_PER_ACCOUNT = 20


def account_of(i: int) -> str:
    return str(uuid.UUID(int=0x6F1C2D3E_0000_4A5B_8C9D_000000000000 + i))


def metric_samples(port: int) -> int:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


async def duplicate_results(topic: str) -> int:
    """Final results (not `deferred`) published more than once for one input message."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=BOOTSTRAP, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    seen: Counter[tuple[int, int]] = Counter()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=2000, max_records=50_000)
            if not batch:
                break
            for records in batch.values():
                for rec in records:
                    result = json.loads(rec.value)
                    if result["status"] != "deferred":
                        seen[(result["source"]["partition"], result["source"]["offset"])] += 1
    finally:
        await consumer.stop()
    return sum(n - 1 for n in seen.values() if n > 1)


def hot_skus() -> list[str]:
    return [f"H{i:05d}" for i in range(HOT_SKUS)]


def hot_backlog(account: str, hot: int) -> list[tuple[bytes, bytes]]:
    """`hot` updates of the hot account over its HOT_SKUS SKUs, keyed by SKU: whole rounds
    over them, each round a higher price."""
    skus = hot_skus()
    return [
        (s.encode(), json.dumps({"account_token": account, "sku": s, "price": 1.0 + k}).encode())
        for k in range(hot // HOT_SKUS)
        for s in skus
    ]


async def publish_hot(topic: str, account: str, hot: int) -> float:
    """Publish the hot backlog from a process of its own, as the upstream system would: the
    sandbox lives in this process's event loop, and building and sending 500,000 messages
    here would hold it (and so the API's answers) for seconds. Returns how long it took."""
    started = time.monotonic()
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--publish-hot", topic, account, str(hot)
    )
    if await child.wait() != 0:
        raise RuntimeError(f"publishing the hot backlog failed (exit {child.returncode})")
    return round(time.monotonic() - started, 1)


async def read_past(
    topic: str, workers: list[WorkerProcess], published: asyncio.Task[float]
) -> float:
    """When the workers had consumed everything published to the input up to the end of
    the hot backlog: from then on the hot account drains at its budget's pace (what is past
    its per-account bound waits in the retry topic) and the others' new messages come
    after it."""
    await published
    total = sum((await end_offsets(BOOTSTRAP, topic)).values())

    def consumed() -> float:
        return sum(w.metric("m2e_sync_messages_consumed_total", topic=topic) for w in workers)

    while await asyncio.to_thread(consumed) < total:
        await asyncio.sleep(0.2)
    return time.time()


def proc_stats(pid: int) -> tuple[float, float]:
    """(CPU seconds, RSS MB) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / 100  # utime + stime, clock ticks
    return cpu, rss_mb(pid)


async def run(
    accounts: int,
    tokens: int,
    rate: float,
    seconds: float,
    hot: int,
    replicas: int,
    extra_env: dict[str, str] | None = None,
    key_by_account: bool = False,
    idle_s: float = 0.0,
) -> dict[str, Any]:
    """One scenario; `idle_s`: first measure the workers' CPU while idle that long."""
    extra_env = extra_env or {}
    names = [account_of(i) for i in range(accounts)]
    # The hot account has a token of its own, so that the requests on it are its own (its
    # items per request are measured from the sandbox's log per token); the others share.
    shared = max(1, tokens - 1)
    token_of = {a: f"bench-token-{tokens - shared + i % shared:04d}" for i, a in enumerate(names)}
    hot_account = names[0]
    token_of[hot_account] = "bench-token-0000"
    config = SandboxConfig.model_validate(
        {
            "users": [
                {
                    "name": f"u{t}",
                    "access_token": f"bench-token-{t:04d}",
                    "accounts": [
                        {"token": a, "channel": "ebay"}
                        for a in names
                        if token_of[a].endswith(f"{t:04d}")
                    ],
                }
                for t in range(tokens)
            ],
            "rate_limit": {"requests": 1_000_000, "period_s": 60},
        }
    )
    sandbox = SandboxServer(config)
    await sandbox.start()
    applied: dict[tuple[str, float], float] = {}  # (sku, price) → when the sandbox applied it
    items_per_request: list[int] = []
    original = Catalog.update_variant

    def recording(self: Catalog, item: Any) -> None:
        if not item.sku.startswith("H"):
            applied[(item.sku, item.price)] = time.time()
        original(self, item)

    Catalog.update_variant = recording  # type: ignore[method-assign]
    try:
        skus = {
            a: [f"T{i:04d}-{j:02d}" for j in range(SKUS_PER_ACCOUNT)] for i, a in enumerate(names)
        }
        for t in range(tokens):
            token = f"bench-token-{t:04d}"
            mine = [s for a in names if token_of[a] == token for s in skus[a]]
            await sandbox.seed_variants(token, mine, per_product=SKUS_PER_ACCOUNT)
        await sandbox.seed_variants(token_of[hot_account], hot_skus(), per_product=100)
        # The sandbox stands in for M2E: its collector must not pause it walking the seeded
        # catalogue (a 0.7 s pause was seen), as the workers' does not (shared.gc_tuning).
        gc_tuning.tune()
        sandbox.sandbox.limiter.configure(RateLimitConfig(requests=100, period_s=60))
        sandbox.sandbox.limiter.reset()
        sandbox.sandbox.stats.log.clear()

        topic = await make_topic("variant-updates", partitions=12)
        tmp = Path(tempfile.mkdtemp(prefix="m2e-bench-many-"))
        creds = tmp / "credentials.yaml"
        creds.write_text("".join(f"{a}: {token_of[a]}\n" for a in names))
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
            "REDIS_URL": REDIS_URL,
            "RATE_LIMIT_REDIS_PREFIX": f"bench-many-{uuid.uuid4().hex[:6]}",
            "M2E_BASE_URL": sandbox.base_url,
            "M2E_CREDENTIALS_FILE": str(creds),
            "KAFKA_INPUT_TOPIC": topic,
            "KAFKA_GROUP_ID": f"bench-many-{uuid.uuid4().hex[:6]}",
            "BATCH_LINGER_MS": str(LINGER_MS),
            "RATE_LIMIT_REQUESTS": "100",
            "RATE_LIMIT_PERIOD_S": "60",
            "METRICS_PER_ACCOUNT": "false",
            **extra_env,
            "LOG_LEVEL": "WARNING",
        }
        workers = [WorkerProcess("variant-sync", env, tmp, f"many-{i}") for i in range(replicas)]
        await wait_ready(*workers)
        r = redis.Redis.from_url(REDIS_URL)
        idle_cpu_per_s = 0.0
        if idle_s:
            cpu0 = {w.proc.pid: proc_stats(w.proc.pid)[0] for w in workers}
            await asyncio.sleep(idle_s)
            idle = sum(proc_stats(p)[0] - c for p, c in cpu0.items())
            idle_cpu_per_s = idle / idle_s
        commands0 = int(r.info("stats")["total_commands_processed"])
        cpu0 = {w.proc.pid: proc_stats(w.proc.pid)[0] for w in workers}

        produced: dict[tuple[str, float], float] = {}  # (sku, price) → produce time
        phase_of: dict[tuple[str, float], str] = {}
        # With a hot backlog, "during" begins when it is published (a third in); without
        # one, after the first minute (or half the run): lag is bounded if it is no worse.
        hot_at = seconds / 3 if hot else min(60.0, seconds / 2)
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=0)
        await producer.start()
        backlog_task: asyncio.Task[float] | None = None
        past_task: asyncio.Task[float] | None = None
        started = time.monotonic()
        tick, sent, n = 0.1, 0, 0
        hot_published = False
        hot_wall = math.inf
        hot_sent = 0  # a whole number of rounds over the hot SKUs
        rng = random.Random(7)
        while (elapsed := time.monotonic() - started) < seconds:
            if not hot_published and elapsed >= hot_at:
                if hot:
                    backlog_task = asyncio.create_task(publish_hot(topic, hot_account, hot))
                    past_task = asyncio.create_task(read_past(topic, workers, backlog_task))
                hot_published, hot_sent = True, hot // HOT_SKUS * HOT_SKUS
                hot_wall = time.time()
            due = int(accounts * rate * elapsed) - sent
            batch = []
            for _ in range(max(0, due)):
                a = names[1 + rng.randrange(accounts - 1)]
                sku = rng.choice(skus[a])
                n += 1
                price = float(n)
                key = (sku, price)
                produced[key] = time.time()
                phase_of[key] = "during" if hot_published else "before"
                batch.append(
                    (
                        (a if key_by_account else sku).encode(),
                        json.dumps({"account_token": a, "sku": sku, "price": price}).encode(),
                    )
                )
            if batch:
                await asyncio.gather(*[await producer.send(topic, v, key=k) for k, v in batch])
                sent += len(batch)
            await asyncio.sleep(tick)
        await producer.stop()
        published_in = None if backlog_task is None else await backlog_task
        await asyncio.sleep(LINGER_MS / 1000 + 5)  # the last trickle lands
        past_at = math.inf  # when the backlog was read past (never, within the run)
        if past_task is not None:
            if past_task.done():
                past_at = past_task.result()
            else:
                past_task.cancel()
        wall, ended = time.monotonic() - started, time.time()
        commands = int(r.info("stats")["total_commands_processed"]) - commands0
        stats = {w.proc.pid: proc_stats(w.proc.pid) for w in workers}
        cpu = sum(stats[p][0] - cpu0[p] for p in stats)
        samples = [metric_samples(w.port) for w in workers]
        for w in workers:
            w.stop_now()
        timeouts = sum(w.log().count("KafkaTimeoutError") for w in workers)
        duplicates = await duplicate_results(topic + ".results")

        # An update merged into a newer one of its SKU lands when the newer one does.
        by_sku: dict[str, list[tuple[float, float]]] = {}
        for (sku, price), at in applied.items():
            by_sku.setdefault(sku, []).append((price, at))
        latency: dict[str, list[float]] = {"before": [], "during": [], "drain": []}
        missing = 0
        for (sku, price), at in produced.items():
            landed = [t for p, t in by_sku.get(sku, []) if p >= price]
            if not landed:
                missing += 1
            else:
                phase = phase_of[(sku, price)]
                latency["drain" if phase == "during" and at >= past_at else phase].append(
                    min(landed) - at
                )
        log = sandbox.sandbox.stats.log
        hot_user = next(
            u.config.name for u in sandbox.sandbox.users.values() if hot_account in u.account_tokens
        )
        hot_log = [e for e in log if e["user"] == hot_user]  # the hot account's requests
        items_per_request = [e["items"] for e in hot_log if e.get("items")]
        consumed = sent + hot_sent
        hot_windows = Counter(e["window"] for e in hot_log if e.get("window") is not None)
        return {
            "accounts": accounts,
            "replicas": replicas,
            "tokens": tokens,
            "rate_per_account": rate,
            "seconds": round(wall, 1),
            "trickle_messages": sent,
            "trickle_missing": missing,
            "p50_before_s": round(percentile(latency["before"], 50), 3),
            "p99_before_s": round(percentile(latency["before"], 99), 3),
            "p50_during_s": round(percentile(latency["during"], 50), 3),
            "p99_during_s": round(percentile(latency["during"], 99), 3),
            # Produced after the hot backlog was read past, while it drains.
            "drain_messages": len(latency["drain"]),
            "p50_drain_s": round(percentile(latency["drain"], 50), 3),
            "p99_drain_s": round(percentile(latency["drain"], 99), 3),
            "read_past_after_s": None if past_at == math.inf else round(past_at - hot_wall, 1),
            "hot_published_in_s": published_in,
            "hot_requests_draining": sum(
                1 for e in hot_log if e.get("items") and e["t"] >= past_at
            ),
            # Its requests in each of the token's windows (the sandbox's, 60 s): its pace.
            "hot_per_window": [n for _, n in sorted(hot_windows.items())],
            "hot_last_window_cut": bool(hot_windows) and max(hot_windows) + 60 > ended,
            "hot_messages": hot_sent,
            "hot_requests": len(items_per_request),
            "hot_items_per_request": round(
                sum(items_per_request) / max(1, len(items_per_request)), 1
            ),
            "cpu_s_per_10k_messages": round(cpu / max(1, consumed) * 10_000, 2),
            "cpu_ms_per_request": round(cpu / max(1, len(log)) * 1000, 2),
            "idle_cpu_s_per_s": round(idle_cpu_per_s, 4),
            "cpu_ms_per_request_net": round(
                (cpu - idle_cpu_per_s * wall) / max(1, len(log)) * 1000, 2
            ),
            "messages_per_request": round(consumed / max(1, len(log)), 2),
            "rss_mb": [round(s[1]) for s in stats.values()],
            "redis_commands_per_s": round(commands / wall),
            "throttled": sum(1 for e in log if e["status"] == 429),
            "metric_samples": samples,
            "kafka_timeouts": timeouts,
            "duplicate_results": duplicates,
            "requests": len(log),
        }
    finally:
        Catalog.update_variant = original  # type: ignore[method-assign]
        await sandbox.close()


def steady(r: dict[str, Any]) -> bool:
    """A run at 1 update/s or more without a hot backlog: its minutes are compared."""
    return bool(r["rate_per_account"] >= 1 and not r["hot_messages"])


def target(r: dict[str, Any]) -> float:
    """The issue's p99 bound for the run's kind."""
    return 5.0 if steady(r) else LINGER_MS / 1000 + 0.5


def met(r: dict[str, Any]) -> bool:
    """The issue's targets for the run's kind: p99 ≤ linger + 500 ms before and during a hot
    drain; at 1 update/s or more, p99 ≤ 5 s in either minute, the second no worse."""
    first, second = r["p99_before_s"], r["p99_during_s"]
    latency = max(first, second) <= target(r)
    if steady(r):
        latency = latency and second <= first + 0.5  # 0.5 s: this machine's noise
    return (
        latency
        and r["throttled"] == 0
        and r["trickle_missing"] == 0
        and max(r["rss_mb"]) <= 300
        and r["kafka_timeouts"] == 0
        and r["duplicate_results"] == 0
    )


def report(r: dict[str, Any]) -> None:
    print(
        f"{r['accounts']} accounts over {r['tokens']} tokens, {r['rate_per_account']} update/s each, "
        f"{r['seconds']} s, {r['replicas']} replica(s)"
    )
    print(
        f"  trickle: {r['trickle_messages']} messages ({r['trickle_missing']} not applied); "
        f"produce→API p50/p99 before the hot drain {r['p50_before_s']}/{r['p99_before_s']} s, "
        f"during {r['p50_during_s']}/{r['p99_during_s']} s (target p99 ≤ {target(r)} s)"
    )
    if r["hot_messages"]:
        print(
            f"  once the hot backlog was read past ({r['read_past_after_s']} s after its "
            f"publishing began; that took {r['hot_published_in_s']} s), while it drains: {r['drain_messages']} trickle messages, p50/p99 "
            f"{r['p50_drain_s']}/{r['p99_drain_s']} s; {r['hot_requests_draining']} hot requests"
        )
    print(
        f"  hot account: {r['hot_messages']} messages, {r['hot_requests']} requests, "
        f"{r['hot_items_per_request']} items per request, {per_window(r)} (its budget: 100)"
    )
    print(
        f"  CPU {r['cpu_s_per_10k_messages']} s per 10,000 messages, {r['cpu_ms_per_request']} ms "
        f"per request; RSS {r['rss_mb']} MB; "
        f"Redis {r['redis_commands_per_s']} commands/s; {r['requests']} requests, "
        f"{r['throttled']} × 429"
    )
    print(
        f"  /metrics samples per worker {r['metric_samples']} (METRICS_PER_ACCOUNT=false); "
        f"KafkaTimeoutError {r['kafka_timeouts']}; duplicate results {r['duplicate_results']}"
    )
    print(f"  {verdict(met(r))}")


SCENARIOS: list[tuple[str, dict[str, Any]]] = [
    # 120 s: reading past the backlog takes ~40 s here; the rest of the run is its drain.
    ("0.1 update/s per account, a 500,000-message hot backlog, keyed by SKU", {"seconds": 120}),
    (
        "the same with the hot account never moved aside (MAX_PENDING_PER_ACCOUNT=10⁹)",
        {"env": {"MAX_PENDING_PER_ACCOUNT": "1000000000"}, "seconds": 120},
    ),
    # 120 s without a hot backlog: "before" is the first minute, "during" the second.
    ("1 update/s per account, keyed by SKU", {"rate": 1.0, "hot": 0, "seconds": 120}),
    (
        "1 update/s per account, keyed by account",
        {"rate": 1.0, "hot": 0, "seconds": 120, "key_by_account": True},
    ),
    # One worker short of CPU: its batches grow (a bucket's turn comes later and carries
    # what arrived meanwhile), so each message costs less, and lag stays bounded.
    (
        "1 update/s per account, keyed by account, one replica (1,000 tokens: the budget "
        "never binds, the CPU does)",
        {
            "rate": 1.0,
            "hot": 0,
            "seconds": 120,
            "key_by_account": True,
            "replicas": 1,
            "tokens": 1000,
        },
    ),
]
# Measured before this work (the figures, fa743fa, same machine).
BEFORE = [
    "1 update/s per account: produce→API p50 17 s, p99 90 s; consumer lag ≈ everything "
    "produced, nothing committed",
    "result publishing: 57,268 KafkaTimeoutError retries and 5,462 duplicate results",
    "a hot account's 200,000-message backlog: the others' p99 from 3.8 s to 40-50 s "
    "(fetching paused on every partition)",
    "the scheduler looked at every account on every wake: 17 % of worker time",
    "/metrics: 16,000-20,500 samples per worker, 2.1-2.7 MB per scrape",
]


# RESULTS.md keeps what follows make test's marker; this section is ours, from here to the end.
SECTION = "<!-- written by bench/many_merchants.py --write; kept by make bench -->"


COST_TARGET_MS = 3.0


async def request_cost(
    accounts: int = 200,
    tokens: int = 100,
    interval_s: float = 2.0,
    seconds: float = 40,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """What one request costs a worker (bench/request_cost.py): one process, every account
    sending one update every `interval_s` keyed by account, so nearly every request carries
    one item; the same worker idle for `seconds / 4` first is the baseline."""
    return await run(
        accounts,
        tokens,
        1 / interval_s,
        seconds,
        hot=0,
        replicas=1,
        extra_env=extra_env,
        key_by_account=True,
        idle_s=seconds / 4,
    )


def describe_cost(r: dict[str, Any]) -> str:
    return (
        f"one worker, {r['accounts']} accounts over {r['tokens']} tokens, one update every "
        f"{1 / r['rate_per_account']:g} s per account keyed by account ({r['requests']} requests, "
        f"{r['messages_per_request']} messages per request, {r['throttled']} × 429): "
        f"**{r['cpu_ms_per_request']} ms** of CPU per request, {r['cpu_ms_per_request_net']} ms "
        f"net of the same worker idle ({r['idle_cpu_s_per_s'] * 1000:.0f} ms per s); target "
        f"≤ {COST_TARGET_MS:g} ms; Redis {r['redis_commands_per_s']} commands/s"
    )


def hot(r: dict[str, Any]) -> str:
    if not r["hot_messages"]:
        return "—"
    return f"{r['hot_items_per_request']} ({r['hot_requests']}: {per_window(r)})"


def per_window(r: dict[str, Any]) -> str:
    """The hot account's requests in each window of its token, the last one cut by the run's
    end marked so."""
    counts = [str(n) for n in r.get("hot_per_window", [])]
    if counts and r.get("hot_last_window_cut"):
        counts[-1] += " so far"
    return "per 60-s window " + ", ".join(counts) if counts else "no window"


def drain(r: dict[str, Any]) -> str:
    if r["hot_messages"] == 0:
        return "—"
    if r["read_past_after_s"] is None:
        return "not read past within the run"
    return (
        f"{r['p50_drain_s']} / {r['p99_drain_s']} s ({r['read_past_after_s']} s after its "
        f"publishing began, which took {r['hot_published_in_s']} s; {r['drain_messages']})"
    )


def write(
    results: list[tuple[str, dict[str, Any]]],
    path: Path,
    command: str,
    cost: dict[str, Any] | None = None,
) -> None:
    lines = [
        f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        "this 2-CPU machine (shared and noisy): 1,000 accounts over 500 access tokens "
        "(100 requests per 60 s each; the hot account alone on one), 3 variant-sync replicas with the Redis limiter, "
        f"linger {LINGER_MS} ms, METRICS_PER_ACCOUNT=false; the sandbox, the producer, "
        "Kafka and Redis share the machine.",
        "",
        "| scenario | trickle p50 / p99 before the hot backlog (without one: the first minute) "
        "| during (without one: the second minute) | of which once it was "
        "read past (when; trickle messages) | not applied at the end | requests (messages per request) | hot account: "
        "items per request (requests) | CPU per request | CPU per 10,000 messages | RSS per process | "
        "Redis commands/s | 429s | KafkaTimeoutError | duplicate results | /metrics samples |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results:
        lines.append(
            f"| {name} | {r['p50_before_s']} / {r['p99_before_s']} s "
            f"| {r['p50_during_s']} / {r['p99_during_s']} s "
            f"| {drain(r)} "
            f"| {r['trickle_missing']} of {r['trickle_messages']} "
            f"| {r['requests']} ({r['messages_per_request']}) "
            f"| {hot(r)} "
            f"| {r['cpu_ms_per_request']} ms | {r['cpu_s_per_10k_messages']} s "
            f"| {max(r['rss_mb'])} MB | {r['redis_commands_per_s']} | {r['throttled']} "
            f"| {r['kafka_timeouts']} | {r['duplicate_results']} | {max(r['metric_samples'])} |"
        )
    lines += [
        "",
        "Targets from the issue: 0 × 429, 0 KafkaTimeoutError, 0 duplicate results, RSS ≤ "
        "300 MB, /metrics under 3,000 samples, trickle p99 ≤ linger + 500 ms "
        f"({LINGER_MS / 1000 + 0.5:g} s) before and during the hot drain, ≤ 3 ms of CPU per "
        "request, at 1 update/s per account lag bounded (the second minute no worse than the "
        "first) with p99 ≤ 5 s; each row's figures say which hold. "
        "At 1 update/s per account this machine is saturated (the sandbox, the producer, "
        'Kafka and Redis share its 2 CPUs with the workers). "During" is every trickle '
        'message published after the hot backlog; "once it was read past" those published '
        "after the workers had consumed the whole backlog (what is past its per-account bound "
        "waits in the retry topic), while the hot account drains at its budget's pace.",
        "",
        *(
            [
                "What one request costs (`python bench/request_cost.py`, a micro-benchmark): "
                + describe_cost(cost)
                + ".",
                "",
            ]
            if cost is not None
            else []
        ),
        "Before this work (the issue's measurements at fa743fa):",
        "",
        *[f"- {line}" for line in BEFORE],
        "",
    ]
    path.write_text("\n".join(["# Many merchants on one deployment", "", *lines]))
    results_md = path.with_name("RESULTS.md")
    if results_md.exists():  # the same figures as section 9 of the benchmark results
        section = [SECTION, "", "## 9. Many merchants on one deployment", "", *lines]
        kept = results_md.read_text().partition(SECTION)[0].rstrip("\n")
        results_md.write_text(kept + "\n\n" + "\n".join(section))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--accounts", type=int, default=1000)
    p.add_argument("--tokens", type=int, default=500)
    p.add_argument("--rate", type=float, default=0.1)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--hot", type=int, default=500_000)
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--env", action="append", default=[], help="NAME=VALUE for the workers")
    p.add_argument(
        "--key-by-account", action="store_true", help="key the trickle by account, not SKU"
    )
    p.add_argument("--write", type=Path, help="run every scenario and write this Markdown file")
    p.add_argument(
        "--publish-hot", nargs=3, metavar=("TOPIC", "ACCOUNT", "N"), help=argparse.SUPPRESS
    )
    a = p.parse_args()
    if a.publish_hot is not None:  # the child of publish_hot()
        topic, account, n = a.publish_hot
        backlog = hot_backlog(account, int(n))
        gc.freeze()  # half a million long-lived messages: the collector need not walk them
        asyncio.run(produce(topic, backlog))
        return
    if a.write is not None:
        results = []
        for name, overrides in SCENARIOS:
            kw: dict[str, Any] = {
                "tokens": a.tokens,
                "replicas": a.replicas,
                "rate": a.rate,
                "seconds": a.seconds,
                "hot": a.hot,
                "env": {},
                "key_by_account": False,
                **overrides,
            }
            print(f"-- {name}", flush=True)
            r = asyncio.run(
                run(
                    a.accounts,
                    kw["tokens"],
                    kw["rate"],
                    kw["seconds"],
                    kw["hot"],
                    kw["replicas"],
                    kw["env"],
                    kw["key_by_account"],
                )
            )
            report(r)
            results.append((name, r))
        print("-- what one request costs", flush=True)
        cost = asyncio.run(request_cost())
        print("  " + describe_cost(cost))
        write(results, a.write, "python bench/many_merchants.py --write bench/MERCHANTS.md", cost)
        print(f"wrote {a.write}")
        return
    extra = dict(item.split("=", 1) for item in a.env)
    r = asyncio.run(
        run(a.accounts, a.tokens, a.rate, a.seconds, a.hot, a.replicas, extra, a.key_by_account)
    )
    report(r)
    print("RESULT-JSON " + json.dumps(r))


if __name__ == "__main__":
    main()
