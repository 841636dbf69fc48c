"""invoice-upload's settings, beside the worker's own."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from shared.config import WorkerSettings


class InvoiceUploadSettings(WorkerSettings):
    invoice_url_allowlist: str = ""  # comma-separated hosts; ".example.com" allows subdomains
    invoice_max_bytes: Annotated[int, Field(ge=1024)] = 10 * 1024 * 1024
    invoice_fetch_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    invoice_allow_loopback_http: bool = False  # development only
    invoice_concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    invoice_ledger_ttl_days: Annotated[int, Field(ge=1)] = 30
