"""variant-sync: price, stock and other variant changes to M2E in full batches."""

from __future__ import annotations

from services.spec import ServiceSpec
from services.variant_sync import samples
from services.variant_sync.models import VariantUpdateEvent, key_of
from services.variant_sync.service import VariantSync
from services.variant_sync.settings import VariantSyncSettings
from shared.bootstrap import catalog_view


def build(settings: VariantSyncSettings) -> VariantSync:
    return VariantSync(
        settings.credentials(), settings.variant_not_found_retry_s, catalog_view(settings)
    )


SPEC = ServiceSpec.of(
    VariantSync,
    event=VariantUpdateEvent,
    settings=VariantSyncSettings,
    build=build,
    key=key_of,
    samples=samples,
)

__all__ = ["SPEC", "VariantSync", "VariantSyncSettings", "build"]
