"""The test harness hands every worker and server a port of its own."""

from __future__ import annotations

from tests.integration.harness import free_port


def test_a_port_is_never_handed_out_twice() -> None:
    # Found in a fresh-clone run: two workers started together got the same port (the
    # first had not bound it yet) and the second exited with "address already in use".
    ports = [free_port() for _ in range(2000)]
    assert len(set(ports)) == len(ports)
