"""One package per worker, plus the M2E sandbox."""
