"""Time, injected: every timing rule takes a clock, so tests drive it without sleeping.

`time.monotonic` for intervals inside one process; `time.time` where the moment must
agree with other processes or with the server's headers (epoch seconds).
"""

from __future__ import annotations

from collections.abc import Callable

Clock = Callable[[], float]  # seconds

__all__ = ["Clock"]
