"""variant-sync: price, stock and other variant changes to M2E in full batches."""

from services.variant_sync.service import VariantSync

__all__ = ["VariantSync"]
