"""invoice-upload: invoices to M2E, one PDF per call, SSRF-safe and idempotent."""

from services.invoice_upload.fetch import FetchPolicy, FetchRefused, SafeFetcher
from services.invoice_upload.service import InvoiceUpload, MemoryLedger, RedisLedger

__all__ = [
    "FetchPolicy",
    "FetchRefused",
    "InvoiceUpload",
    "MemoryLedger",
    "RedisLedger",
    "SafeFetcher",
]
