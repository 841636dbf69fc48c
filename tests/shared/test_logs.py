"""JSON logs; access tokens are masked wherever they appear."""

from __future__ import annotations

import io
import json
import logging

from shared.logs import JsonFormatter, RedactSecrets


def test_json_lines_with_extras_and_masked_secrets() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactSecrets(["tok-secret-123"]))
    log = logging.getLogger("test.logs")
    log.handlers[:] = [handler]
    log.propagate = False
    log.warning("calling with %s", "tok-secret-123", extra={"account": "a1"})
    try:
        raise RuntimeError("bad token tok-secret-123")
    except RuntimeError:
        log.exception("failed")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["msg"] == "calling with ***" and first["account"] == "a1"
    assert first["level"] == "warning"
    assert "tok-secret-123" not in stream.getvalue()
    assert "RuntimeError: bad token ***" in second["exc"]
