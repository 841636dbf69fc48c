"""The worker image as deployed: built from the Dockerfile, run as uid 10001 on a
read-only root filesystem with a tmpfs /tmp and every capability dropped, against the
host's Kafka, Redis and sandbox. Probes answer, /metrics exports every documented metric,
variant-sync and product-sync do a real round trip, SIGTERM ends each worker with exit 0
within its grace period, and `tick` runs once like the CronJob."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from m2e_devtools import image as images
from m2e_devtools.stack import StackError
from services.registry import SERVICES
from shared.metrics import Metrics
from tests.integration.harness import (
    ACCT_A,
    TOKEN_A,
    create_topics,
    eventually,
    free_port,
    order_topics,
    produce,
    read_all,
    sandbox_config,
    update,
    write_credentials,
)

GRACE_S = 10


@pytest.fixture(scope="module")
def image() -> str:
    try:
        images.ensure_engine()
    except StackError as exc:
        pytest.skip(f"no container engine can run here: {exc}")
    started = time.monotonic()
    tag = images.build_image("localhost/m2e-sync:test")
    print(
        f"\nimage {tag}: {images.image_size(tag) / 1e6:.0f} MB, "
        f"built in {time.monotonic() - started:.0f} s"
    )
    return tag


def config_dir(tmp: Path) -> Path:
    """The credentials, in a directory uid 10001 may read (a mounted Secret is 0644)."""
    config = tmp / "config"
    config.mkdir()
    write_credentials(config)
    for path, mode in ((tmp, 0o755), (config, 0o755), (config / "credentials.yaml", 0o644)):
        path.chmod(mode)
    return config


def run_args(name: str, config: Path, env: dict[str, Any]) -> list[str]:
    """`podman run` as the chart runs a pod: uid 10001, read-only, no capabilities."""
    args = ["run", "-d", "--name", name, "--network", "host", "--read-only"]
    args += ["--tmpfs", "/tmp", "--user", "10001", "--cap-drop", "ALL"]
    args += ["-v", f"{config}:/config:ro"]
    for key, value in env.items():
        args += ["-e", f"{key.upper()}={value}"]
    return args


def documented_metrics() -> set[str]:
    return {family.name for family in Metrics("any").registry.collect()}


async def start_worker(
    image: str, service: str, config: Path, bootstrap: str, base_url: str, topic: str, **env: Any
) -> tuple[str, int, float]:
    name, port = f"m2e-test-{service}-{uuid.uuid4().hex[:6]}", free_port()
    settings = {
        "kafka_bootstrap_servers": bootstrap,
        "m2e_base_url": base_url,
        "m2e_credentials_file": "/config/credentials.yaml",
        "kafka_input_topic": topic,
        "kafka_group_id": f"img-{uuid.uuid4().hex[:8]}",
        "http_port": port,
        "http_host": "127.0.0.1",
        "batch_linger_ms": 200,
        "commit_interval_ms": 200,
        "rate_limit_enabled": "false",
        "shutdown_grace_s": GRACE_S,
        **env,
    }
    started = time.monotonic()
    images.podman(*run_args(name, config, settings), image, "run", service)

    async def ready() -> bool:
        try:
            async with httpx.AsyncClient() as http:
                return (
                    await http.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                ).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        await eventually(ready, timeout_s=90)
    except BaseException:
        print(images.podman("logs", name, check=False).stderr[-3000:])
        raise
    return name, port, time.monotonic() - started


async def stop_worker(name: str) -> tuple[int, float, str]:
    """SIGTERM, as Kubernetes sends it: (exit code, seconds to exit, the log's tail)."""
    started = time.monotonic()
    images.podman("kill", "--signal", "TERM", name)
    code = await asyncio.to_thread(images.wait_gone, name, GRACE_S + 20)
    elapsed = time.monotonic() - started
    log = images.podman("logs", name, check=False).stderr[-2000:]
    images.podman("rm", "-f", name, check=False)
    return code, elapsed, log


async def test_every_worker_runs_in_the_image_as_deployed(
    image: str, bootstrap_servers: str, sandbox_server: Any, tmp_path: Path
) -> None:
    sandbox = await sandbox_server(sandbox_config())
    await sandbox.seed_variants(TOKEN_A, ["IMG-V1", "IMG-V2"])
    config = config_dir(tmp_path)
    names: list[str] = []
    try:
        for service, spec in SERVICES.items():
            env: dict[str, Any] = {}
            if service == "order-poller":
                topic, env["orders_topic"], env["order_cursor_topic"] = await order_topics(
                    bootstrap_servers
                )
                env["order_transactional_id"] = f"img-{uuid.uuid4().hex[:6]}"
            else:
                topic = await create_topics(bootstrap_servers, spec.topic)
            name, port, ready_s = await start_worker(
                image, service, config, bootstrap_servers, sandbox.base_url, topic, **env
            )
            names.append(name)
            print(f"{service}: ready {ready_s:.1f} s after `podman run`")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                assert (await http.get("/healthz")).status_code == 200
                metrics = (await http.get("/metrics")).text
                missing = {m for m in documented_metrics() if f"# TYPE {m}" not in metrics}
                assert not missing, (service, missing)
                assert (await http.get("/asyncapi")).status_code == 200
            if service == "variant-sync":
                await produce(bootstrap_servers, topic, [update(ACCT_A, "IMG-V1", price=7.5)])
                [result] = await read_all(bootstrap_servers, f"{topic}.results", 1)
                assert json.loads(result.value)["status"] == "ok"
                assert sandbox.variant(TOKEN_A, "IMG-V1")["price"] == 7.5  # type: ignore[index]
            if service == "product-sync":
                product = {
                    "sku": "IMG-P1",
                    "status": 1,
                    "is_simple": True,
                    "currency": "EUR",
                    "title": "Made in the image",
                    "images": [],
                    "variants": [{"sku": "IMG-P1", "barcode": None, "price": 3.0, "quantity": 2}],
                }
                event = {"account_token": ACCT_A, "source": "m2e", "product": product}
                await produce(bootstrap_servers, topic, [("IMG-P1", event)])
                [result] = await read_all(bootstrap_servers, f"{topic}.results", 1)
                assert json.loads(result.value)["status"] == "ok", result.value
                assert sandbox.sandbox.users[TOKEN_A].catalog.get("IMG-P1") is not None
        for name in list(names):
            code, took, log = await stop_worker(name)
            names.remove(name)
            assert code == 0 and took < GRACE_S, (name, code, took, log)
    finally:
        for name in names:
            images.podman("rm", "-f", name, check=False)


def test_the_image_holds_no_sandbox_no_developer_tools_and_no_aiohttp(image: str) -> None:
    probe = "import importlib.util as u; print(*[m for m in {} if u.find_spec(m)])".format(
        ("aiohttp", "m2e_sandbox", "m2e_devtools", "tests", "shared", "services")
    )
    found = images.podman("run", "--rm", "--entrypoint", "python3", image, "-c", probe)
    assert found.stdout.split() == ["shared", "services"]


async def test_tick_runs_once_like_the_cronjob(
    image: str, bootstrap_servers: str, sandbox_server: Any, tmp_path: Path
) -> None:
    sandbox = await sandbox_server(sandbox_config())
    config = config_dir(tmp_path)
    topic = await create_topics(bootstrap_servers, "order-poll-ticks")
    env = {
        "kafka_bootstrap_servers": bootstrap_servers,
        "m2e_base_url": sandbox.base_url,
        "m2e_credentials_file": "/config/credentials.yaml",
        "tick_accounts": f"ebay:{ACCT_A}",
    }
    name = f"m2e-test-tick-{uuid.uuid4().hex[:6]}"
    images.podman(*run_args(name, config, env), image, "tick", "--topic", topic)
    try:
        code = await asyncio.to_thread(images.wait_gone, name, 60)
        assert code == 0, images.podman("logs", name, check=False).stderr[-2000:]
        [tick] = await read_all(bootstrap_servers, topic, 1)
        assert tick.key == f"ebay:{ACCT_A}".encode()
    finally:
        images.podman("rm", "-f", name, check=False)
