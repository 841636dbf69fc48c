"""Integration tests run against the real broker and Redis that `make test` starts.

They never skip: an unreachable stack is an error, so a green run proves they ran.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
