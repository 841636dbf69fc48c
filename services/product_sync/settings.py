"""product-sync's settings, beside the worker's own."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, model_validator

from shared.config import WorkerSettings


class ProductSyncSettings(WorkerSettings):
    product_defaults_file: Path | None = None  # YAML: account_token (or "*") → defaults
    product_max_variants: Annotated[int, Field(ge=1, le=10_000)] = 250

    @model_validator(mode="after")
    def _defaults_file(self) -> ProductSyncSettings:
        if self.product_defaults_file is not None and not self.product_defaults_file.is_file():
            raise ValueError(f"PRODUCT_DEFAULTS_FILE: {self.product_defaults_file} is not a file")
        return self
