"""What every request passes before its endpoint.

The admin API (`/_sandbox/…`) answers only to a Host naming this machine (localhost, a
loopback address or the address it is bound to), so a web page that rebinds its own name
to 127.0.0.1 cannot read it; and its state-changing calls need a JSON body
(`Content-Type: application/json`), which a page cannot send across origins without the
browser asking first.

The API:

In order: auth (`access-token` header) → injected faults (latency, reset, timeout,
throttle) → the per-access-token rate limit → injected 500s → the endpoint. Responses
past auth carry `X-RateLimit-Limit/-Remaining/-Retry-After`.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable

from aiohttp import web

from m2e_sandbox.api import API_BASE
from m2e_sandbox.faults import Fault
from m2e_sandbox.state import ITEMS, USER, sandbox_of
from m2e_sandbox.validation import BadRequest, api_error, error_response, rate_headers

THROTTLE_FAULT_RETRY_S = 1.0  # Retry-After of an injected 429
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Abort(Exception):
    """The connection was reset or dropped on purpose: send nothing."""


async def _abort_connection(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:  # linger 0: the peer sees a reset, not a clean close
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    raise _Abort


def route_name(request: web.Request) -> str:
    """`METHOD /path` of a known route; one name for every unknown path, so that requests
    to unique paths cannot grow the stats without bound."""
    resource = request.match_info.route.resource
    if resource is None or request.match_info.http_exception is not None:
        return "(unknown route)"
    return f"{request.method} {resource.canonical[len(API_BASE) :]}"


ADMIN_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
ADMIN_HOSTS_KEY = web.AppKey("admin_hosts", frozenset)


def _host_name(header: str) -> str:
    """The name in a Host header, without its port ("[::1]:8765" → "::1")."""
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


@web.middleware
async def admin_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/_sandbox/"):
        return await handler(request)
    host = _host_name(request.headers.get("Host", "")).lower()
    if host not in request.app[ADMIN_HOSTS_KEY]:
        return error_response(403, [api_error("forbidden", "the admin API answers to localhost")])
    if request.method in ("POST", "PUT", "DELETE") and request.content_type != "application/json":
        return error_response(
            415, [api_error("unsupported_media_type", "admin changes need a JSON body")]
        )
    return await handler(request)


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(API_BASE + "/"):
        return await handler(request)
    sandbox = sandbox_of(request)
    route = route_name(request)
    token = request.headers.get("access-token")
    user = sandbox.users.get(token) if token else None
    if user is None or user.config.name in sandbox.revoked:
        sandbox.stats.record(sandbox.clock(), None, route, 401, 0)
        return error_response(401, [api_error("unauthorized", "Unauthorized")])
    request[USER] = user
    name = user.config.name
    faults = sandbox.faults
    if faults.latency_ms:
        await asyncio.sleep(faults.latency_ms / 1000)
    fault = sandbox.dice.roll(user.config.access_token, route)
    if fault is Fault.RESET:
        sandbox.stats.record(sandbox.clock(), name, route, 0, 0)
        await _abort_connection(request)
    if fault is Fault.TIMEOUT:
        sandbox.stats.record(sandbox.clock(), name, route, 0, 0)
        await asyncio.sleep(faults.timeout_hold_s)
        await _abort_connection(request)
    if fault is Fault.THROTTLE:
        headers = rate_headers(
            sandbox.limiter.peek(user.config.access_token),
            retry_at=sandbox.clock() + THROTTLE_FAULT_RETRY_S,
        )
        sandbox.stats.record(sandbox.clock(), name, route, 429, 0)
        return web.json_response(
            [api_error("too_many_requests", "Too many requests.")], status=429, headers=headers
        )
    if fault is Fault.HTML:  # a load balancer's page: the API never saw the request
        sandbox.stats.record(sandbox.clock(), name, route, 502, 0)
        return web.Response(
            status=502,
            body=b"<html><head><title>502 Bad Gateway</title></head><body>Bad Gateway</body></html>",
            content_type="text/html",
        )
    decision = sandbox.limiter.hit(user.config.access_token)
    headers = rate_headers(decision)
    if not decision.allowed:
        sandbox.stats.record(sandbox.clock(), name, route, 429, 0)
        return web.json_response(
            [api_error("too_many_requests", "Too many requests.")], status=429, headers=headers
        )
    if fault is Fault.ERROR:
        sandbox.stats.record(sandbox.clock(), name, route, 500, 0, decision.window_start)
        return web.json_response(
            [api_error("internal_error", "Internal server error.")], status=500, headers=headers
        )
    try:
        response = await handler(request)
    except BadRequest as exc:
        response = error_response(exc.status, exc.errors)
    except web.HTTPException as exc:  # unknown path, wrong method
        response = error_response(exc.status, [api_error(str(exc.status), exc.reason)])
    if fault is Fault.BAD_HEADERS:
        headers = {k: v for k, v in zip(headers, ("lots", "-", "tomorrow-ish"), strict=False)}
    response.headers.update(headers)
    sandbox.stats.record(
        sandbox.clock(), name, route, response.status, request.get(ITEMS, 0), decision.window_start
    )
    if fault is Fault.MALFORMED and isinstance(response, web.Response):
        # Applied, but what comes back is a gateway's page, not the API's JSON.
        return web.Response(
            status=response.status, body=b"<html><body>OK</body></html>", content_type="text/html"
        )
    if fault is Fault.TRUNCATED and isinstance(response, web.Response) and response.body:
        await _truncate(request, response)
    return response


async def _truncate(request: web.Request, response: web.Response) -> None:
    """Send half the body under the whole body's Content-Length, then drop the connection."""
    body = bytes(response.body)  # type: ignore[arg-type]
    cut = web.StreamResponse(status=response.status, headers=response.headers)
    cut.content_length = len(body)
    await cut.prepare(request)
    await cut.write(body[: len(body) // 2])
    await _abort_connection(request)


@web.middleware
async def abort_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except _Abort:
        # The transport is gone; aiohttp must not try to answer.
        raise asyncio.CancelledError from None
