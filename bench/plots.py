"""The pictures next to RESULTS.md (matplotlib, no display needed)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def budget(result: dict[str, Any], path: Path) -> Path:
    """Requests per second (1 s bins) of the shared-budget run against the limit."""
    served = Counter(int(t) for t in result["times"])
    throttled = Counter(int(t) for t in result["throttled_times"])
    end = max([*served, *throttled, 0]) + 1
    xs = list(range(end))
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.bar(xs, [served[x] for x in xs], width=1.0, color="#4c78a8", label="served")
    if throttled:
        ax.bar(
            xs,
            [throttled[x] for x in xs],
            bottom=[served[x] for x in xs],
            width=1.0,
            color="#e45756",
            label="429",
        )
    rate = result["limit"] / result["period_s"]
    ax.axhline(rate, color="black", linestyle="--", linewidth=1, label=f"limit ({rate:g}/s)")
    ax.set_xlabel("seconds")
    ax.set_ylabel("requests / s")
    ax.set_title(
        f"{result['replicas']} processes on one token: {result['use']:.1%} of the limit, {result['throttled']} × 429"
    )
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def batch_sizes(series: dict[str, list[int]], path: Path) -> Path:
    """Distribution of items per request, one histogram per run."""
    fig, ax = plt.subplots(figsize=(9, 3.5))
    bins = list(range(0, 525, 25))
    for label, sizes in series.items():
        ax.hist(sizes, bins=bins, alpha=0.6, label=f"{label} (n={len(sizes)})")
    ax.axvline(500, color="black", linestyle="--", linewidth=1, label="maxItems 500")
    ax.set_xlabel("items per request")
    ax.set_ylabel("requests")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def latency(result: dict[str, Any], path: Path) -> Path:
    """Produce→API latency percentiles against linger and the target."""
    values = sorted(result["latencies_ms"])
    qs = [50, 75, 90, 95, 99, 99.9, 100]
    picks = [values[min(len(values) - 1, int(q / 100 * len(values)))] if values else 0 for q in qs]
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.bar([f"p{q:g}" if q < 100 else "max" for q in qs], picks, color="#54a24b")
    ax.axhline(
        result["linger_ms"], color="grey", linestyle=":", label=f"linger {result['linger_ms']} ms"
    )
    ax.axhline(
        result["linger_ms"] + 100,
        color="black",
        linestyle="--",
        label="target p99 ≤ linger + 100 ms",
    )
    ax.set_ylabel("ms from produce to API call")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
