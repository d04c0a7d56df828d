"""The local Valkey Cluster fixture (tests/helpers/cluster.py) is what the cluster tests assume:
3 primaries with every slot, a replica on each, slots that move with their keys, and a killed
primary's slots served by its promoted replica."""

from __future__ import annotations

import uuid

from tests.helpers.cluster import SLOTS, ValkeyCluster


def _served_slots(cluster: ValkeyCluster) -> int:
    ranges = cluster.primaries()[0].command("CLUSTER", "SLOTS")
    return sum(last - first + 1 for first, last, *_ in ranges)


def test_three_primaries_serve_every_slot_with_a_replica_each(
    valkey_cluster: ValkeyCluster,
) -> None:
    primaries = valkey_cluster.primaries()
    assert len(primaries) == 3
    assert _served_slots(valkey_cluster) == SLOTS
    assert len(valkey_cluster.replicas()) == 3
    for replica in valkey_cluster.replicas():
        replication = replica.info("replication")
        assert replication["master_link_status"] == "up"
        assert int(replication["master_port"]) in {primary.port for primary in primaries}
    for node in valkey_cluster.alive:
        assert node.cluster_info()["cluster_state"] == "ok"


def test_a_migrated_slot_keys_are_read_at_the_new_owner(valkey_cluster: ValkeyCluster) -> None:
    tag = f"{{migrate-{uuid.uuid4().hex[:8]}}}"
    keys = [f"{tag}:{n}" for n in range(250)]  # more than one MIGRATE batch
    source = valkey_cluster.node_of(tag)
    for key in keys:
        source.command("SET", key, key)
    target = next(node for node in valkey_cluster.primaries() if node.port != source.port)

    moved = valkey_cluster.migrate_slot(valkey_cluster.slot_of(tag), target)

    assert moved == len(keys)
    assert valkey_cluster.node_of(tag).port == target.port
    assert [value.decode() for value in target.command("MGET", *keys)] == keys
    assert source.command("CLUSTER", "COUNTKEYSINSLOT", valkey_cluster.slot_of(tag)) == 0
    assert _served_slots(valkey_cluster) == SLOTS


def test_a_killed_primary_slots_are_served_by_its_promoted_replica(
    valkey_cluster: ValkeyCluster,
) -> None:
    tag = f"{{failover-{uuid.uuid4().hex[:8]}}}"
    primary = valkey_cluster.node_of(tag)
    primary.command("SET", tag, "kept")
    primary.command("WAIT", 1, 5000)  # the replica has it before the crash

    promoted = valkey_cluster.fail_over(primary)

    assert promoted.port != primary.port
    assert valkey_cluster.node_of(tag).port == promoted.port
    assert promoted.command("GET", tag) == b"kept"
    promoted.command("SET", tag, "written after")
    assert len(valkey_cluster.primaries()) == 3
    assert len(valkey_cluster.replicas()) == 3  # the killed node rejoined as a replica
    assert primary.info("replication")["role"] == "slave"
    assert _served_slots(valkey_cluster) == SLOTS


def test_a_graceful_failover_swaps_a_primary_and_its_replica(
    valkey_cluster: ValkeyCluster,
) -> None:
    primary = valkey_cluster.primaries()[0]
    promoted = valkey_cluster.fail_over(primary, graceful=True)
    assert promoted.info("replication")["role"] == "master"
    assert primary.info("replication")["role"] == "slave"
