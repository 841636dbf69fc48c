"""Credentials reloaded live: `M2E_CREDENTIALS_FILE` is read again when it changes.

    reloader = CredentialsReloader(settings, credentials, on_change=[worker.credentials_changed])
    task = asyncio.create_task(reloader.run())   # every CREDENTIALS_RELOAD_S

A Kubernetes Secret volume updates by swapping its `..data` symlink, so the file's own
mtime and inode say nothing: the reloader reads the file (through the links) and compares
its bytes. New accounts are served from the next message on; a removed account's pending
messages go to the DLQ as `UnknownAccount`; a rotated token serves the next request, and
an account paused by a 401 is tried again at once. A file that does not read or parse
keeps the last good credentials; the log says why, naming the file and the line, never a
value. Every access token the file held is masked in the logs from the moment it is read.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Iterable

from shared.config import ConfigError, WorkerSettings
from shared.logs import mask_secrets
from shared.m2e.credentials import Change, Credentials
from shared.metrics import Metrics

log = logging.getLogger("m2e_sync.credentials")

Listener = Callable[[Change], None]


class CredentialsReloader:
    def __init__(
        self,
        settings: WorkerSettings,
        credentials: Credentials,
        metrics: Metrics,
        service: str,
        on_change: Iterable[Listener] = (),
    ) -> None:
        self._settings = settings
        self._credentials = credentials
        self._metrics = metrics
        self._service = service
        self._listeners = list(on_change)
        self._refusal: str | None = None
        self._digest = self._read_digest()
        metrics.accounts_configured.labels(service).set(len(credentials))

    @property
    def enabled(self) -> bool:
        s = self._settings
        return s.m2e_credentials_file is not None and s.credentials_reload_s > 0

    def _read(self) -> bytes:
        assert self._settings.m2e_credentials_file is not None
        path = self._settings.m2e_credentials_file
        try:
            return path.read_bytes()  # through the links: a `..data` swap is seen
        except OSError as exc:
            raise ConfigError(f"M2E_CREDENTIALS_FILE: cannot read {path}: {exc.strerror}") from None

    def _read_digest(self) -> bytes | None:
        try:
            return hashlib.sha256(self._read()).digest() if self.enabled else None
        except ConfigError:
            return None

    def check(self) -> Change | None:
        """Read the file; apply it when its bytes changed. None when nothing changed or the
        file was refused (the last good credentials stay)."""
        if not self.enabled:
            return None
        try:
            text = self._read()
            digest = hashlib.sha256(text).digest()
            if digest == self._digest:
                self._refusal = None  # back to what is in force: a new problem is news
                return None
            tokens = self._settings.token_map(text.decode("utf-8", errors="replace"))
        except ConfigError as exc:
            if str(exc) != self._refusal:  # once per problem, not at every look
                self._refusal = str(exc)
                log.error("%s; keeping the last good credentials", exc)
                self._metrics.credential_reloads.labels(self._service, "refused").inc()
            return None
        self._refusal = None
        self._digest = digest
        mask_secrets(tokens.values())
        change = self._credentials.replace(tokens)
        self._metrics.credential_reloads.labels(self._service, "ok").inc()
        self._metrics.accounts_configured.labels(self._service).set(len(self._credentials))
        log.info(
            "credentials reloaded: %d accounts (%d added, %d removed, %d with a new token)",
            len(self._credentials),
            len(change.added),
            len(change.removed),
            len(change.rotated),
        )
        if change:
            for listener in self._listeners:
                listener(change)
        return change

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._settings.credentials_reload_s)
            try:
                self.check()
            except Exception:  # a bug here must not end the reloads for good
                log.exception("reloading M2E_CREDENTIALS_FILE failed")
