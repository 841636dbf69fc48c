"""A sandbox on a real loopback port, with a clock the test moves by hand."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp.test_utils import TestServer

from m2e_sandbox import API_BASE, Sandbox, SandboxConfig, create_app
from m2e_sandbox.app import SANDBOX
from m2e_sandbox.config import DEMO_CONFIG_YAML

TOKEN = "demo-access-token-0001"
OTHER_TOKEN = "demo-access-token-0002"
EBAY = "6f1c2d3e-0001-4a5b-8c9d-000000000001"
AMAZON = "6f1c2d3e-0002-4a5b-8c9d-000000000002"
KAUFLAND = "6f1c2d3e-0003-4a5b-8c9d-000000000003"

# The reference pages sit beside the repo (../shared/reference) where it is developed and in
# CI; a copy of the example is kept for clones without them, and checked against the page.
REFERENCE_PAGE = (
    Path(__file__).resolve().parents[4] / "shared" / "reference" / "m2e-catalog-product-create.md"
)
VENDORED_EXAMPLE = Path(__file__).with_name("reference_create_example.json")


def example_from_page() -> list[dict[str, Any]] | None:
    if not REFERENCE_PAGE.exists():
        return None
    text = REFERENCE_PAGE.read_text()
    start = text.index("Request examples") + len("Request examples")
    end = text.index("Response examples", start)
    return json.loads(text[start:end])  # type: ignore[no-any-return]


def reference_create_example() -> list[dict[str, Any]]:
    """The request example of the reference's catalog-create page."""
    return example_from_page() or json.loads(VENDORED_EXAMPLE.read_text())  # type: ignore[no-any-return]


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def demo_config(**overrides: Any) -> SandboxConfig:
    raw = yaml.safe_load(DEMO_CONFIG_YAML)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return SandboxConfig.model_validate(copy.deepcopy(raw))


class Api:
    """The sandbox under test: an httpx client on the API base, plus admin access."""

    def __init__(self, client: httpx.AsyncClient, sandbox: Sandbox, clock: FakeClock) -> None:
        self.http = client
        self.sandbox = sandbox
        self.clock = clock

    async def call(
        self, method: str, path: str, body: Any = None, token: str | None = TOKEN, **kw: Any
    ) -> httpx.Response:
        headers = {"access-token": token} if token is not None else {}
        if body is not None:
            kw["content"] = json.dumps(body)
            headers["content-type"] = "application/json"
        return await self.http.request(method, API_BASE + path, headers=headers, **kw)

    async def admin(self, method: str, path: str, body: Any = None) -> httpx.Response:
        if body is None and method in ("POST", "PUT"):
            body = {}  # admin changes need a JSON body
        return await self.http.request(method, "/_sandbox" + path, json=body)


SandboxFactory = Callable[..., Awaitable[Api]]


@pytest.fixture
async def make_api() -> AsyncIterator[SandboxFactory]:
    servers: list[TestServer] = []
    clients: list[httpx.AsyncClient] = []

    async def make(
        config: SandboxConfig | None = None,
        clock: FakeClock | None = None,
        http_timeout: float = 10.0,
    ) -> Api:
        clock = clock or FakeClock()
        app = create_app(config or demo_config(), clock=clock)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        client = httpx.AsyncClient(base_url=str(server.make_url("")), timeout=http_timeout)
        clients.append(client)
        return Api(client, app[SANDBOX], clock)

    yield make
    for client in clients:
        await client.aclose()
    for server in servers:
        await server.close()


@pytest.fixture
async def api(make_api: SandboxFactory) -> Api:
    return await make_api()
