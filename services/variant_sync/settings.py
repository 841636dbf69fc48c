"""variant-sync's settings, beside the worker's own."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from shared.config import WorkerSettings


class VariantSyncSettings(WorkerSettings):
    # A product and its first stock update published together reach M2E in either order:
    # an update for a SKU not there yet (404) is sent again, alone, for this long.
    variant_not_found_retry_s: Annotated[float, Field(ge=0, le=86_400)] = 600.0
