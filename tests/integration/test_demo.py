"""`make demo` runs the whole job: every sample event accounted for, only the invalid in the DLQ."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from services.registry import SERVICES

from .harness import ROOT, free_port


def test_demo_accounts_for_every_sample_event() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "demo",
            "--products",
            "40",
            "--updates",
            "600",
            "--sandbox-port",
            str(free_port()),
            "--timeout",
            "240",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("SUMMARY-JSON "))
    summary = json.loads(line.removeprefix("SUMMARY-JSON "))
    assert summary["published"] == {
        "product-upserts": 42,
        "variant-updates": 601,
        "invoice-uploads": 21,
        "order-poll-ticks": 3,
    }
    results = summary["results"]
    assert results["product-upserts"] == {"ok": 40, "failed": 2}
    assert results["variant-updates"].get("failed") == 1
    assert sum(results["variant-updates"].values()) == 601
    assert results["invoice-uploads"] == {"ok": 20, "failed": 1}
    assert results["order-poll-ticks"] == {"ok": 3}
    # New or changed orders; a rerun on the same stack fetches only what changed since.
    assert summary["orders_fetched"] > 0
    assert summary["dlq"] == 4  # exactly the deliberately invalid samples
    assert summary["products_in_sandbox"] == 40
    assert summary["throttled"] == 0
    assert "Where to look next" in done.stdout
    # The per-account view (m2e-sync status), gathered from the four workers: the demo's
    # accounts, all of them healthy, one row per account and service that saw it.
    accounts = summary["accounts"]
    assert accounts and {r["state"] for r in accounts} == {"ok"}
    assert {r["service"] for r in accounts} == set(SERVICES)
    assert "Accounts (m2e-sync status; worst first)" in done.stdout
    # The progress lines' words agree with the summary's numbers.
    for topic, what in (
        ("product-upserts", "product events"),
        ("variant-updates", "price and stock updates"),
        ("invoice-uploads", "invoices"),
    ):
        said = re.search(rf"publishing (\d+) {what} \(.*?(\d+) invalid\)", done.stdout)
        assert said is not None, done.stdout[:2000]
        assert int(said[1]) == summary["published"][topic]
        assert int(said[2]) == results[topic]["failed"], (topic, said[0], results[topic])
    # No raw client warnings before (or among) the progress lines.
    assert "NotLeaderForPartition" not in done.stdout + done.stderr
    assert "Failed fetch offsets" not in done.stdout + done.stderr
