"""Sample invoices with real one-page PDFs, and one that is not a PDF."""

from __future__ import annotations

import base64
from typing import Any

INVALID = 1  # a GIF where a PDF belongs, on purpose


def invoice_pdf(order_id: str, number: str) -> bytes:
    """A small, valid one-page PDF naming the order (the xref offsets are computed)."""
    text = f"Invoice {number} for order {order_id}".replace("(", "").replace(")", "")
    stream = f"BT /F1 14 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (i, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def sample_invoices(account: str, order_ids: list[str], run: str = "") -> list[tuple[str, Any]]:
    """Invoices for the orders; `run` makes the numbers new, or a rerun is (rightly) skipped
    as already uploaded."""
    events: list[tuple[str, Any]] = []
    for i, order_id in enumerate(order_ids):
        number = f"INV-DEMO-{run}{i:04d}"
        pdf = base64.b64encode(invoice_pdf(order_id, number)).decode()
        events.append(
            (
                order_id,
                {
                    "account_token": account,
                    "order_id": order_id,
                    "invoice_number": number,
                    "total_amount": 119.0,
                    "total_vat_amount": 19.0,
                    "invoice_pdf_base64": pdf,
                },
            )
        )
    events.append(
        (
            "NOT-A-PDF",
            {
                "account_token": account,
                "order_id": "NOT-A-PDF",
                "invoice_number": "X",
                "invoice_pdf_base64": "R0lGODlhAQABAAAAACw=",
            },
        )
    )  # a GIF, on purpose
    return events


def samples(n: int, account: str) -> list[tuple[str, Any]]:
    """N invoices for made-up orders of the account, for `m2e-sync produce --sample`."""
    return sample_invoices(account, [f"EBAY-{account[:8]}-{i:06d}" for i in range(n)])[:n]
