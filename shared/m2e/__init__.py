"""The M2E Sales Channels API v4: models (and, with the worker core, the client)."""
