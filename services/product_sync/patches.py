"""product-sync's updates: a product `PATCH` and a variant `PATCH` carrying only what changed
since any writer last wrote or saw the SKU (services.product_sync.known)."""

from __future__ import annotations

from collections.abc import Callable, Set
from typing import Any

from services.product_sync.known import PRODUCT_FIELDS, VARIANT_FIELDS, Known
from shared.coalescer import Payload
from shared.m2e.client import M2EClient
from shared.m2e.models import MAX_BATCH_ITEMS
from shared.results import ErrorInfo
from shared.service import ItemOutcome, send_isolating


def failed(status: int | None, code: str, message: str) -> ItemOutcome:
    return ItemOutcome("failed", status, ErrorInfo(code=code, message=message))


async def update(
    client: M2EClient,
    account: str,
    known: dict[str, Known],
    payloads: list[Payload],
    updates: list[int],
    outcomes: list[ItemOutcome | None],
    written: dict[str, Known],
    newer: Set[str],
) -> list[int]:
    """Patch what changed of the upserts `updates`, except variants in `newer` (a later
    event wrote them); returns the upserts whose product M2E no longer holds (404)."""
    product_patches: list[tuple[int, dict[str, Any]]] = []
    variant_patches: list[tuple[int, dict[str, Any]]] = []
    for i in updates:
        product = payloads[i]["product"]
        state = known[product["sku"]]
        wanted = Known.of(product)
        if set(wanted.variants) != set(state.variants):
            outcomes[i] = failed(
                None,
                "variants_changed",
                f"variants {sorted(set(wanted.variants) ^ set(state.variants))} differ from "
                "the catalog's; M2E cannot add or remove variants of a product: delete and "
                "re-create it",
            )
            continue
        if wanted.product != state.product:
            patch = {
                "sku": product["sku"],
                **{k: product[k] for k in PRODUCT_FIELDS if k in product},
            }
            product_patches.append((i, patch))
        for variant in product["variants"]:
            if variant["sku"] in newer:
                continue
            if wanted.variants[variant["sku"]] != state.variants[variant["sku"]]:
                patch = {
                    k: variant[k] for k in ("sku", *VARIANT_FIELDS) if variant.get(k) is not None
                }
                variant_patches.append((i, patch))
    rejected: dict[int, ItemOutcome] = {}
    for patches, call in (
        (product_patches, lambda items: client.update_products(account, items)),
        (variant_patches, lambda items: client.update_variants(account, items)),
    ):
        await _send_patches(patches, call, rejected)
    missing = []
    for i in updates:
        if outcomes[i] is not None:
            continue
        if i in rejected:
            if rejected[i].http_status == 404:
                missing.append(i)
            else:
                outcomes[i] = rejected[i]
            continue
        product = payloads[i]["product"]
        done = Known.of(product, known[product["sku"]].marks)
        done.variants.update({v: "" for v in done.variants if v in newer})  # not ours
        written[product["sku"]] = done
        outcomes[i] = ItemOutcome("ok", 200, operation="update")
    return missing


async def _send_patches(
    patches: list[tuple[int, dict[str, Any]]],
    call: Callable[[list[dict[str, Any]]], Any],
    rejected: dict[int, ItemOutcome],
) -> None:
    for start in range(0, len(patches), MAX_BATCH_ITEMS):
        chunk = patches[start : start + MAX_BATCH_ITEMS]
        results = await send_isolating([p for _, p in chunk], call)
        for (i, _), result in zip(chunk, results, strict=True):
            if result.status == "failed" and i not in rejected:
                rejected[i] = ItemOutcome("failed", result.http_status, result.error, "update")
