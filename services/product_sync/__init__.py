"""product-sync: the company's catalog (M2E- or SAP Anywhere-shaped) to M2E in batches."""

from __future__ import annotations

from pathlib import Path

from services.product_sync import samples
from services.product_sync.mapping import AccountDefaults
from services.product_sync.models import ProductEvent, key_of
from services.product_sync.service import ProductSync
from services.product_sync.settings import ProductSyncSettings
from services.spec import ServiceSpec
from shared.bootstrap import catalog_view
from shared.config import ConfigError, read_yaml


def load_defaults(path: Path | None) -> dict[str, AccountDefaults]:
    """PRODUCT_DEFAULTS_FILE: `{account_token or "*": {currency, price, quantity}}`."""
    if path is None:
        return {}
    raw = read_yaml(path, "PRODUCT_DEFAULTS_FILE") or {}
    if not isinstance(raw, dict):
        raise ConfigError("PRODUCT_DEFAULTS_FILE must map account tokens (or '*') to defaults")
    out = {}
    for account, values in raw.items():
        try:
            out[str(account)] = AccountDefaults(**(values or {}))
        except TypeError as exc:
            raise ConfigError(f"PRODUCT_DEFAULTS_FILE: {account}: {exc}") from None
    return out


def build(settings: ProductSyncSettings) -> ProductSync:
    return ProductSync(
        settings.credentials(),
        load_defaults(settings.product_defaults_file),
        settings.product_max_variants,
        catalog_view(settings),
    )


SPEC = ServiceSpec.of(
    ProductSync,
    event=ProductEvent,
    settings=ProductSyncSettings,
    build=build,
    key=key_of,
    samples=samples,
)

__all__ = [
    "SPEC",
    "AccountDefaults",
    "ProductSync",
    "ProductSyncSettings",
    "build",
    "load_defaults",
]
