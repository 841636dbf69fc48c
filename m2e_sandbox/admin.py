"""The admin API outside the API path (`/_sandbox/…`): stats, request log, state, reset,
and the faults and rate limit read back or replaced at run time."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from m2e_sandbox.config import FaultConfig, RateLimitConfig
from m2e_sandbox.state import sandbox_of
from m2e_sandbox.validation import (
    BadRequest,
    M,
    api_error,
    error_response,
    read_json,
    validate_body,
)


async def admin_stats(request: web.Request) -> web.Response:
    stats = sandbox_of(request).stats
    return web.json_response(
        {
            "requests": {route: dict(c) for route, c in stats.requests.items()},
            "items": dict(stats.items),
        }
    )


async def admin_requests(request: web.Request) -> web.Response:
    since = float(request.query.get("since", "0"))
    log = [r for r in sandbox_of(request).stats.log if r["t"] >= since]
    return web.json_response({"requests": log})


async def admin_reset(request: web.Request) -> web.Response:
    sandbox_of(request).reset()
    return web.json_response({"reset": True})


def _merge(model: type[M], current: BaseModel, body: Any) -> M:
    if not isinstance(body, dict):
        raise BadRequest([api_error("validation_error", "request body must be an object")])
    return validate_body(model, {**current.model_dump(), **body})


async def admin_faults(request: web.Request) -> web.Response:
    sandbox = sandbox_of(request)
    try:
        sandbox.set_faults(_merge(FaultConfig, sandbox.faults, await read_json(request)))
    except BadRequest as exc:
        return error_response(400, exc.errors)
    return web.json_response(sandbox.faults.model_dump())


async def admin_current_faults(request: web.Request) -> web.Response:
    return web.json_response(sandbox_of(request).faults.model_dump())


async def admin_current_rate_limit(request: web.Request) -> web.Response:
    return web.json_response(sandbox_of(request).limiter.config.model_dump())


async def admin_rate_limit(request: web.Request) -> web.Response:
    sandbox = sandbox_of(request)
    try:
        limit = _merge(RateLimitConfig, sandbox.limiter.config, await read_json(request))
    except BadRequest as exc:
        return error_response(400, exc.errors)
    sandbox.limiter.configure(limit)
    return web.json_response(limit.model_dump())


async def admin_state(request: web.Request) -> web.Response:
    sandbox = sandbox_of(request)
    users = {
        u.config.name: {
            "accounts": [{"token": str(a.token), "channel": a.channel} for a in u.config.accounts],
            "catalog": sorted(u.catalog.products.values(), key=lambda p: p["sku"]),
            "invoices": u.invoices,
        }
        for u in sandbox.users.values()
    }
    return web.json_response({"users": users})


async def admin_access(request: web.Request) -> web.Response:
    """`PUT /_sandbox/users/{name}/access`, as a merchant does with its token:
    `{"revoked": true}` — the user's access token answers 401 until `{"revoked": false}`;
    `{"token": "<new access token>"}` — the token is rotated: the new one serves the same
    catalog, the old one answers 401. A reset keeps both."""
    sandbox = sandbox_of(request)
    name = request.match_info["name"]
    if name not in {u.config.name for u in sandbox.users.values()}:
        return error_response(404, [api_error("not_found", f"no user {name!r}")])
    try:
        body = await read_json(request)
    except BadRequest as exc:
        return error_response(400, exc.errors)
    body = body if isinstance(body, dict) else {}
    revoked, token = body.get("revoked"), body.get("token")
    if isinstance(token, str) and len(token) >= 8 and set(body) == {"token"}:
        if token in sandbox.users:
            return error_response(409, [api_error("conflict", "the token is another user's")])
        sandbox.rotate(name, token)
        return web.json_response({"user": name, "rotated": True})
    if not isinstance(revoked, bool) or set(body) != {"revoked"}:
        return error_response(
            400,
            [
                api_error(
                    "validation_error",
                    'body must be {"revoked": true|false} or {"token": "<8+ characters>"}',
                )
            ],
        )
    if revoked:
        sandbox.revoked.add(name)
    else:
        sandbox.revoked.discard(name)
    return web.json_response({"user": name, "revoked": revoked})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/_sandbox/stats", admin_stats, allow_head=False),
        web.get("/_sandbox/requests", admin_requests, allow_head=False),
        web.get("/_sandbox/state", admin_state, allow_head=False),
        web.post("/_sandbox/reset", admin_reset),
        web.get("/_sandbox/faults", admin_current_faults, allow_head=False),
        web.put("/_sandbox/faults", admin_faults),
        web.get("/_sandbox/rate_limit", admin_current_rate_limit, allow_head=False),
        web.put("/_sandbox/rate_limit", admin_rate_limit),
        web.put("/_sandbox/users/{name}/access", admin_access),
    ]
