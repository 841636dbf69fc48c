"""variant-sync: `variant-updates` → batched `PATCH /catalog/product/variant/`.

Updates for one SKU within a batch window merge field by field (the later value of each
field wins), so price and stock changes reach M2E in full batches without losing any
field an earlier event set.

An update for a SKU M2E does not know (404) is not failed at once: its product may be on
its way through product-sync, published at the same moment. The core sends it again with
back-off, outside its batch, for `VARIANT_NOT_FOUND_RETRY_S`.

Each variant written is marked in the shared view of the catalog (shared.catalog), so that
product-sync re-sends it when the product is published again, even unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import replace

from pydantic import ValidationError

from services.variant_sync.models import EVENT_FIELDS, TOPIC, VariantUpdateEvent
from shared.catalog import CatalogView
from shared.coalescer import MergeRule, Payload, merge_fields
from shared.m2e.client import M2EClient
from shared.service import (
    Decoded,
    Headers,
    InvalidMessage,
    ItemOutcome,
    Service,
    check_account,
    check_key,
    describe,
    send_isolating,
)

OPERATION = "variant.update"


def variant_payload(event: VariantUpdateEvent) -> Payload:
    """The M2E variant update: the fields the event set. (Read off the validated model:
    a full dump per message costs more than the rest of decoding.)"""
    payload: Payload = {}
    values = event.__dict__
    for name in event.model_fields_set:
        if name in EVENT_FIELDS:
            continue
        value = values[name]
        if name in ("options", "attributes"):
            value = [item.model_dump() for item in value]
        payload[name] = value
    return payload


class VariantSync(Service):
    name = "variant-sync"
    input_topic = TOPIC
    key_field = "sku"
    merge_rules: Mapping[str, MergeRule] = {OPERATION: merge_fields}

    def __init__(
        self,
        known_accounts: Set[str],
        not_found_retry_s: float = 0.0,
        view: CatalogView | None = None,
    ) -> None:
        self._accounts = known_accounts
        self._not_found_retry_s = not_found_retry_s
        self._view = view

    def decode(self, key: bytes | None, value: bytes | None, headers: Headers) -> Decoded:
        if value is None:
            raise InvalidMessage("a variant update cannot be a tombstone", "EmptyValue")
        try:
            event = VariantUpdateEvent.model_validate_json(value)
        except ValidationError as exc:
            raise InvalidMessage(describe(exc), "ValidationError") from None
        account = str(event.account_token)
        check_account(self._accounts, account, event.sku)
        check_key(
            key.decode("utf-8", "replace") if key is not None else None,
            event.sku,
            "the variant sku",
            account,
        )
        payload = variant_payload(event)
        if len(payload) < 2:
            raise InvalidMessage(
                "nothing to update: give at least one of barcode, price, "
                "quantity, images, options, attributes",
                "ValidationError",
                account,
                event.sku,
            )
        return Decoded(account, OPERATION, event.sku, payload, event.event_id)

    async def send(
        self, client: M2EClient, account_token: str, operation: str, payloads: list[Payload]
    ) -> list[ItemOutcome]:
        outcomes = await send_isolating(
            payloads, lambda items: client.update_variants(account_token, items)
        )
        if self._view is not None:  # product-sync must not take its own hashes as current
            written = [
                p["sku"] for p, o in zip(payloads, outcomes, strict=True) if o.status == "ok"
            ]
            await self._view.written(client.catalog_of(account_token), written)
        if not self._not_found_retry_s:
            return outcomes
        return [
            replace(o, retry_for_s=self._not_found_retry_s) if o.http_status == 404 else o
            for o in outcomes
        ]
