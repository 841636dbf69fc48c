"""Joining the consumer group: one JoinGroup request carries both assignors.

aiokafka 0.14 sends one request per assignor, and two replicas starting together restart
each other's rebalances (aio-libs/aiokafka#1168); shared.worker.join sends one."""

from __future__ import annotations

import hashlib
import inspect
from types import SimpleNamespace
from typing import Any

import aiokafka.errors as errors
import pytest
from aiokafka.consumer import group_coordinator
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.protocol.group import JoinGroupRequest

from shared.worker.join import OneJoinRebalance, use_one_join

# aiokafka 0.14.0's perform_group_join, which OneJoinRebalance re-states with one request.
# When an upgrade changes it, read the new one: if it sends one request, drop the patch.
AIOKAFKA_JOIN_SHA256 = "ff2c2109b2e9868dc23f43643160ea3d87c40093adc03e5e8c9a45c81844ea75"


class FakeCoordinator:
    def __init__(self, responses: list[Any]) -> None:
        self.responses = responses
        self.requests: list[Any] = []
        self.member_id = JoinGroupRequest.UNKNOWN_MEMBER_ID
        self.generation = -1
        self._group_instance_id = None
        self._rebalance_timeout_ms = 30_000
        self._rejoin_needed_fut = None
        self.events: list[str] = []

    async def _send_req(self, request: Any) -> Any:
        self.requests.append(request)
        return self.responses.pop(0)

    def request_rejoin(self) -> None:
        self.events.append("rejoin")

    def reset_generation(self) -> None:
        self.events.append("reset")

    def coordinator_dead(self) -> None:
        self.events.append("dead")


def joined(member: str = "m-1", leader: str = "m-0") -> SimpleNamespace:
    return SimpleNamespace(
        error_code=0, member_id=member, generation_id=7, leader_id=leader, group_protocol="range"
    )


def synced() -> SimpleNamespace:
    return SimpleNamespace(error_code=0, member_assignment=b"assignment")


def rebalance(coordinator: FakeCoordinator) -> OneJoinRebalance:
    subscription = SimpleNamespace(topics={"variant-updates", "variant-updates.retry"}, active=True)
    return OneJoinRebalance(
        coordinator,
        "g",
        0,
        subscription,
        (RangePartitionAssignor, RoundRobinPartitionAssignor),
        10_000,
        100,
    )


def joins(coordinator: FakeCoordinator) -> list[Any]:
    return [r for r in coordinator.requests if isinstance(r, JoinGroupRequest)]


async def test_one_join_request_carries_both_assignors() -> None:
    coordinator = FakeCoordinator([joined(), synced()])
    assert await rebalance(coordinator).perform_group_join() == ("range", b"assignment")
    [join] = joins(coordinator)
    assert [name for name, _ in join._group_protocols] == ["range", "roundrobin"]
    assert (coordinator.member_id, coordinator.generation) == ("m-1", 7)


async def test_a_member_id_asked_for_is_sent_back_with_the_same_protocols() -> None:
    required = SimpleNamespace(error_code=errors.MemberIdRequired.errno, member_id="m-1")
    coordinator = FakeCoordinator([required, joined(), synced()])
    await rebalance(coordinator).perform_group_join()
    first, second = joins(coordinator)
    assert second._member_id == "m-1"
    assert first._group_protocols == second._group_protocols


@pytest.mark.parametrize(
    ("error", "event"),
    [
        (errors.UnknownMemberIdError, "reset"),
        (errors.NotCoordinatorForGroupError, "dead"),
        (errors.GroupLoadInProgressError, None),
    ],
)
async def test_a_retried_error_returns_none_as_aiokafka_does(
    error: type[errors.KafkaError], event: str | None
) -> None:
    coordinator = FakeCoordinator([SimpleNamespace(error_code=error.errno, member_id="")])
    assert await rebalance(coordinator).perform_group_join() is None
    assert coordinator.events == ([event] if event else [])


async def test_a_fatal_error_is_raised() -> None:
    coordinator = FakeCoordinator(
        [SimpleNamespace(error_code=errors.InconsistentGroupProtocolError.errno, member_id="")]
    )
    with pytest.raises(errors.InconsistentGroupProtocolError):
        await rebalance(coordinator).perform_group_join()


def test_every_consumer_in_the_process_joins_once() -> None:
    use_one_join()
    assert group_coordinator.CoordinatorGroupRebalance is OneJoinRebalance


def test_aiokafka_join_is_the_one_re_stated() -> None:
    original = OneJoinRebalance.__mro__[1].perform_group_join
    digest = hashlib.sha256(inspect.getsource(original).encode()).hexdigest()
    assert digest == AIOKAFKA_JOIN_SHA256, "aiokafka's perform_group_join changed: re-read it"
