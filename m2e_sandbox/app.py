"""The M2E sandbox's HTTP application: the v4 API under /api/v1/api, admin under /_sandbox.

    app = create_app(load_config(path))      # an aiohttp Application

`state` holds what the sandbox remembers, `validation` the request and error shapes,
`api` the endpoints, `middleware` auth, faults and the rate limit in front of them, and
`admin` the control API.
"""

from __future__ import annotations

import time

from aiohttp import web

from m2e_sandbox import admin, api
from m2e_sandbox.api import API_BASE
from m2e_sandbox.config import SandboxConfig
from m2e_sandbox.middleware import (
    ADMIN_HOSTS,
    ADMIN_HOSTS_KEY,
    abort_middleware,
    admin_middleware,
    api_middleware,
)
from m2e_sandbox.state import SANDBOX, Sandbox
from shared.clock import Clock

MAX_BODY_BYTES = 64 * 1024 * 1024

__all__ = ["API_BASE", "SANDBOX", "Sandbox", "create_app"]


def create_app(
    config: SandboxConfig, clock: Clock = time.time, bind_host: str | None = None
) -> web.Application:
    """`bind_host`: the address the server listens on; the admin API also answers to it."""
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=[abort_middleware, admin_middleware, api_middleware],
    )
    app[SANDBOX] = Sandbox(config, clock)
    app[ADMIN_HOSTS_KEY] = ADMIN_HOSTS | ({bind_host.lower()} if bind_host else set())
    app.add_routes(api.routes() + admin.routes())
    return app
