"""What one M2E request costs a worker in CPU, the limiter and the result publish included
(issue "many merchants": ≤ 3 ms per request). Also run by `many_merchants.py --write`.

    .venv/bin/m2e-sync stack up
    .venv/bin/python bench/request_cost.py [--accounts 200] [--tokens 100] [--interval 2]
        [--seconds 40] [--env NAME=VALUE]

One variant-sync process (the Redis limiter on, linger 200 ms) against the sandbox, which
runs in this process so that its CPU is not counted. Every account sends one update every
`--interval` seconds, keyed by account: nearly every request carries one item, so what is
measured is the cost of a request, not of a message. The baseline is the same worker idle
(its poll loop, probes and gauges) for `--seconds / 4` in the same run: reported beside the
gross figure and subtracted for the net one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import verdict
from many_merchants import COST_TARGET_MS, describe_cost, request_cost


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--accounts", type=int, default=200)
    p.add_argument("--tokens", type=int, default=100)
    p.add_argument(
        "--interval", type=float, default=2.0, help="seconds between an account's updates"
    )
    p.add_argument("--seconds", type=float, default=40)
    p.add_argument("--env", action="append", default=[], help="NAME=VALUE for the worker")
    a = p.parse_args()
    extra = dict(item.split("=", 1) for item in a.env)
    r = asyncio.run(request_cost(a.accounts, a.tokens, a.interval, a.seconds, extra))
    print(describe_cost(r))
    print(verdict(r["cpu_ms_per_request"] <= COST_TARGET_MS and r["throttled"] == 0))
    print("RESULT-JSON " + json.dumps(r))


if __name__ == "__main__":
    main()
