"""No secret the workers know ever leaves them: not in a log line (DEBUG, errors and 401s
included), a result, a dead letter, its headers or a metric; nor when a config is bad."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.registry import SERVICES

from .harness import (
    ACCT_A,
    CREDENTIALS,
    ROOT,
    TOKEN_A,
    TOKEN_B,
    Run,
    create_topics,
    eventually,
    free_port,
    order_topics,
    produce,
    read_all,
    sandbox_config,
    wait_ready,
)

REVOKED = "6f1c2d3e-00ff-4a5b-8c9d-0000000000ff"  # an account whose token M2E refuses (401)
SECRETS = {
    "m2e token a": TOKEN_A,
    "m2e token b": TOKEN_B,
    "revoked m2e token": "revoked-secret-token-5d1e",
    "redis password": "redis-secret-pass-8c2f",
    "redis key secret": "redis-hmac-secret-3b7a",
    "sasl password": "sasl-secret-pass-e91c",
    "ssl key password": "sslkey-secret-pass-07aa",
}


def leaks(text: str) -> list[str]:
    return [name for name, secret in SECRETS.items() if secret in text]


@pytest.fixture
def secured_redis() -> Iterator[str]:
    """A redis-server of this test's own that asks for a password: the URL carries it."""
    port = free_port()
    password = SECRETS["redis password"]
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    redis = subprocess.Popen(
        [*argv, "--requirepass", password], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    yield f"redis://:{password}@127.0.0.1:{port}/0"
    redis.terminate()
    redis.wait()


async def test_no_secret_in_logs_results_dead_letters_or_metrics(
    bootstrap_servers: str, sandbox_server: Any, secured_redis: str, tmp_path: Path, workers: Any
) -> None:
    sandbox = await sandbox_server(sandbox_config())
    creds = tmp_path / "credentials.yaml"
    creds.write_text(
        "".join(f"{k}: {v}\n" for k, v in CREDENTIALS.items())
        + f"{REVOKED}: {SECRETS['revoked m2e token']}\n"
    )
    shared = {
        "redis_url": secured_redis,
        "redis_key_secret": SECRETS["redis key secret"],
        "rate_limit_enabled": "true",
        "kafka_sasl_password": SECRETS["sasl password"],
        "kafka_ssl_key_password": SECRETS["ssl key password"],
        "auth_backoff_s": 1,
        "log_level": "DEBUG",
        "invoice_url_allowlist": "files.example.com",
    }
    procs, topics, expected = [], {}, {}
    for name, spec in SERVICES.items():
        extra = dict(shared)
        if name == "order-poller":
            topic, extra["orders_topic"], extra["order_cursor_topic"] = await order_topics(
                bootstrap_servers
            )
            extra["order_transactional_id"] = f"it-secrets-{uuid.uuid4().hex[:6]}"
        else:
            topic = await create_topics(bootstrap_servers, spec.topic)
        run = Run(bootstrap_servers, sandbox.base_url, topic, creds)
        procs.append(workers(name, run.env(**extra), name))
        events = spec.samples(12, ACCT_A)
        topics[name], expected[name] = topic, len(events)
        if name == "variant-sync":  # and some for the account M2E answers 401 for
            events = events + spec.samples(3, REVOKED)
        await produce(bootstrap_servers, topic, events)
    await wait_ready(*procs, timeout_s=90)

    seen: list[str] = []
    for name, topic in topics.items():
        for suffix in (".results", ".dlq"):
            want = expected[name] if suffix == ".results" else 0
            for r in await read_all(bootstrap_servers, topic + suffix, want, timeout_s=90):
                seen.append(repr((r.key, r.value, r.headers)))
    await eventually(  # the revoked account has been refused a few times by now
        lambda: sum(p.metric("m2e_sync_api_auth_failures_total") for p in procs) >= 2,
        timeout_s=30,
    )
    for proc in procs:
        seen.append(httpx.get(f"http://127.0.0.1:{proc.port}/metrics", timeout=5).text)
    for proc in procs:
        proc.signal(15)
        await proc.wait()
        seen.append(proc.log())
    assert "401" in "".join(seen) or "auth" in "".join(seen)  # the error paths did log
    assert leaks("\n".join(seen)) == []


def test_a_bad_config_does_not_print_a_secret(tmp_path: Path) -> None:
    creds = tmp_path / "credentials.yaml"
    creds.write_text(f"{ACCT_A}: {TOKEN_A}\n  - {SECRETS['revoked m2e token']}: [\n")
    for service in SERVICES:
        done = subprocess.run(
            [sys.executable, "-m", "services.cli", "run", service],
            cwd=ROOT,
            env={
                "PATH": "/usr/bin:/bin",
                "M2E_CREDENTIALS_FILE": str(creds),
                "REDIS_URL": f"redis://:{SECRETS['redis password']}@127.0.0.1:1/0",
                "KAFKA_SASL_PASSWORD": SECRETS["sasl password"],
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 1, (service, done.stderr[-2000:])
        assert "M2E_CREDENTIALS_FILE" in done.stderr
        assert leaks(done.stdout + done.stderr) == [], service
