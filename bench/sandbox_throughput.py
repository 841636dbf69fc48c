"""How many 500-item create requests per minute the sandbox sustains (target ≥ 1,000).

    .venv/bin/python bench/sandbox_throughput.py [--requests 300] [--concurrency 4]

Starts `m2e-sync sandbox` as its own process (as users run it), then, from this process,
sends trivial requests (GET /user/accounts/, the baseline) and 500-item creates, each
with unique SKUs, at the given concurrency. Prints both rates and their ratio; the
machine is shared and noisy, so the ratio is the steadier figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import verdict

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-access-token-0001"
CONFIG = f"""\
users:
  - name: bench
    access_token: "{TOKEN}"
    accounts: [{{token: "6f1c2d3e-0001-4a5b-8c9d-000000000001", channel: ebay}}]
rate_limit: {{requests: 100000000, period_s: 60}}
orders: {{per_account: 10}}
"""


def product(sku: str) -> dict[str, object]:
    return {
        "sku": sku,
        "status": 1,
        "is_simple": True,
        "currency": "EUR",
        "title": f"Bench product {sku} with a realistic title length",
        "description": "x" * 200,
        "images": [f"https://img.example.com/{sku}.jpg"],
        "attributes": [{"name": "brand", "value": "Acme"}, {"name": "material", "value": "cotton"}],
        "variants": [
            {
                "sku": f"{sku}-V",
                "barcode": "4006381333931",
                "price": 19.99,
                "quantity": 10,
                "weight": 0.5,
                "weight_unit": "KILOGRAMS",
            }
        ],
    }


async def run(n_requests: int, concurrency: int, base: str) -> dict[str, float]:
    api = base + "/api/v1/api"
    headers = {"access-token": TOKEN, "content-type": "application/json"}
    async with httpx.AsyncClient(timeout=60, headers=headers) as client:

        async def drive(make_request: object, count: int) -> float:
            queue = list(range(count))
            started = time.perf_counter()

            async def worker() -> None:
                while queue:
                    i = queue.pop()
                    resp = await make_request(i)  # type: ignore[operator]
                    assert resp.status_code == 200, resp.text[:300]

            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return count / (time.perf_counter() - started)

        bodies = [
            json.dumps([product(f"B{r:05d}-{i:03d}") for i in range(500)]).encode()
            for r in range(n_requests)
        ]
        baseline = await drive(lambda i: client.get(api + "/user/accounts/"), n_requests * 3)
        creates = await drive(
            lambda i: client.post(api + "/catalog/product/", content=bodies[i]), n_requests
        )
        stats = (await client.get(base + "/_sandbox/stats")).json()
    assert stats["items"]["POST /catalog/product/"] == 500 * n_requests
    return {"baseline_rps": baseline, "create_rps": creates}


def measure(requests: int = 300, concurrency: int = 4) -> dict[str, float]:
    """Creates of 500 items against a sandbox process of its own."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as cfg:
        cfg.write(CONFIG)
        cfg.flush()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "services.cli",
                "sandbox",
                "--config",
                cfg.name,
                "--port",
                str(port),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    httpx.get(base + "/_sandbox/stats")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            result = asyncio.run(run(requests, concurrency, base))
        finally:
            proc.terminate()
            proc.wait()
    return result


def met(result: dict[str, float]) -> bool:
    return result["create_rps"] * 60 >= 1000


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    result = measure(args.requests, args.concurrency)
    per_min = result["create_rps"] * 60
    print(f"sandbox: {args.requests} create requests x 500 items, concurrency {args.concurrency}")
    print(f"  baseline GET /user/accounts/   {result['baseline_rps']:8.1f} req/s")
    print(
        f"  POST /catalog/product/ (500)   {result['create_rps']:8.1f} req/s "
        f"= {per_min:,.0f} req/min = {per_min * 500:,.0f} items/min"
    )
    print(f"  create / baseline ratio        {result['create_rps'] / result['baseline_rps']:8.3f}")
    print(f"  target >= 1,000 req/min: {verdict(met(result))} ({per_min / 1000:.2f}x the target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
