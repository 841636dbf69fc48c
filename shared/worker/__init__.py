"""The worker core's consume loop, split along its seams (see `worker.py`)."""

from shared.worker.worker import Worker

__all__ = ["Worker"]
