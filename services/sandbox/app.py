"""The M2E sandbox's HTTP application: the v4 API under /api/v1/api, admin under /_sandbox.

Every API request passes, in order: auth (`access-token` header) → injected faults
(latency, reset, timeout, throttle) → the per-access-token rate limit → injected 500s →
the endpoint. Responses past auth carry `X-RateLimit-Limit/-Remaining/-Retry-After`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import socket
import struct
import time
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from services.sandbox.catalog import Catalog, ItemError, new_seen
from services.sandbox.config import FaultConfig, RateLimitConfig, SandboxConfig, UserConfig
from services.sandbox.faults import Fault, FaultDice
from services.sandbox.orders import OrderBook, rfc3339
from services.sandbox.ratelimit import Clock, Decision, FixedWindowLimiter
from shared.m2e.models import (
    MAX_BATCH_ITEMS,
    CatalogFindRequest,
    InvoiceUpload,
    OrdersFindRequest,
    ProductCreate,
    ProductDelete,
    ProductUpdate,
    VariantUpdate,
)

API_BASE = "/api/v1/api"
MAX_BODY_BYTES = 64 * 1024 * 1024
REQUEST_LOG_SIZE = 200_000
THROTTLE_FAULT_RETRY_S = 1.0  # Retry-After of an injected 429
M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Abort(Exception):
    """The connection was reset or dropped on purpose: send nothing."""


@dataclass(slots=True)
class UserState:
    config: UserConfig
    catalog: Catalog
    invoices: list[dict[str, Any]] = field(default_factory=list)

    @property
    def account_tokens(self) -> list[str]:
        return [str(a.token) for a in self.config.accounts]


@dataclass(slots=True)
class Stats:
    requests: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    items: Counter[str] = field(default_factory=Counter)
    log: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=REQUEST_LOG_SIZE))

    def record(
        self,
        at: float,
        user: str | None,
        route: str,
        status: int,
        items: int,
        window: float | None = None,
    ) -> None:
        """`window`: the start of the rate-limit window the request counted in, if it did."""
        self.requests[route][str(status)] += 1
        if 200 <= status < 300 and items:
            self.items[route] += items
        self.log.append(
            {
                "t": at,
                "user": user,
                "route": route,
                "status": status,
                "items": items,
                "window": window,
            }
        )


class Sandbox:
    """All state of one sandbox: users' catalogs, invoices, orders, limits, faults, stats."""

    def __init__(self, config: SandboxConfig, clock: Clock = time.time) -> None:
        self.config = config
        self.clock = clock
        self.limiter = FixedWindowLimiter(config.rate_limit, clock)
        self.dice = FaultDice(config.faults)
        self.reset()

    def reset(self) -> None:
        self.users = {
            u.access_token: UserState(config=u, catalog=Catalog(self.clock))
            for u in self.config.users
        }
        accounts = [(str(a.token), a.channel) for u in self.config.users for a in u.accounts]
        self.origin = self.clock()
        self.orders = OrderBook(self.config.orders, accounts, origin=self.origin, clock=self.clock)
        self.limiter.reset()
        self.stats = Stats()
        self.dice.restart()

    @property
    def faults(self) -> FaultConfig:
        return self.dice.config

    def set_faults(self, faults: FaultConfig) -> None:
        self.dice = FaultDice(faults)


SANDBOX = web.AppKey("sandbox", Sandbox)
USER = web.RequestKey("user", UserState)
ITEMS = web.RequestKey("items", int)  # items the request carried, for stats


# --------------------------------------------------------------------------- responses


def _error(
    code: str, message: str, data: dict[str, Any] | list[Any] | None = None
) -> dict[str, Any]:
    return {"code": code, "message": message, "data": {} if data is None else data}


def error_response(status: int, errors: list[dict[str, Any]]) -> web.Response:
    return web.json_response(errors, status=status)


def _rate_headers(decision: Decision, retry_at: float | None = None) -> dict[str, str]:
    reset = decision.reset_at if retry_at is None else retry_at
    # Round up so a client that waits until the stated second is never early.
    return {
        "X-RateLimit-Limit": str(decision.limit),
        "X-RateLimit-Remaining": str(decision.remaining),
        "X-RateLimit-Retry-After": rfc3339(float(int(reset) + (reset % 1 > 0))),
    }


class BadRequest(Exception):
    def __init__(self, errors: list[dict[str, Any]], status: int = 400) -> None:
        super().__init__(errors[0]["message"] if errors else "bad request")
        self.errors = errors
        self.status = status


def _reject_constant(value: str) -> Any:
    raise ValueError(f"{value} is not valid JSON")


async def read_json(request: web.Request, *, required: bool = True) -> Any:
    raw = await request.read()
    if not raw.strip():
        if required:
            raise BadRequest([_error("validation_error", "request body is required")])
        return {}
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(
            [_error("validation_error", f"request body is not valid JSON: {exc}")]
        ) from exc


def field_path(loc: Iterable[int | str]) -> str:
    """('variants', 0, 'price') → 'variants[0].price'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(body)"


def item_errors(index: int, exc: ValidationError) -> list[ItemError]:
    return [ItemError(index, field_path(e["loc"]), e["msg"]) for e in exc.errors()]


def validate_body(model: type[M], body: Any) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise BadRequest(
            [
                _error(
                    "validation_error",
                    f"{field_path(e['loc'])}: {e['msg']}",
                    {"field": field_path(e["loc"])},
                )
                for e in exc.errors()
            ]
        ) from exc


def batch_items(body: Any, container: str | None) -> list[Any]:
    """The item list of a batch body: the body itself, or `body[container]`."""
    where = "request body" if container is None else container
    if container is not None:
        if not isinstance(body, dict):
            raise BadRequest([_error("validation_error", "request body must be an object")])
        if container not in body:
            raise BadRequest(
                [_error("validation_error", f"{container}: Field required", {"field": container})]
            )
        body = body[container]
    if not isinstance(body, list):
        raise BadRequest([_error("validation_error", f"{where} must be an array")])
    if not 1 <= len(body) <= MAX_BATCH_ITEMS:
        raise BadRequest(
            [
                _error(
                    "validation_error",
                    f"{where} has {len(body)} items; 1 to {MAX_BATCH_ITEMS} are accepted",
                    {"items": len(body), "max_items": MAX_BATCH_ITEMS},
                )
            ]
        )
    return body


def run_batch(
    sandbox: Sandbox,
    raw_items: list[Any],
    model: type[M],
    check: Callable[[int, M, Any], ItemError | None],
    apply: Callable[[M], None],
) -> tuple[int, list[ItemError]]:
    """Validate every item, check it against the state, apply (all, or the valid ones)."""
    seen = new_seen()
    valid: list[M] = []
    errors: list[ItemError] = []
    for index, raw in enumerate(raw_items):
        try:
            item = model.model_validate(raw)
        except ValidationError as exc:
            errors += item_errors(index, exc)
            continue
        problem = check(index, item, seen)
        if problem is not None:
            errors.append(problem)
        else:
            valid.append(item)
    if errors and sandbox.config.validation.reject_whole_batch:
        return 0, errors
    for item in valid:
        apply(item)
    return len(valid), errors


def batch_response(
    applied: int, errors: list[ItemError], count_key: str, whole: bool
) -> web.Response:
    if errors and whole:
        status = 404 if all(e.code == "not_found" for e in errors) else 400
        summary = _error(
            "validation_error" if status == 400 else "not_found",
            "All array items must match schema" if status == 400 else "Entity is not found.",
            {"invalid_items": sorted({e.index for e in errors})},
        )
        return error_response(status, [summary, *(e.to_api() for e in errors)])
    body: dict[str, Any] = {count_key: applied}
    if errors:  # partial mode: the valid items were applied
        body["errors"] = [e.to_api() for e in errors]
    return web.json_response(body)


# --------------------------------------------------------------------------- API handlers


def _user(request: web.Request) -> UserState:
    return request[USER]


def _sandbox(request: web.Request) -> Sandbox:
    return request.app[SANDBOX]


async def create_products(request: web.Request) -> web.Response:
    sandbox, catalog = _sandbox(request), _user(request).catalog
    raw = batch_items(await read_json(request), None)
    applied, errors = run_batch(sandbox, raw, ProductCreate, catalog.check_create, catalog.create)
    request[ITEMS] = applied
    return batch_response(
        applied,
        errors,
        sandbox.config.create_response_key,
        sandbox.config.validation.reject_whole_batch,
    )


async def update_products(request: web.Request) -> web.Response:
    sandbox, catalog = _sandbox(request), _user(request).catalog
    raw = batch_items(await read_json(request), "products")
    applied, errors = run_batch(sandbox, raw, ProductUpdate, catalog.check_update, catalog.update)
    request[ITEMS] = applied
    return batch_response(applied, errors, "updated", sandbox.config.validation.reject_whole_batch)


async def update_variants(request: web.Request) -> web.Response:
    sandbox, catalog = _sandbox(request), _user(request).catalog
    raw = batch_items(await read_json(request), "variants")
    applied, errors = run_batch(
        sandbox, raw, VariantUpdate, catalog.check_variant_update, catalog.update_variant
    )
    request[ITEMS] = applied
    return batch_response(applied, errors, "updated", sandbox.config.validation.reject_whole_batch)


async def delete_products(request: web.Request) -> web.Response:
    sandbox, catalog = _sandbox(request), _user(request).catalog
    raw = batch_items(await read_json(request), None)
    applied, errors = run_batch(
        sandbox,
        raw,
        ProductDelete,
        lambda i, item, seen: catalog.check_delete(i, item.sku, seen),
        lambda item: catalog.delete(item.sku),
    )
    request[ITEMS] = applied
    return batch_response(applied, errors, "deleted", sandbox.config.validation.reject_whole_batch)


async def get_product(request: web.Request) -> web.Response:
    sku = request.query.get("sku")
    if not sku:
        raise BadRequest(
            [_error("validation_error", "sku: query parameter is required", {"field": "sku"})]
        )
    product = _user(request).catalog.get(sku)
    if product is None:
        raise BadRequest([_error("not_found", "Entity is not found.", {"sku": sku})], status=404)
    request[ITEMS] = 1
    return web.json_response(product)


async def find_products(request: web.Request) -> web.Response:
    find = validate_body(CatalogFindRequest, await read_json(request, required=False))
    found, total = _user(request).catalog.find(find)
    # A find by SKU list is as large as the list it asked for.
    asked = find.filters.sku if find.filters is not None else None
    request[ITEMS] = len(asked) if isinstance(asked, list) else len(found)
    return web.json_response({"list": found, "total": total})


async def find_orders(request: web.Request) -> web.Response:
    sandbox, user = _sandbox(request), _user(request)
    missing = [p for p in ("channel", "account_token") if not request.query.get(p)]
    if missing:
        raise BadRequest(
            [
                _error("validation_error", f"{p}: query parameter is required", {"field": p})
                for p in missing
            ]
        )
    channel, token = request.query["channel"], request.query["account_token"]
    if token not in user.account_tokens or not sandbox.orders.has_account(token, channel):
        raise BadRequest(
            [
                _error(
                    "not_found",
                    "Entity is not found.",
                    {"channel": channel, "account_token": token},
                )
            ],
            status=404,
        )
    find = validate_body(OrdersFindRequest, await read_json(request, required=False))
    orders = sandbox.orders.orders(token)
    f = find.filters
    if f is not None:
        lo = rfc3339(f.sale_date_from.timestamp()) if f.sale_date_from else None
        hi = rfc3339(f.sale_date_to.timestamp()) if f.sale_date_to else None
        statuses = set(f.status) if f.status is not None else None
        orders = [
            o
            for o in orders
            if (lo is None or o["sale_date"] >= lo)
            and (hi is None or o["sale_date"] < hi)
            and (statuses is None or o["status"] in statuses)
        ]
    if find.search:
        needle = find.search.lower()
        orders = [
            o
            for o in orders
            if needle in json.dumps(o["items"]).lower() or needle in o["order_id"].lower()
        ]
    # Orders are generated in sale-date order; ties keep generation order.
    if find.sort is not None and find.sort.direction == "desc":
        orders = orders[::-1]
    page = find.result
    offset, limit = (page.offset, page.limit) if page is not None else (0, 100)
    chunk = orders[offset : offset + limit]
    request[ITEMS] = len(chunk)
    return web.json_response({"list": chunk, "total": len(orders)})


async def upload_invoice(request: web.Request) -> web.Response:
    sandbox, user = _sandbox(request), _user(request)
    invoice = validate_body(InvoiceUpload, await read_json(request))
    try:
        pdf = base64.b64decode(invoice.invoice_data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(
            [
                _error(
                    "validation_error", "invoice_data: not valid base64", {"field": "invoice_data"}
                )
            ]
        ) from exc
    if not pdf.startswith(b"%PDF-"):
        raise BadRequest(
            [
                _error(
                    "validation_error",
                    "invoice_data: not a PDF document",
                    {"field": "invoice_data"},
                )
            ]
        )
    if sandbox.config.orders.require_known_order_for_invoice and (
        sandbox.orders.find_by_order_id(user.account_tokens, invoice.order_id) is None
    ):
        raise BadRequest(
            [_error("not_found", "Entity is not found.", {"order_id": invoice.order_id})],
            status=404,
        )
    record = invoice.model_dump(exclude={"invoice_data"})
    record |= {
        "size": len(pdf),
        "sha256": hashlib.sha256(pdf).hexdigest(),
        "uploaded_at": rfc3339(sandbox.clock()),
    }
    user.invoices.append(record)
    request[ITEMS] = 1
    # ASSUMPTION (DESIGN §9): the reference leaves the response body empty; we answer
    # with what was stored, and the workers read only the status code.
    return web.json_response(
        {
            "order_id": invoice.order_id,
            "invoice_number": invoice.invoice_number,
            "status": "uploaded",
        }
    )


async def list_accounts(request: web.Request) -> web.Response:
    sandbox, user = _sandbox(request), _user(request)
    # Accounts exist since the first generated order.
    created = rfc3339(sandbox.origin - sandbox.config.orders.history_days * 86400)
    accounts = [
        {
            "token": str(a.token),
            "channel": a.channel,
            "title": a.title or a.identifier,
            "identifier": a.identifier or str(a.token),
            "is_valid": True,
            "create_date": created,
        }
        for a in user.config.accounts
    ]
    request[ITEMS] = len(accounts)
    return web.json_response(accounts)


# --------------------------------------------------------------------------- middleware


async def _abort_connection(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:  # linger 0: the peer sees a reset, not a clean close
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    raise _Abort


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(API_BASE + "/"):
        return await handler(request)
    sandbox = _sandbox(request)
    route = f"{request.method} {request.path[len(API_BASE) :]}"
    token = request.headers.get("access-token")
    user = sandbox.users.get(token) if token else None
    if user is None:
        sandbox.stats.record(sandbox.clock(), None, route, 401, 0)
        return error_response(401, [_error("unauthorized", "Unauthorized")])
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
        headers = _rate_headers(
            sandbox.limiter.peek(user.config.access_token),
            retry_at=sandbox.clock() + THROTTLE_FAULT_RETRY_S,
        )
        sandbox.stats.record(sandbox.clock(), name, route, 429, 0)
        return web.json_response(
            [_error("too_many_requests", "Too many requests.")], status=429, headers=headers
        )
    decision = sandbox.limiter.hit(user.config.access_token)
    headers = _rate_headers(decision)
    if not decision.allowed:
        sandbox.stats.record(sandbox.clock(), name, route, 429, 0)
        return web.json_response(
            [_error("too_many_requests", "Too many requests.")], status=429, headers=headers
        )
    if fault is Fault.ERROR:
        sandbox.stats.record(sandbox.clock(), name, route, 500, 0, decision.window_start)
        return web.json_response(
            [_error("internal_error", "Internal server error.")], status=500, headers=headers
        )
    try:
        response = await handler(request)
    except BadRequest as exc:
        response = error_response(exc.status, exc.errors)
    except web.HTTPException as exc:  # unknown path, wrong method
        response = error_response(exc.status, [_error(str(exc.status), exc.reason)])
    response.headers.update(headers)
    sandbox.stats.record(
        sandbox.clock(), name, route, response.status, request.get(ITEMS, 0), decision.window_start
    )
    return response


@web.middleware
async def abort_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except _Abort:
        # The transport is gone; aiohttp must not try to answer.
        raise asyncio.CancelledError from None


# --------------------------------------------------------------------------- admin


async def admin_stats(request: web.Request) -> web.Response:
    stats = _sandbox(request).stats
    return web.json_response(
        {
            "requests": {route: dict(c) for route, c in stats.requests.items()},
            "items": dict(stats.items),
        }
    )


async def admin_requests(request: web.Request) -> web.Response:
    since = float(request.query.get("since", "0"))
    log = [r for r in _sandbox(request).stats.log if r["t"] >= since]
    return web.json_response({"requests": log})


async def admin_reset(request: web.Request) -> web.Response:
    _sandbox(request).reset()
    return web.json_response({"reset": True})


def _merge(model: type[M], current: BaseModel, body: Any) -> M:
    if not isinstance(body, dict):
        raise BadRequest([_error("validation_error", "request body must be an object")])
    return validate_body(model, {**current.model_dump(), **body})


async def admin_faults(request: web.Request) -> web.Response:
    sandbox = _sandbox(request)
    try:
        sandbox.set_faults(_merge(FaultConfig, sandbox.faults, await read_json(request)))
    except BadRequest as exc:
        return error_response(400, exc.errors)
    return web.json_response(sandbox.faults.model_dump())


async def admin_current_faults(request: web.Request) -> web.Response:
    return web.json_response(_sandbox(request).faults.model_dump())


async def admin_current_rate_limit(request: web.Request) -> web.Response:
    return web.json_response(_sandbox(request).limiter.config.model_dump())


async def admin_rate_limit(request: web.Request) -> web.Response:
    sandbox = _sandbox(request)
    try:
        limit = _merge(RateLimitConfig, sandbox.limiter.config, await read_json(request))
    except BadRequest as exc:
        return error_response(400, exc.errors)
    sandbox.limiter.configure(limit)
    return web.json_response(limit.model_dump())


async def admin_state(request: web.Request) -> web.Response:
    sandbox = _sandbox(request)
    users = {
        u.config.name: {
            "accounts": [{"token": str(a.token), "channel": a.channel} for a in u.config.accounts],
            "catalog": sorted(u.catalog.products.values(), key=lambda p: p["sku"]),
            "invoices": u.invoices,
        }
        for u in sandbox.users.values()
    }
    return web.json_response({"users": users})


def create_app(config: SandboxConfig, clock: Clock = time.time) -> web.Application:
    app = web.Application(
        client_max_size=MAX_BODY_BYTES, middlewares=[abort_middleware, api_middleware]
    )
    app[SANDBOX] = Sandbox(config, clock)
    api = [
        web.post(f"{API_BASE}/catalog/product/", create_products),
        web.patch(f"{API_BASE}/catalog/product/", update_products),
        web.delete(f"{API_BASE}/catalog/product/", delete_products),
        web.get(f"{API_BASE}/catalog/product/", get_product, allow_head=False),
        web.post(f"{API_BASE}/catalog/product/find/", find_products),
        web.patch(f"{API_BASE}/catalog/product/variant/", update_variants),
        web.post(f"{API_BASE}/order/find/", find_orders),
        web.post(f"{API_BASE}/order/invoice/", upload_invoice),
        web.get(f"{API_BASE}/user/accounts/", list_accounts, allow_head=False),
    ]
    admin = [
        web.get("/_sandbox/stats", admin_stats, allow_head=False),
        web.get("/_sandbox/requests", admin_requests, allow_head=False),
        web.get("/_sandbox/state", admin_state, allow_head=False),
        web.post("/_sandbox/reset", admin_reset),
        web.get("/_sandbox/faults", admin_current_faults, allow_head=False),
        web.put("/_sandbox/faults", admin_faults),
        web.get("/_sandbox/rate_limit", admin_current_rate_limit, allow_head=False),
        web.put("/_sandbox/rate_limit", admin_rate_limit),
    ]
    app.add_routes(api + admin)
    return app
