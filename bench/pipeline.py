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
import time
import uuid
from pathlib import Path

from common import baseline, credentials, make_topic, produce, run_worker

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


async def main(args: argparse.Namespace) -> None:
    accounts = [str(uuid.UUID(int=i + 1)) for i in range(args.accounts)]
    service = VariantSync(set(accounts))
    with tempfile.TemporaryDirectory() as tmp:
        creds = credentials(Path(tmp), accounts)
        topic = await make_topic("variant-updates")
        t = time.perf_counter()
        await produce(topic, updates(args.messages, args.skus, accounts))
        print(
            f"produced {args.messages:,} updates over {args.skus:,} SKUs, {args.accounts} accounts "
            f"in {time.perf_counter() - t:.1f}s"
        )
        base = await baseline(topic, args.messages)
        print(f"baseline  bare aiokafka getmany          {base:10,.0f} msg/s")
        elapsed, sink = await run_worker(service, topic, args.messages, creds, limited=False)
        rate = args.messages / elapsed
        print(
            f"pipeline  consume→send→results→commit    {rate:10,.0f} msg/s  "
            f"({elapsed:.2f}s; {rate / base:.2f}x the baseline)"
        )
        print(
            f"          requests {len(sink.sizes):,}, items/request {sum(sink.sizes) / max(1, len(sink.sizes)):.1f}"
        )
        print(f"          target >= 50,000 msg/s: {'MET' if rate >= 50_000 else 'NOT MET'}")

        topic2 = await make_topic("variant-updates")
        await produce(topic2, updates(60_000, 60_000, accounts, distinct=True))  # nothing to merge
        # 4 requests/s per access token for 8 s moves at most 32 x 500 = 16,000 items per token:
        # every account (20,000 queued each) stays backlogged for the whole window.
        elapsed, sink = await run_worker(
            service, topic2, 60_000, creds, limited=True, seconds=8.0, rate=4
        )
        per = sum(sink.sizes) / max(1, len(sink.sizes))
        print(
            f"backlog   limiter on (4 req/s per token), {elapsed:.0f}s: {len(sink.sizes)} requests, "
            f"{per:.1f} items/request; target >= 495: {'MET' if per >= 495 else 'NOT MET'}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--skus", type=int, default=5000)
    parser.add_argument("--accounts", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
