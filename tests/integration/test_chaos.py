"""The fast part of `make chaos`: crashes, a broker restart, Redis killed, API faults and
a replica joining and leaving while the API holds requests past the revoke deadline;
nothing is lost, every SKU ends at its last valid update, the DLQ holds only the invalid
inputs."""

from __future__ import annotations

import sys
from pathlib import Path

from m2e_sandbox.config import FaultConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import chaos


async def test_nothing_is_lost_through_kills_restarts_and_faults() -> None:
    # A small run makes few API calls, so the seed is chosen: each access token has its
    # own fault stream per route, and with seed 36 the first four variant PATCHes of the
    # two tokens meet a 500, a timeout, a reset and a 429 in every run. Each token's
    # updates arrive over 16 s and flush after a 200 ms linger: far more than four PATCHes.
    faults = FaultConfig(
        error_rate=0.2,
        throttle_rate=0.1,
        timeout_rate=0.05,
        reset_rate=0.05,
        timeout_hold_s=3.0,
        seed=36,
    )
    result = await chaos.run(
        events=6000,
        kills=2,
        seconds=16.0,
        skus_per_account=300,
        say=lambda _line: None,
        faults=faults,
    )
    chaos.report(result)
    assert result["lost"] == 0, result["lost_examples"]
    assert result["missing_results"] == 0
    assert result["dlq_only_invalid"] and result["dlq_records"] >= result["dlq_expected"] > 0
    # Two kills, the broker, Redis down and up, the rebalances under a slow API.
    assert len(result["timeline"]) == 2 + 1 + 2 + 1
    # Whether a rebalance meets sends in flight depends on timing (it usually does, and the
    # report says how many); tests/shared/worker/test_rebalance.py pins each case down.
    api = result["api"]["PATCH /catalog/product/variant/"]
    assert api.get("500", 0) > 0 and api.get("429", 0) > 0 and api.get("0", 0) > 0  # faults hit
    assert result["ok"]
