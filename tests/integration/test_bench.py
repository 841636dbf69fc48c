"""The benchmark suite runs, small, and draws its pictures (bench/plots.py)."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import paced  # noqa: E402
import pipeline  # noqa: E402
import plots  # noqa: E402
import shared_budget  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


async def test_a_small_run_renders_the_three_pictures(tmp_path: Path) -> None:
    budget = await shared_budget.run(seconds=6, limit=20, period=2.0, replicas=1)
    assert budget["throttled"] == 0 and budget["served"] > 0 and budget["crashed"] == []
    backlog = await pipeline.backlog(seconds=2)
    moderate = await paced.moderate(per_second=200, seconds=3)
    latency = await paced.latency(per_second=100, seconds=3, linger_ms=300)
    assert latency["items"] >= 250 and latency["p50_ms"] > 0
    drawn = [
        plots.budget(budget, tmp_path / "budget.png"),
        plots.batch_sizes(
            {"backlog": backlog["sizes"], "moderate": moderate["sizes"]},
            tmp_path / "batch_sizes.png",
        ),
        plots.latency(latency, tmp_path / "latency.png"),
    ]
    for path in drawn:
        data = path.read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, path


async def test_the_catalog_view_benchmark_counts_every_key_and_cleans_up() -> None:
    import catalog_view

    r = await catalog_view.measure(2000)
    assert r["keys"] == 3 * 2000  # an entry and two variant marks per SKU
    assert 100 < r["per_sku"] < 5000
