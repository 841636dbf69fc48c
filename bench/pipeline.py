"""Worker pipeline throughput and items per request (issue 4; variant-sync, issue 6).

    .venv/bin/m2e-sync stack up
    .venv/bin/python bench/pipeline.py [--messages 200000] [--skus 5000] [--accounts 3]

1. Produces N small partial updates (`variant-updates` shape) to a fresh topic.
2. Baseline: a bare aiokafka consumer reads the same topic (getmany only) — the ceiling
   a Python consumer has on this machine.
3. Pipeline: the variant-sync worker (decode, validate, coalesce, send, publish one
   result per message, commit) with the limiter off against a fast local sink (an
   in-process httpx transport answering 200 at once). Timed from the first consumed
   message to the last offset committed. Prints msg/s and its ratio to the baseline.
4. Backlog with the limiter on (4 requests/s per access token, 2 tokens, 3 accounts):
   items per request while the queue outlasts the budget.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import uuid
from pathlib import Path
from typing import Any

import common
from common import credentials, make_topic, produce, run_worker, verdict

from services.variant_sync import VariantSync


def updates(
    n: int, skus: int, accounts: list[str], distinct: bool = False
) -> list[tuple[bytes, bytes]]:
    """N updates over `skus` SKUs drawn at random, or (distinct) one per SKU."""
    rng = random.Random(1)
    out = []
    for i in range(n):
        sku = f"SKU-{i if distinct else rng.randrange(skus):06d}"
        account = accounts[i % len(accounts)] if distinct else accounts[hash(sku) % len(accounts)]
        field = (
            {"price": round(rng.uniform(1, 500), 2)} if i % 2 else {"quantity": rng.randrange(1000)}
        )
        out.append(
            (sku.encode(), json.dumps({"account_token": account, "sku": sku, **field}).encode())
        )
    return out


async def throughput(
    messages: int = 200_000, skus: int = 5000, n_accounts: int = 3
) -> dict[str, Any]:
    """variant-sync from consume to commit, limiter off, against the bare consumer."""
    accounts = [str(uuid.UUID(int=i + 1)) for i in range(n_accounts)]
    return await common.throughput(
        VariantSync(set(accounts)), "variant-updates", updates(messages, skus, accounts), accounts
    )


async def backlog(seconds: float = 8.0, rate: int = 4, n_accounts: int = 3) -> dict[str, Any]:
    """Items per request while the queue outlasts the budget (limiter on)."""
    accounts = [str(uuid.UUID(int=i + 1)) for i in range(n_accounts)]
    n = 60_000  # 20,000 distinct SKUs per account: more than 8 s of 4 req/s x 500 can carry
    with tempfile.TemporaryDirectory() as tmp:
        creds = credentials(Path(tmp), accounts)
        topic = await make_topic("variant-updates")
        await produce(topic, updates(n, n, accounts, distinct=True))  # nothing to merge
        elapsed, sink = await run_worker(
            VariantSync(set(accounts)), topic, n, creds, limited=True, seconds=seconds, rate=rate
        )
    return {
        "seconds": elapsed,
        "rate": rate,
        "requests": len(sink.sizes),
        "sizes": sink.sizes,
        "items_per_request": sum(sink.sizes) / max(1, len(sink.sizes)),
    }


def throughput_met(t: dict[str, Any]) -> bool:
    return bool(t["msg_s"] >= 50_000)


def backlog_met(b: dict[str, Any]) -> bool:
    return bool(b["items_per_request"] >= 495)


async def main(args: argparse.Namespace) -> None:
    t = await throughput(args.messages, args.skus, args.accounts)
    print(f"baseline  bare aiokafka getmany          {t['baseline_msg_s']:10,.0f} msg/s")
    print(
        f"pipeline  consume→send→results→commit    {t['msg_s']:10,.0f} msg/s  "
        f"({t['seconds']:.2f}s; {t['msg_s'] / t['baseline_msg_s']:.2f}x the baseline)"
    )
    print(f"          target >= 50,000 msg/s: {verdict(throughput_met(t))}")
    b = await backlog()
    print(
        f"backlog   limiter on (4 req/s per token): {b['requests']} requests, "
        f"{b['items_per_request']:.1f} items/request; target >= 495: "
        f"{verdict(backlog_met(b))}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--skus", type=int, default=5000)
    parser.add_argument("--accounts", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
