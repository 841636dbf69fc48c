"""schemas/m2e-openapi.yaml: in step with the models, and the sandbox conforms to it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.m2e import openapi

ROOT = Path(__file__).resolve().parents[3]
FUZZ_CONFIG = """\
users:
  - name: fuzz
    access_token: "fuzz-access-token-0001"
    accounts:
      - {token: "6f1c2d3e-0001-4a5b-8c9d-000000000001", channel: ebay}
rate_limit: {requests: 1000000, period_s: 60}
orders: {seed: 1, per_account: 20}
"""


def test_committed_openapi_matches_the_models() -> None:
    committed = openapi.OPENAPI_PATH.read_text()
    assert committed == openapi.render(), "run `m2e-sync schemas export` and commit the result"


def test_assumptions_are_marked_in_the_document() -> None:
    doc = openapi.build()
    schemas = doc["components"]["schemas"]
    assert "x-m2e-sync-assumption" in schemas["ResultPage"]
    assert "x-m2e-sync-assumption" in schemas["OrderFilters"]
    assert doc["info"]["x-m2e-sync-assumptions"]["RateLimit"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def sandbox_process(tmp_path: Path) -> Iterator[str]:
    """`m2e-sync sandbox --config FILE --port N` as a user runs it."""
    config = tmp_path / "sandbox.yaml"
    config.write_text(FUZZ_CONFIG)
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.cli",
            "sandbox",
            "--config",
            str(config),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(base + "/_sandbox/stats", timeout=1)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise AssertionError(proc.communicate()[0].decode()) from None
            time.sleep(0.1)
    try:
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0, out.decode()
        # Started with its config printed, tokens masked.
        assert "fuzz…" in out.decode() and "fuzz-access-token-0001" not in out.decode()


def test_schemathesis_finds_no_5xx_and_no_nonconforming_response(sandbox_process: str) -> None:
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            str(openapi.OPENAPI_PATH),
            "--url",
            sandbox_process + "/api/v1/api",
            "-H",
            "access-token: fuzz-access-token-0001",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_headers_conformance,response_schema_conformance",
            "--max-examples",
            "25",
            "--seed",
            "1",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false"},
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout
    stats = httpx.get(sandbox_process + "/_sandbox/stats").json()
    # Every operation was exercised, and none answered 5xx.
    assert len(stats["requests"]) >= 9, stats["requests"].keys()
    assert not any(s.startswith("5") for route in stats["requests"].values() for s in route)
