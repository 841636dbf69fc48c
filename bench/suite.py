"""`make bench`: every benchmark against the real stack; rewrites bench/RESULTS.md and the
pictures next to it.

    .venv/bin/m2e-sync stack up
    .venv/bin/python bench/suite.py [--out bench] [--quick]

--quick runs each benchmark small (a smoke run: the figures are not comparable).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import catalog_view
import memory
import more_services
import naive
import paced
import pipeline
import plots
import product_upserts
import sandbox_throughput
import shared_budget
import view_memory


def met(ok: bool) -> str:
    return "**met**" if ok else "**NOT MET**"


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = next(
        int(line.split()[1]) // 1024 // 1024
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    kafka = (
        next(
            (
                line.strip()
                for line in (HERE.parent / "stack" / "pom.xml").read_text().splitlines()
                if "<kafka.version>" in line
            ),
            "",
        )
        .replace("<kafka.version>", "")
        .replace("</kafka.version>", "")
    )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=HERE,
        check=False,
    ).stdout.strip()
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {mem} GiB RAM, Linux {platform.release()}, "
        f"Python {platform.python_version()}, Apache Kafka {kafka or '4.x'} (single-node KRaft), "
        f"Redis (Debian), commit {commit or 'unknown'}. The machine is shared and noisy: ratios "
        "against a baseline measured in the same run are the steadier figures."
    )


async def collect(quick: bool) -> dict[str, Any]:
    r: dict[str, Any] = {}
    say = lambda text: print(text, flush=True)  # noqa: E731
    say("1/8 shared budget: 3 replicas x 4 services on one token")
    r["budget"] = await shared_budget.run(
        seconds=15 if quick else 60,
        limit=20 if quick else 200,
        period=2.0 if quick else 20.0,
        replicas=1 if quick else 3,
    )
    shared_budget.report(r["budget"])
    say("2/8 items per request under backlog")
    r["backlog"] = await pipeline.backlog(seconds=3 if quick else 8)
    say("3/8 items per request under a moderate load the budget throttles")
    r["moderate"] = await paced.moderate(seconds=4 if quick else 20)
    say("4/8 throughput per process, limiter off")
    r["variant"] = await pipeline.throughput(messages=20_000 if quick else 200_000)
    r["product"] = await product_upserts.throughput(messages=10_000 if quick else 100_000)
    r["invoice"] = await more_services.invoices(500 if quick else 5000)
    r["orders"] = await more_services.orders(1000 if quick else 10_000)
    say("5/8 latency from produce to API call")
    r["latency"] = await paced.latency(seconds=4 if quick else 20)
    say("6/8 resident memory with 20,000 pending items")
    r["memory"] = await memory.run(2000 if quick else 20_000)
    r["view"] = await catalog_view.measure(10_000 if quick else 100_000)
    r["flow"] = await view_memory.run(20_000 if quick else 500_000)
    say("7/8 naive baseline: one call per message from a FastStream handler")
    r["naive"] = await naive.run(messages=200 if quick else 1500, budget=50)
    say("8/8 sandbox: creates of 500 items per minute")
    r["sandbox"] = await asyncio.to_thread(sandbox_throughput.measure, 60 if quick else 300, 4)
    return r


def write(r: dict[str, Any], out: Path, command: str, quick: bool) -> Path:
    pictures = {
        "budget": plots.budget(r["budget"], out / "budget.png").name,
        "batches": plots.batch_sizes(
            {
                "backlog (4 req/s)": r["backlog"]["sizes"],
                f"moderate ({r['moderate']['per_second']} items/s, {r['moderate']['budget']} req/s)": r[
                    "moderate"
                ]["sizes"],
            },
            out / "batch_sizes.png",
        ).name,
        "latency": plots.latency(r["latency"], out / "latency.png").name,
    }
    b, bl, m, lat, nv, sb = (
        r["budget"],
        r["backlog"],
        r["moderate"],
        r["latency"],
        r["naive"],
        r["sandbox"],
    )
    v, p = r["variant"], r["product"]
    lines = [
        "# Benchmark results",
        "",
        f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        + (
            " (a **quick** smoke run: sizes are small, figures are not comparable)."
            if quick
            else "."
        ),
        "",
        f"Machine: {machine()}",
        "",
        "Each benchmark is also a script of its own under `bench/` (the command is given); the stack must be up (`m2e-sync stack up`). Fault injection (`make chaos`) writes its figures to [CHAOS.md](CHAOS.md); many merchants on one deployment (`bench/many_merchants.py`, also in `make bench`) to [MERCHANTS.md](MERCHANTS.md); the budget at the server's window (`bench/windows.py`) to [WINDOWS.md](WINDOWS.md); Benthos side by side (`bench/peer.py`) to [PEER.md](PEER.md).",
        "",
        "| # | what | target | measured | |",
        "|---|---|---|---|---|",
        f"| 1 | rate-budget use, {b['replicas']} processes on one token | ≥ 98 % of the limit, 0 × 429 | {b['use']:.1%}, {b['throttled']} × 429 | {met(shared_budget.met(b))} |",
        f"| 2a | items per request under backlog | ≥ 495 | {bl['items_per_request']:.1f} | {met(pipeline.backlog_met(bl))} |",
        f"| 2b | items per request, moderate load throttled by the budget | ≥ 90 % of {m['allowed']:.0f} | {m['items_per_request']:.1f} ({m['share']:.0%}) | {met(paced.moderate_met(m))} |",
        f"| 3a | variant-updates per process, limiter off | ≥ 50,000 msg/s | {v['msg_s']:,.0f} msg/s ({v['msg_s'] / v['baseline_msg_s']:.2f}× a bare consumer) | {met(pipeline.throughput_met(v))} |",
        f"| 3b | product-upserts per process, limiter off | ≥ 10,000 msg/s | {p['msg_s']:,.0f} msg/s ({p['msg_s'] / p['baseline_msg_s']:.3f}× a bare consumer) | {met(product_upserts.throughput_met(p))} |",
        f"| 3c | invoice-uploads per process, limiter off | — | {r['invoice']['msg_s']:,.0f} msg/s | |",
        f"| 3d | order-poller per process, limiter off | — | {r['orders']['orders_s']:,.0f} orders/s | |",
        f"| 4 | produce → API call, linger {lat['linger_ms']} ms | p99 ≤ {lat['linger_ms'] + 100} ms | p50 {lat['p50_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms | {met(paced.latency_met(lat))} |",
    ]
    for row in r["memory"]:
        lines.append(
            f"| 5 | RSS of {row['service']} with {row['pending']:,.0f} pending items | ≤ 200 MB | {row['rss_mb']:.0f} MB (idle {row['idle_mb']:.0f} MB) | {met(memory.met(row))} |"
        )
    lines += [
        f"| 6 | naive one-call-per-message baseline, same budget | — | {nv['requests_ratio']:.0f}× the requests, {nv['time_ratio']:.0f}× the time of m2e-sync | |",
        f"| 7 | sandbox: creates of 500 items | ≥ 1,000 req/min | {sb['create_rps'] * 60:,.0f} req/min | {met(sandbox_throughput.met(sb))} |",
        "",
        f"## 1. One budget, {b['replicas']} processes",
        "",
        "Command: `.venv/bin/python bench/shared_budget.py`",
        "",
        f"{b['replicas'] // 4} replica(s) of each of the four services (`m2e-sync run`, real processes) share one access token through Redis; the sandbox meters {b['limit']} requests per {b['period_s']:g} s in fixed windows, and every topic holds more work than that budget carries. In {b['seconds']:g} s of steady state the sandbox served **{b['served']} of the {b['allowed']}** requests the limit allows (**{b['use']:.1%}**), the fullest window held {b['fullest_window']} of {b['limit']}, and it answered **{b['throttled']} × 429**. The workers space requests (period + 100 ms) ÷ limit apart (`RATE_LIMIT_JITTER_MS`): that margin, {100 / (b['period_s'] * 1000 + 100):.1%} of this budget, is what keeps requests whose delays differ from landing one too many in a server window; the rest is the gaps between a slot opening and a worker taking it.",
        "",
        f"Requests served by route: {', '.join(f'`{k}` {v}' for k, v in sorted(b['per_route'].items()))}.",
        "",
        f"![requests per second against the limit]({pictures['budget']})",
        "",
        "## 2. Items per request",
        "",
        "Commands: `.venv/bin/python bench/pipeline.py` (backlog), `.venv/bin/python bench/paced.py` (moderate load)",
        "",
        f"- Backlog: 60,000 distinct SKUs over 3 accounts queued, limiter at {bl['rate']} requests/s per token: {bl['requests']} requests carried **{bl['items_per_request']:.1f}** items each.",
        f"- Moderate load: {m['per_second']} distinct SKUs/s, linger 100 ms, budget {m['budget']} requests/s. Unthrottled the worker would send ten requests a second; the budget allows {m['budget']}, so a request can carry at most {m['allowed']:.0f} items. Measured: **{m['items_per_request']:.1f}** items/request at {m['requests_per_s']:.2f} requests/s. The budget here is {m['budget'] * 10} requests per 10 s, so the 100 ms jitter margin costs 1 %: the worker sends as soon as each slot opens, and every request carries what arrived since the last one.",
        "",
        f"![batch-size distribution]({pictures['batches']})",
        "",
        "## 3. Throughput per process, limiter off",
        "",
        "Commands: `.venv/bin/python bench/pipeline.py`, `.venv/bin/python bench/product_upserts.py`, `.venv/bin/python bench/more_services.py`",
        "",
        "Timed from the first consumed message to the last offset committed: every message decoded, validated, coalesced, sent to a fast in-process sink, its result published (acks=all) and its offset committed. The baseline is a bare aiokafka consumer reading the same topic in the same run.",
        "",
        "| service | messages | bare consumer | m2e-sync | ratio |",
        "|---|---|---|---|---|",
        f"| variant-sync | {v['messages']:,} partial updates | {v['baseline_msg_s']:,.0f} msg/s | **{v['msg_s']:,.0f} msg/s** | {v['msg_s'] / v['baseline_msg_s']:.2f} |",
        f"| product-sync | {p['messages']:,} SAP Anywhere and M2E products | {p['baseline_msg_s']:,.0f} msg/s | **{p['msg_s']:,.0f} msg/s** | {p['msg_s'] / p['baseline_msg_s']:.3f} |",
        f"| invoice-upload | {r['invoice']['messages']:,} inline PDFs, one call each | | **{r['invoice']['msg_s']:,.0f} msg/s** | |",
        f"| order-poller | {r['orders']['orders']:,.0f} orders from {r['orders']['finds']} pages | | **{r['orders']['orders_s']:,.0f} orders/s** | |",
        "",
        "## 4. Latency from produce to API call",
        "",
        "Command: `.venv/bin/python bench/paced.py`",
        "",
        f"{lat['per_second']} updates/s of distinct SKUs for 20 s under a budget they never reach, linger {lat['linger_ms']} ms: each item's time from just before `send` to the arrival of the API call carrying it. p50 **{lat['p50_ms']:.0f} ms**, p90 {lat['p90_ms']:.0f} ms, p99 **{lat['p99_ms']:.0f} ms**, max {lat['max_ms']:.0f} ms over {lat['items']:,} items. An item waits at most one linger for its batch; the rest is Kafka and the worker.",
        "",
        f"![latency percentiles]({pictures['latency']})",
        "",
        "## 5. Memory",
        "",
        "Command: `.venv/bin/python bench/memory.py`",
        "",
        "A real worker process against a budget of one request an hour, so everything it consumes stays pending; RSS from `/proc/<pid>/status`.",
        "",
    ]
    for row in r["memory"]:
        lines.append(
            f"- {row['service']}: {row['pending']:,.0f} pending messages of {row['message_bytes']:,.0f} bytes: **{row['rss_mb']:.0f} MB** RSS (the same process idle: {row['idle_mb']:.0f} MB)."
        )
    cv = r["view"]
    lines += [
        f"- product-sync with distinct SKUs flowing through (`.venv/bin/python bench/view_memory.py`): {view_memory.report(row)}."
        for row in r["flow"]
    ]
    lines.append(
        f"- The shared catalog view in Redis (`.venv/bin/python bench/catalog_view.py`): {cv['skus']:,} product SKUs with 2 variants each, entries and variant write marks: **{cv['bytes'] / 2**20:.1f} MiB** ({cv['per_sku']:.0f} bytes per SKU, `MEMORY USAGE` of {cv['keys']:,} keys); none of it in the workers."
    )
    lines += [
        "",
        "## 6. Against the naive baseline",
        "",
        "Command: `.venv/bin/python bench/naive.py`",
        "",
        f"{nv['messages']:,} variant updates, the same sandbox, the same budget ({nv['budget']} requests/s). A plain FastStream handler making one PATCH per message (aiolimiter at the budget, retrying 429s) needed **{nv['naive_requests']:,} requests and {nv['naive_s']:.1f} s**; m2e-sync needed **{nv['ours_requests']} requests and {nv['ours_s']:.1f} s**: {nv['requests_ratio']:.0f}× fewer requests and {nv['time_ratio']:.0f}× less wall time. Under a real account's budget (100 requests a minute by default) the naive handler moves 100 updates a minute; m2e-sync moves up to 50,000.",
        "",
        "## 7. The sandbox",
        "",
        "Command: `.venv/bin/python bench/sandbox_throughput.py --requests 300 --concurrency 4`",
        "",
        f"`POST /catalog/product/` with 500 items: {sb['create_rps']:.1f} req/s = **{sb['create_rps'] * 60:,.0f} req/min** against `GET /user/accounts/` at {sb['baseline_rps']:,.1f} req/s (ratio {sb['create_rps'] / sb['baseline_rps']:.3f}); the load generator shares the machine.",
        "",
    ]
    path = out / "RESULTS.md"
    # Sections measured elsewhere (make test's image build) stay as they were recorded.
    kept = path.read_text().partition(KEPT)[2] if path.exists() else ""
    path.write_text("\n".join(lines) + (f"\n{KEPT}{kept}" if kept else ""))
    return path


KEPT = "<!-- measured by make test; make bench keeps what follows -->"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = asyncio.run(collect(args.quick))
    command = "make bench" if not args.quick else "python bench/suite.py --quick"
    print(f"wrote {write(results, args.out, command, args.quick)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
