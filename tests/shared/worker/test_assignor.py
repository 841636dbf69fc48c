"""The group's assignor: partition p of the input and of its retry topic to one consumer,
partitions spread evenly, and one assignor only (aio-libs/aiokafka#1168)."""

from __future__ import annotations

from typing import Any

from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

from shared.worker.assignor import PairedRoundRobinAssignor

from .helpers import worker


class Cluster:
    def __init__(self, partitions: dict[str, int]) -> None:
        self._partitions = partitions

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        n = self._partitions.get(topic)
        return None if n is None else set(range(n))


def owned(assignment: Any) -> dict[str, set[tuple[str, int]]]:
    return {
        member: {(topic, p) for topic, parts in a.assignment for p in parts}
        for member, a in assignment.items()
    }


def test_partition_p_of_both_topics_goes_to_one_member_and_all_are_spread() -> None:
    topics = ["in", "in.retry"]
    members = {m: ConsumerProtocolMemberMetadata(0, topics, b"") for m in ("a", "b", "c")}
    result = owned(PairedRoundRobinAssignor.assign(Cluster({"in": 8, "in.retry": 8}), members))
    for member, tps in result.items():
        numbers = {p for _, p in tps}
        assert {(t, p) for t in topics for p in numbers} == tps, member  # paired
    assert sorted(len(tps) // 2 for tps in result.values()) == [2, 3, 3]
    assert set().union(*result.values()) == {(t, p) for t in topics for p in range(8)}


def test_an_older_member_reading_only_the_input_still_gets_its_share() -> None:
    members = {
        "new": ConsumerProtocolMemberMetadata(0, ["in", "in.retry"], b""),
        "old": ConsumerProtocolMemberMetadata(0, ["in"], b""),
    }
    result = owned(PairedRoundRobinAssignor.assign(Cluster({"in": 4, "in.retry": 4}), members))
    assert set().union(*result.values()) == {(t, p) for t in ("in", "in.retry") for p in range(4)}
    assert all(t == "in" for t, _ in result["old"])


async def test_the_worker_offers_one_protocol_the_older_replicas_speak() -> None:
    consumer = worker()._make_consumer()
    assert [a.name for a in consumer._partition_assignment_strategy] == ["roundrobin"]
