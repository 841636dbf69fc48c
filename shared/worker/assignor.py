"""How the group shares partitions: round-robin by partition number, so that partition p of
the input and of its retry topic (shared.worker.park) go to the same consumer.

One assignor, named `roundrobin`, the protocol aiokafka's default assignor speaks: a group
whose older replicas know only that one still agrees on a protocol during a rolling upgrade
(while an older replica leads, partitions are not paired, and the worker warns). It is one
assignor, not "range, then round-robin": aiokafka 0.14 sends one JoinGroup per configured
assignor (aio-libs/aiokafka#1168), and two replicas starting together then restart each
other's rebalance for as long as a minute.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Mapping

from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)


class PairedRoundRobinAssignor(RoundRobinPartitionAssignor):  # type: ignore[misc]
    name = "roundrobin"

    @classmethod
    def assign(
        cls,
        cluster: ClusterMetadata,
        members: Mapping[str, ConsumerProtocolMemberMetadata],
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        topics: set[str] = set()
        for metadata in members.values():
            topics.update(metadata.subscription)
        by_number: dict[int, list[str]] = collections.defaultdict(list)
        for topic in sorted(topics):
            for partition in cluster.partitions_for_topic(topic) or ():
                by_number[partition].append(topic)
        assignment: dict[str, dict[str, list[int]]] = collections.defaultdict(
            lambda: collections.defaultdict(list)
        )
        order = sorted(members)
        turn = itertools.cycle(order)
        for number in sorted(by_number):
            wanted = by_number[number]
            # The next member in turn that reads every topic with this partition number;
            # one that reads only some (an older replica) takes what it reads.
            for _ in order:
                member = next(turn)
                if set(wanted) <= set(members[member].subscription):
                    for topic in wanted:
                        assignment[member][topic].append(number)
                    break
            else:
                for topic in wanted:
                    for _ in order:
                        member = next(turn)
                        if topic in members[member].subscription:
                            assignment[member][topic].append(number)
                            break
        return {
            member: ConsumerProtocolMemberAssignment(
                cls.version, sorted(assignment[member].items()), b""
            )
            for member in members
        }
