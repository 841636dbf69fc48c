"""Which injected fault, if any, a request gets.

One draw per API request decides it: the rates are shares of requests, stacked in the
order reset, timeout, throttle, error, then the misbehaving gateway's HTML error,
malformed body, truncated body and garbage rate-limit headers. With a seed, every (access token, route) has its
own random stream, so the n-th request a client makes to a route meets the same fault in
every run, however its requests interleave with other routes and other tokens.
"""

from __future__ import annotations

import random
from enum import Enum

from m2e_sandbox.config import FaultConfig


class Fault(Enum):
    RESET = "reset"  # TCP reset, no response
    TIMEOUT = "timeout"  # held for timeout_hold_s, then closed with no response
    THROTTLE = "throttle"  # 429 whatever the budget
    ERROR = "error"  # 500, after the rate limit counted the request
    HTML = "html"  # 502/503 with an HTML page, as a load balancer answers; never reached the API
    MALFORMED = "malformed"  # the request is applied; the 200's body is not JSON
    TRUNCATED = "truncated"  # the request is applied; the body is cut short, the connection closed
    BAD_HEADERS = "bad_headers"  # rate-limit headers with garbage values


def pick(config: FaultConfig, draw: float) -> Fault | None:
    """The fault whose band of [0, 1) holds `draw`."""
    edge = 0.0
    for fault, rate in (
        (Fault.RESET, config.reset_rate),
        (Fault.TIMEOUT, config.timeout_rate),
        (Fault.THROTTLE, config.throttle_rate),
        (Fault.ERROR, config.error_rate),
        (Fault.HTML, config.html_error_rate),
        (Fault.MALFORMED, config.malformed_body_rate),
        (Fault.TRUNCATED, config.truncated_body_rate),
        (Fault.BAD_HEADERS, config.bad_ratelimit_headers_rate),
    ):
        edge += rate
        if draw < edge:
            return fault
    return None


class FaultDice:
    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self._streams: dict[tuple[str, str], random.Random] = {}
        self._unseeded = random.Random()

    def restart(self) -> None:
        """Every stream from its start again: a reset sandbox replays the same faults."""
        self._streams.clear()

    def roll(self, token: str, route: str) -> Fault | None:
        if self.config.seed is None:
            return pick(self.config, self._unseeded.random())
        stream = self._streams.get((token, route))
        if stream is None:
            # A str seed is hashed with SHA-512: the same in every process and run.
            stream = random.Random(f"{self.config.seed}\0{token}\0{route}")
            self._streams[(token, route)] = stream
        return pick(self.config, stream.random())
