"""The v4 API's endpoints, each on one user's state (the middleware found the user)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from bisect import bisect_left
from typing import Any

from aiohttp import web

from m2e_sandbox.orders import rfc3339
from m2e_sandbox.state import ITEMS, USER, UserState, sandbox_of
from m2e_sandbox.validation import (
    BadRequest,
    api_error,
    batch_items,
    batch_response,
    read_json,
    run_batch,
    validate_body,
)
from shared.m2e.models import (
    CatalogFindRequest,
    InvoiceUpload,
    OrdersFindRequest,
    ProductCreate,
    ProductDelete,
    ProductUpdate,
    VariantUpdate,
)

API_BASE = "/api/v1/api"


def _user(request: web.Request) -> UserState:
    return request[USER]


async def create_products(request: web.Request) -> web.Response:
    sandbox, catalog = sandbox_of(request), _user(request).catalog
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
    sandbox, catalog = sandbox_of(request), _user(request).catalog
    raw = batch_items(await read_json(request), "products")
    applied, errors = run_batch(sandbox, raw, ProductUpdate, catalog.check_update, catalog.update)
    request[ITEMS] = applied
    return batch_response(applied, errors, "updated", sandbox.config.validation.reject_whole_batch)


async def update_variants(request: web.Request) -> web.Response:
    sandbox, catalog = sandbox_of(request), _user(request).catalog
    raw = batch_items(await read_json(request), "variants")
    applied, errors = run_batch(
        sandbox, raw, VariantUpdate, catalog.check_variant_update, catalog.update_variant
    )
    request[ITEMS] = applied
    return batch_response(applied, errors, "updated", sandbox.config.validation.reject_whole_batch)


async def delete_products(request: web.Request) -> web.Response:
    sandbox, catalog = sandbox_of(request), _user(request).catalog
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
            [api_error("validation_error", "sku: query parameter is required", {"field": "sku"})]
        )
    product = _user(request).catalog.get(sku)
    if product is None:
        raise BadRequest([api_error("not_found", "Entity is not found.", {"sku": sku})], status=404)
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
    sandbox, user = sandbox_of(request), _user(request)
    missing = [p for p in ("channel", "account_token") if not request.query.get(p)]
    if missing:
        raise BadRequest(
            [
                api_error("validation_error", f"{p}: query parameter is required", {"field": p})
                for p in missing
            ]
        )
    channel, token = request.query["channel"], request.query["account_token"]
    if token not in user.account_tokens or not sandbox.orders.has_account(token, channel):
        raise BadRequest(
            [
                api_error(
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
        # Orders are in sale-date order: the date range is two binary searches (a poller
        # pages through 200,000 orders with the same filter).
        start = bisect_left(orders, lo, key=_sale_date) if lo is not None else 0
        end = bisect_left(orders, hi, key=_sale_date) if hi is not None else len(orders)
        orders = orders[start:end]
        if statuses is not None:
            orders = [o for o in orders if o["status"] in statuses]
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


def _sale_date(order: dict[str, Any]) -> str:
    return str(order["sale_date"])


async def upload_invoice(request: web.Request) -> web.Response:
    sandbox, user = sandbox_of(request), _user(request)
    invoice = validate_body(InvoiceUpload, await read_json(request))
    try:
        pdf = base64.b64decode(invoice.invoice_data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(
            [
                api_error(
                    "validation_error", "invoice_data: not valid base64", {"field": "invoice_data"}
                )
            ]
        ) from exc
    if not pdf.startswith(b"%PDF-"):
        raise BadRequest(
            [
                api_error(
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
            [api_error("not_found", "Entity is not found.", {"order_id": invoice.order_id})],
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
    # ASSUMPTION (README, assumptions): the reference leaves the response body empty; we
    # answer with what was stored, and the workers read only the status code.
    return web.json_response(
        {
            "order_id": invoice.order_id,
            "invoice_number": invoice.invoice_number,
            "status": "uploaded",
        }
    )


async def list_accounts(request: web.Request) -> web.Response:
    sandbox, user = sandbox_of(request), _user(request)
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


def routes() -> list[web.RouteDef]:
    return [
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
