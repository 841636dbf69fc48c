"""The worker image, built with podman and run against the real stack (make test starts it)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/image" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
