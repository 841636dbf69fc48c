"""The dashboard and the alert rules: valid for the real tools, and about real metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from prometheus_client.metrics_core import Metric

from shared.metrics import Metrics
from shared.worker.accounts import SEVERITY

FILES = Path(__file__).resolve().parents[2] / "charts" / "m2e-sync" / "files"
NAME = re.compile(r"\bm2e_sync_[a-z_]+")


def exported() -> set[str]:
    """Every sample name a worker's /metrics can carry."""
    names = set()
    family: Metric
    metrics = Metrics("any")
    metrics.watch_accounts(list, SEVERITY)
    for family in metrics.registry.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(
            family.type, [""]
        )
        names |= {family.name + s for s in suffixes}
    return names


def test_every_metric_in_the_dashboard_and_the_rules_is_exported() -> None:
    used = set(NAME.findall((FILES / "dashboard.json").read_text())) | set(
        NAME.findall((FILES / "alerts.yaml").read_text())
    )
    assert used, "the dashboard and rules name metrics"
    assert used - exported() == set()


def test_dashboard_is_current() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("dashboard", FILES.parent / "dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert json.loads((FILES / "dashboard.json").read_text()) == module.build(), (
        "run charts/m2e-sync/dashboard.py"
    )


def test_promtool_checks_and_unit_tests_the_alert_rules() -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "make test installs Debian's prometheus package (promtool)"
    check = subprocess.run(
        [promtool, "check", "rules", "alerts.yaml"],
        cwd=FILES,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 8 rules found" in check.stdout
    tests = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yaml"],
        cwd=FILES,
        capture_output=True,
        text=True,
        check=False,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
