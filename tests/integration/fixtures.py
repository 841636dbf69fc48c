"""Fixtures of the tests that run against the real stack (integration, bad_input): a
pytest plugin, registered in tests/conftest.py, so no test module imports another."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

TopicFactory = Callable[..., Awaitable[str]]


@pytest.fixture
async def new_topic(bootstrap_servers: str) -> AsyncIterator[TopicFactory]:
    """Create uniquely named topics for one test; delete them afterwards."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    made: list[str] = []

    async def make(prefix: str = "t", partitions: int = 1) -> str:
        name = f"test.{prefix}.{uuid.uuid4().hex[:10]}"
        await admin.create_topics([NewTopic(name, partitions, 1)])
        made.append(name)
        return name

    try:
        yield make
    finally:
        if made:
            await admin.delete_topics(made)
        await admin.close()


@pytest.fixture
async def sandbox_server() -> AsyncIterator[Any]:
    """Factory: a sandbox on a real port with the given config, closed after the test."""
    from tests.integration.harness import SandboxServer, sandbox_config

    servers: list[SandboxServer] = []

    async def make(config: Any = None) -> SandboxServer:
        server = SandboxServer(config or sandbox_config())
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.close()


@pytest.fixture
def workers(tmp_path: Any) -> Any:
    """Factory for worker processes; every one is killed at the end of the test."""
    from tests.integration.harness import WorkerProcess

    started: list[WorkerProcess] = []

    def start(service: str, env: dict[str, str], name: str = "w") -> WorkerProcess:
        proc = WorkerProcess(service, env, tmp_path, name)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop_now()
        print(proc.describe())  # shown only when the test failed
