"""What every part of one worker shares: the service, its settings, metrics and clock,
the owned partitions, the buffers, and the signals the tasks wake each other with."""

from __future__ import annotations

from dataclasses import dataclass

from shared.clock import Clock
from shared.coalescer import Coalescer
from shared.config import WorkerSettings
from shared.metrics import Metrics
from shared.service import Service
from shared.worker.partitions import Partitions
from shared.worker.signals import Signals


@dataclass(frozen=True, slots=True)
class Context:
    service: Service
    settings: WorkerSettings
    metrics: Metrics
    clock: Clock
    partitions: Partitions
    coalescer: Coalescer
    signals: Signals

    @property
    def label(self) -> str:
        """The `service` label of the worker's metrics."""
        return self.service.name
