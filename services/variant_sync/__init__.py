"""variant-sync: price, stock and other variant changes to M2E in full batches."""

from __future__ import annotations

from services.spec import ServiceSpec
from services.variant_sync import samples
from services.variant_sync.models import VariantUpdateEvent, key_of
from services.variant_sync.service import VariantSync
from shared.config import WorkerSettings


def build(settings: WorkerSettings) -> VariantSync:
    return VariantSync(set(settings.credentials()))


SPEC = ServiceSpec.of(
    VariantSync,
    event=VariantUpdateEvent,
    settings=WorkerSettings,
    build=build,
    key=key_of,
    samples=samples,
)

__all__ = ["SPEC", "VariantSync", "build"]
