"""Hostile inputs run against the real broker, like the integration tests."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/bad_input" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
