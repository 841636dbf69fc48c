"""A running worker exports every metric the dashboard and the alerts use, and Debian's
Prometheus, scraping it while it syncs against the sandbox, answers the dashboard's
key queries with data."""

from __future__ import annotations

import asyncio
import json
import math
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from .harness import (
    ACCT_A,
    TOKEN_A,
    WorkerProcess,
    eventually,
    free_port,
    new_run,
    produce,
    sandbox_config,
    update,
    wait_all_committed,
)

FILES = Path(__file__).resolve().parents[2] / "charts" / "m2e-sync" / "files"
NAME = re.compile(r"\bm2e_sync_[a-z_]+")
SUFFIXES = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
# The panels an on-call engineer opens first; each must show data from one running worker.
KEY_PANELS = [
    "Messages consumed /s",
    "Results by outcome /s",
    "Items per request",
    "API requests /s by account (rate-budget use)",
    "API latency p50 / p99",
    "Limiter wait p99 by account",
    "DLQ records /s by reason",
    "Pending (unsettled) messages — lag",
    "Since last successful batch",
]


def scraped_names(text: str) -> set[str]:
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + s for s in SUFFIXES.get(family.type, [""])}
        names |= {sample.name for sample in family.samples}
    return names


def used_names() -> set[str]:
    return set(NAME.findall((FILES / "dashboard.json").read_text())) | set(
        NAME.findall((FILES / "alerts.yaml").read_text())
    )


def start_prometheus(tmp: Path, target: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    assert Path(binary).exists(), "make test installs Debian's prometheus package"
    config = tmp / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(FILES / "alerts.yaml")],
                "scrape_configs": [
                    {"job_name": "m2e-sync", "static_configs": [{"targets": [target]}]}
                ],
            }
        )
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=(tmp / "prometheus.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    return proc, f"http://127.0.0.1:{port}"


def query(base: str, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{base}/api/v1/query", params={"query": expr}, timeout=5)
    body = response.json()
    assert body["status"] == "success", (expr, body)
    return list(body["data"]["result"])


async def test_a_running_worker_feeds_every_dashboard_metric_into_prometheus(
    bootstrap_servers: str, redis_url: str, sandbox_server: Any, tmp_path: Path
) -> None:
    sandbox = await sandbox_server(sandbox_config())
    skus = [f"OBS{i:03d}" for i in range(50)]
    await sandbox.seed_variants(TOKEN_A, skus)
    run = await new_run(bootstrap_servers, sandbox, tmp_path, "variant-updates")
    topic, group = run.topic, run.group
    env = run.env(
        rate_limit_enabled="true",
        redis_url=redis_url,
        rate_limit_redis_prefix=f"it-obs-{time.monotonic_ns()}",
    )
    worker = WorkerProcess("variant-sync", env, tmp_path, "obs")
    prometheus, base = start_prometheus(tmp_path, f"127.0.0.1:{worker.port}")
    try:
        await eventually(worker.ready, timeout_s=60)
        # Two waves: rate() needs the series to exist before the second one moves it.
        for wave in range(2):
            messages = [update(ACCT_A, sku, price=float(i + wave)) for i, sku in enumerate(skus)]
            messages.append(("bad", b"{not json"))  # for the DLQ panel
            await produce(bootstrap_servers, topic, messages)
            await wait_all_committed(bootstrap_servers, group, topic)
            await eventually(
                lambda: query(base, "m2e_sync_commits_total{service='variant-sync'}"),
                timeout_s=30,
            )
            await asyncio.sleep(2)  # two scrapes of the settled counters

        text = httpx.get(f"http://127.0.0.1:{worker.port}/metrics", timeout=5).text
        assert used_names() - scraped_names(text) == set()

        panels = {
            p["title"]: p["targets"][0]["expr"]
            for p in json.loads((FILES / "dashboard.json").read_text())["panels"]
        }

        def value(title: str) -> list[float]:
            result = query(base, panels[title].replace("$__rate_interval", "1m"))
            return [float(r["value"][1]) for r in result]

        async def answered() -> bool:
            return all(value(t) and not any(math.isnan(v) for v in value(t)) for t in KEY_PANELS)

        await eventually(answered, timeout_s=60, every_s=1.0)
        (items,) = query(base, panels["Items per request"].replace("$__rate_interval", "1m"))
        assert float(items["value"][1]) > 1  # batched, not one call per message
        # The rules load, and with a healthy worker none fires.
        rules = httpx.get(f"{base}/api/v1/rules", timeout=5).json()["data"]["groups"]
        assert sum(len(g["rules"]) for g in rules) == 8
        assert query(base, "ALERTS{alertstate='firing'}") == []
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)
        worker.signal(15)
        await worker.wait()
