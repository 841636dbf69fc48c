"""One JoinGroup request carrying every assignor, so two replicas starting together agree.

aiokafka 0.14 sends one JoinGroup per configured assignor: first `[range]`, then
`[range, roundrobin]` (aio-libs/aiokafka#1168, open). The second request changes the
member's protocols while the group completes the first rebalance, so the coordinator
starts another one; two members doing so at the same time restart each other's rebalances
for tens of seconds. The worker configures two assignors (range keeps partition p of the
input and its retry topic together; round-robin lets a rolling upgrade from a version that
knew only it agree on a protocol), so it needs the join done once, with both.

`OneJoinRebalance.perform_group_join` is aiokafka's own, with the request built once from
every assignor. `use_one_join()` installs it; `tests/shared/worker/test_join.py` fails when
aiokafka's method changes, so an upgrade is a decision, not a surprise.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiokafka.errors as errors
from aiokafka.consumer import group_coordinator
from aiokafka.coordinator.protocol import ConsumerProtocol
from aiokafka.protocol.group import JoinGroupRequest

log = logging.getLogger("aiokafka.consumer.group_coordinator")

# Errors after which aiokafka returns None (the coordinator backs off and joins again).
_RETRIED = (
    errors.GroupLoadInProgressError,
    errors.UnknownMemberIdError,
    errors.GroupCoordinatorNotAvailableError,
    errors.NotCoordinatorForGroupError,
)
_FATAL = (
    errors.InconsistentGroupProtocolError,
    errors.InvalidSessionTimeoutError,
    errors.InvalidGroupIdError,
)


class OneJoinRebalance(group_coordinator.CoordinatorGroupRebalance):  # type: ignore[misc]
    async def perform_group_join(self) -> Any:
        log.info("(Re-)joining group %s", self.group_id)
        topics = self._subscription.topics
        protocols = []
        for assignor in self._assignors:
            metadata = assignor.metadata(topics)
            protocols.append(
                (assignor.name, metadata if isinstance(metadata, bytes) else metadata.encode())
            )
        while True:  # KIP-394: the first join of a new member may ask for a member id
            request = JoinGroupRequest(
                self.group_id,
                self._session_timeout_ms,
                self._rebalance_timeout_ms,
                self._coordinator.member_id,
                self._coordinator._group_instance_id,
                ConsumerProtocol.PROTOCOL_TYPE,
                protocols,
            )
            try:
                response = await self._coordinator._send_req(request)
            except errors.KafkaError:
                return None  # a connection error: the coordinator lookup backs off
            if not self._subscription.active:
                return None  # the subscription changed: join again
            error_type = errors.for_code(response.error_code)
            if error_type is not errors.MemberIdRequired:
                break
            self._coordinator.member_id = response.member_id

        if error_type is errors.NoError:
            self._coordinator.member_id = response.member_id
            self._coordinator.generation = response.generation_id
            log.info(
                "Joined group '%s' (generation %s) with member_id %s",
                self.group_id,
                response.generation_id,
                response.member_id,
            )
            if response.leader_id == response.member_id:
                assignment = await self._on_join_leader(response)
            else:
                assignment = await self._on_join_follower()
            return None if assignment is None else (response.group_protocol, assignment)
        return await self._join_failed(error_type)

    async def _join_failed(self, error_type: type) -> None:
        """aiokafka's handling of a failed join: back off, reset or raise, as it does."""
        if error_type not in _RETRIED:
            if error_type in _FATAL:
                raise error_type()
            if error_type is errors.GroupAuthorizationFailedError:
                raise error_type(self.group_id)
            raise errors.KafkaError(repr(error_type()))
        log.debug("Joining group %s failed: %s", self.group_id, error_type.__name__)
        if error_type is errors.GroupLoadInProgressError:
            await asyncio.sleep(self._retry_backoff_ms / 1000)
        elif error_type is errors.UnknownMemberIdError:
            self._coordinator.reset_generation()
        else:
            self._coordinator.coordinator_dead()
        return None


def use_one_join() -> None:
    """Make every consumer group in this process join with one request (idempotent)."""
    group_coordinator.CoordinatorGroupRebalance = OneJoinRebalance
