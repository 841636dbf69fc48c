"""The OpenAPI 3.1 document of the M2E API as we reconstruct it (`schemas/m2e-openapi.yaml`).

Built from the same pydantic models the sandbox validates with and the workers send, so
the document, the sandbox and the client cannot disagree. Our assumptions where the
reference is silent carry `x-m2e-sync-assumption`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared.m2e import models as m

OPENAPI_PATH = Path(__file__).resolve().parents[2] / "schemas" / "m2e-openapi.yaml"
REF = "#/components/schemas/{model}"
DEMO_EBAY_ACCOUNT = "6f1c2d3e-0001-4a5b-8c9d-000000000001"  # the sandbox demo's eBay account

ASSUMPTIONS = {
    "ResultPage": "Paging of the find endpoints: `_result: {offset, limit}`, limit 1..500, default 100.",
    "CatalogSort": "Sort of catalog find: `{field: sku|title|update_date, direction: asc|desc}`.",
    "CatalogFilters": "Catalog find filters: `sku` (one or a list of product SKUs) and `status` names.",
    "OrderSort": "Sort of order find: `{field: sale_date, direction}`.",
    "OrderFilters": "Order find filters: `sale_date_from` (inclusive), `sale_date_to` (exclusive), `status` list.",
    "UploadInvoiceResponse": "The reference leaves the body empty; we answer `{order_id, invoice_number, status}`.",
    "RateLimit": "Fixed windows per access token; `X-RateLimit-Retry-After` is when the window resets.",
    "CreateConflict": "Creating an existing SKU fails that item (400, code `conflict`); updating or "
    "deleting an unknown SKU fails it with 404; a batch with any failed item is rejected whole.",
}


class UploadInvoiceResponse(BaseModel):
    order_id: str
    invoice_number: str
    status: str


class CountResponse(BaseModel):
    updated: int


class DeleteResponse(BaseModel):
    deleted: int


def _components() -> dict[str, Any]:
    pairs: list[tuple[type[BaseModel], Any]] = [
        (model, "validation")
        for model in (
            m.ProductCreate,
            m.ProductUpdate,
            m.ProductsUpdateRequest,
            m.VariantUpdate,
            m.VariantsUpdateRequest,
            m.ProductDelete,
            m.InvoiceUpload,
            m.CatalogFindRequest,
            m.OrdersFindRequest,
        )
    ] + [
        (model, "serialization")
        for model in (
            m.ApiError,
            m.CatalogProduct,
            m.CatalogFindResponse,
            m.CreateResponse,
            m.OrdersFindResponse,
            m.Order,
            m.Account,
            UploadInvoiceResponse,
            CountResponse,
            DeleteResponse,
        )
    ]
    _, schema = models_json_schema(pairs, ref_template=REF)
    defs: dict[str, Any] = schema["$defs"]
    for name, text in ASSUMPTIONS.items():
        if name in defs:
            defs[name]["x-m2e-sync-assumption"] = text
    defs["ErrorList"] = {
        "type": "array",
        "items": {"$ref": REF.format(model="ApiError")},
        "minItems": 1,
    }
    defs["CatalogProductsCreateRequest"] = _batch("ProductCreate")
    defs["CatalogProductsDeleteRequest"] = _batch("ProductDelete")
    defs["UserAccountsResponse"] = {"type": "array", "items": {"$ref": REF.format(model="Account")}}
    # The reference requires `created`, its example returns `deleted`: either may come.
    defs["CreateResponse"]["anyOf"] = [{"required": ["created"]}, {"required": ["deleted"]}]
    return defs


def _batch(item: str) -> dict[str, Any]:
    return {
        "type": "array",
        "items": {"$ref": REF.format(model=item)},
        "minItems": 1,
        "maxItems": m.MAX_BATCH_ITEMS,
    }


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": REF.format(model=name)}


RATE_HEADERS = {
    "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
    "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
    "X-RateLimit-Retry-After": {"$ref": "#/components/headers/X-RateLimit-Retry-After"},
}


def _responses(ok: str, description: str) -> dict[str, Any]:
    def err(desc: str, headers: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "description": desc,
            "content": {"application/json": {"schema": _ref("ErrorList")}},
        }
        if headers:
            out["headers"] = RATE_HEADERS
        return out

    return {
        "200": {
            "description": description,
            "headers": RATE_HEADERS,
            "content": {"application/json": {"schema": _ref(ok)}},
        },
        "400": err("Bad request"),
        "401": err("Unauthorized", headers=False),
        "404": err("Not found"),
        "429": err("Too many requests"),
        "500": err("Internal server error"),
    }


def _body(schema: str, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": _ref(schema)}}}


def _op(
    op_id: str,
    summary: str,
    ok: str,
    body: str | None = None,
    *,
    body_required: bool = True,
    params: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": op_id,
        "summary": summary,
        "responses": _responses(ok, summary),
    }
    if body is not None:
        op["requestBody"] = _body(body, body_required)
    if params:
        op["parameters"] = params
    return op


def _query(name: str, description: str, example: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": True,
        "description": description,
        "schema": {"type": "string", "minLength": 1},
        "example": example,
    }


def build() -> dict[str, Any]:
    header = {"schema": {"type": "number"}, "required": True}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "M2E Cloud Sales Channels API (as reconstructed by m2e-sync)",
            "version": "4.0",
            "description": "Reconstructed from the reference pages; where they are silent "
            "or contradict themselves, m2e-sync's assumptions are marked "
            "`x-m2e-sync-assumption`. The m2e-sync sandbox implements exactly this.",
            "x-m2e-sync-assumptions": ASSUMPTIONS,
        },
        "servers": [
            {"url": "https://m2e.cloud/api/v1/api", "description": "production"},
            {"url": "http://127.0.0.1:8765/api/v1/api", "description": "m2e-sync sandbox"},
        ],
        "security": [{"JWT": []}],
        "paths": {
            "/catalog/product/": {
                "post": _op(
                    "CatalogProductCreate",
                    "Creates products in catalog",
                    "CreateResponse",
                    "CatalogProductsCreateRequest",
                ),
                "patch": _op(
                    "catalogProductsUpdate",
                    "Update products in catalog",
                    "CountResponse",
                    "ProductsUpdateRequest",
                ),
                "delete": _op(
                    "CatalogProductDelete",
                    "Deletes products in catalog",
                    "DeleteResponse",
                    "CatalogProductsDeleteRequest",
                ),
                "get": _op(
                    "CatalogProductGet",
                    "Retrieve a catalog product by SKU",
                    "CatalogProduct",
                    params=[_query("sku", "The product's SKU.", "WBH-12345")],
                ),
            },
            "/catalog/product/find/": {
                "post": _op(
                    "CatalogProductsFind",
                    "Retrieve products by criteria",
                    "CatalogFindResponse",
                    "CatalogFindRequest",
                    body_required=False,
                ),
            },
            "/catalog/product/variant/": {
                "patch": _op(
                    "catalogProductsVariantsUpdate",
                    "Update variants in catalog",
                    "CountResponse",
                    "VariantsUpdateRequest",
                ),
            },
            "/order/find/": {
                "post": _op(
                    "OrdersFind",
                    "Retrieve orders by criteria",
                    "OrdersFindResponse",
                    "OrdersFindRequest",
                    body_required=False,
                    params=[
                        _query("channel", "The sales channel.", "ebay"),
                        _query("account_token", "The account's token.", DEMO_EBAY_ACCOUNT),
                    ],
                ),
            },
            "/order/invoice/": {
                "post": _op(
                    "UploadOrderInvoice",
                    "Upload invoice for an order",
                    "UploadInvoiceResponse",
                    "InvoiceUpload",
                ),
            },
            "/user/accounts/": {
                "get": _op(
                    "UserAccountsList",
                    "Retrieve accounts associated with a user",
                    "UserAccountsResponse",
                ),
            },
        },
        "components": {
            "schemas": _components(),
            "securitySchemes": {"JWT": {"type": "apiKey", "in": "header", "name": "access-token"}},
            "headers": {
                "X-RateLimit-Limit": {**header, "description": "Requests allowed per window."},
                "X-RateLimit-Remaining": {**header, "description": "Requests left in the window."},
                "X-RateLimit-Retry-After": {
                    "schema": {"type": "string", "format": "date-time"},
                    "required": True,
                    "description": "When the window resets (RFC 3339). " + ASSUMPTIONS["RateLimit"],
                },
            },
        },
    }


def render() -> str:
    return "# Generated by `m2e-sync schemas export` from shared/m2e/models.py; do not edit.\n" + (
        yaml.safe_dump(build(), sort_keys=False, allow_unicode=True, width=100)
    )


def export(path: Path = OPENAPI_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render())
    return path
