"""Fixtures shared by every test: where the real stack is."""

from __future__ import annotations

import os

import pytest

# The real stack's fixtures (sandbox_server, workers, new_topic), for every suite that needs them.
pytest_plugins = ["tests.integration.fixtures"]


@pytest.fixture(scope="session")
def bootstrap_servers() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
