"""The hub: one Redis Pub/Sub connection per process, fanned out to the local WebSockets.

A tenant's channel is subscribed when its first local socket joins and unsubscribed when the last
one leaves. One reader task hands each message's bytes, as they came from Redis, to every socket
of that tenant through `Sink.offer`, which never blocks: a sink without room is dropped from the
fan-out (and closes itself as too slow).

Coalescing: after a message, the reader also takes the messages redis-py already read from the
same socket read (a publisher's pipeline, a MULTI, a busy moment), up to 256 or 1 MiB, without
waiting for more; each tenant's events of that read reach each of its sockets in one transport
write (`Channel.flush`, `Connection.offer_many`), one kernel send() instead of one per event.

The hub keeps each channel gap-free: every event carries its tenant's `seq`. When a message skips
ahead, when the subscription comes back after a reconnect, or when a probe finds it deaf, the hub
reads what it missed from the tenant's history (`docpulse.history`) and delivers it in order before
anything newer. If the history no longer reaches back, or its epoch changed, the sockets are told
to resync. Sockets hear `{"op":"degraded"}` while Redis is away and `{"op":"live"}` once caught up
(on a cluster: while a probe round finds a shard deaf, and once a round hears them all).

What it subscribes through is a `PubSub` (app/relay/pubsub.py): redis-py's on one Redis, or
`app/relay/sharded.py`'s on a cluster, which probes each partition toward each shard and may drop
messages silently (glide following a moved slot): there, each probe round also rechecks every
channel against its history head read before the probes went out, and repairs what is behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import AsyncIterator
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import RedisClusterException, RedisError

from app import metrics
from app.relay.channel import Channel, Sink, stamp_of
from app.relay.frames import DEGRADED, LIVE, PING_FRAME
from app.relay.pubsub import PubSub, RedisPubSub
from docpulse.history import EventLog, Replay
from docpulse.keys import Keys
from docpulse.tenants import topic_for

logger = logging.getLogger(__name__)
RETRY_DELAY_S: Final = 0.5
COMMAND_ATTEMPTS: Final = 20  # a SUBSCRIBE or UNSUBSCRIBE is tried this often, RETRY_DELAY_S apart
# reconnecting: full jitter over a delay doubling from 0.1 s to 5 s, so that many web processes
# losing the same Redis do not all come back in the same instant
BACKOFF_BASE_S: Final = 0.1
BACKOFF_CAP_S: Final = 5.0
# the heartbeat: every socket is pinged this often, and one that answered nothing by the next
# ping is dropped as a dead link (aiohttp's own heartbeat cost two timers and a task per socket)
HEARTBEAT_S: Final = 25.0
HEARTBEAT_BATCH: Final = 1000  # sockets pinged per turn of the event loop
LAG_SAMPLE: Final = 8  # one event in this many is observed in the relay lag histogram
# a burst: the reader takes at most this many messages (or this many bytes of them) that redis-py
# has already read before it flushes them to the sockets
DRAIN_MESSAGES: Final = 256
DRAIN_BYTES: Final = 1 << 20
RECHECK_BATCH: Final = 100  # history heads read at once by a recheck
# what reading the history may raise: on a cluster also redis-py's RedisClusterException, which
# is no RedisError (no node reachable while it refreshes its slot map, during a failover); the
# transport errors redis-py 5's cluster client leaks as AttributeError or TypeError reach here as
# ConnectionError (docpulse/connections.py `cluster_client`)
LOG_ERRORS: Final = (RedisError, OSError, RedisClusterException)


class Hub:
    def __init__(
        self,
        redis: Redis | None,
        keys: Keys,
        log: EventLog,
        *,
        join_timeout_s: float = 5.0,
        probe_interval_s: float = 10.0,
        probe_timeout_s: float = 3.0,
        heartbeat_s: float | None = None,
        pubsub: PubSub | None = None,
    ) -> None:
        """`pubsub` (a cluster's) or else redis-py's on `redis`."""
        if pubsub is None:
            if redis is None:
                raise ValueError("the hub needs a Redis client or a PubSub")
            pubsub = RedisPubSub(redis, keys)
        self._pubsub = pubsub
        self._errors = pubsub.errors
        # a command can also meet redis-py's RuntimeError (see `_subscribe`)
        self._command_errors: tuple[type[BaseException], ...] = (*pubsub.errors, RuntimeError)
        self._probe_errors: tuple[type[BaseException], ...] = (TimeoutError, *pubsub.errors)
        self._keys = keys
        self.log = log
        self._join_timeout_s = join_timeout_s
        self._probe_interval_s = probe_interval_s
        self._probe_timeout_s = probe_timeout_s
        self._heartbeat_s = heartbeat_s or HEARTBEAT_S
        self._received = 0  # events received, for sampling the lag
        self._channels: dict[bytes, Channel] = {}
        # SUBSCRIBEs sent but not yet confirmed, per channel: a channel left and joined again
        # quickly must not take the old SUBSCRIBE's confirmation for its new one
        self._unconfirmed: dict[bytes, int] = {}
        self._lock = asyncio.Lock()  # SUBSCRIBE/UNSUBSCRIBE go out in the order they were asked
        self.probe_channels = pubsub.probe_names(secrets.token_hex(8))  # a round picks from them
        self._probe_names = frozenset(self.probe_channels)
        self._probes: dict[bytes, asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._failures = 0
        self.degraded = False

    def _name(self, tenant_id: str) -> bytes:
        return self._keys.channel(topic_for(tenant_id)).encode()

    def sinks_of(self, tenant_id: str) -> int:
        channel = self._channels.get(self._name(tenant_id))
        return 0 if channel is None else len(channel.sinks)

    async def join(self, tenant_id: str, sink: Sink) -> None:
        """Deliver the tenant's events to `sink` from the moment this returns."""
        name = self._name(tenant_id)
        channel = self._channels.get(name)
        first = channel is None
        if channel is None:
            channel = self._channels[name] = Channel(tenant_id, self._keys.tenant(tenant_id))
        channel.sinks.add(sink)  # before any await: `leave` undoes whatever part of this ran
        if first:
            self._start(self._subscribe(name))
        async with asyncio.timeout(self._join_timeout_s):
            await channel.confirmed.wait()

    # SUBSCRIBE and UNSUBSCRIBE run in tasks of the hub, in the order asked (the lock is FIFO),
    # never in a socket's handler: a handler then does no Redis I/O when its socket goes away.

    # A command can also fail with redis-py's RuntimeError "read() called while another coroutine
    # is already waiting": when the connection dropped, the command reconnects, and the handshake
    # reads while the reader task does. redis-py records a channel only once SUBSCRIBE went out
    # and forgets one only when UNSUBSCRIBE is confirmed, so a failed command is tried again
    # while it still matters (the reader's reconnect resubscribes whatever redis-py recorded).

    async def _subscribe(self, name: bytes) -> None:
        for _ in range(COMMAND_ATTEMPTS):
            if name not in self._channels:
                return  # every socket left meanwhile
            try:
                async with self._lock:
                    self._unconfirmed[name] = self._unconfirmed.get(name, 0) + 1
                    try:
                        await self._pubsub.subscribe(name)
                    except BaseException:
                        self._unconfirmed[name] -= 1  # no confirmation will come for this one
                        if not self._unconfirmed[name]:
                            del self._unconfirmed[name]
                        raise
                return
            except self._command_errors as exc:
                logger.warning("hub could not subscribe %r (%s)", name, type(exc).__name__)
                await asyncio.sleep(RETRY_DELAY_S)

    async def _unsubscribe(self, name: bytes) -> None:
        for _ in range(COMMAND_ATTEMPTS):
            if name in self._channels:
                return  # a socket joined again meanwhile
            try:
                async with self._lock:
                    await self._pubsub.unsubscribe(name)
                return
            except self._command_errors as exc:
                logger.warning("hub could not unsubscribe %r (%s)", name, type(exc).__name__)
                await asyncio.sleep(RETRY_DELAY_S)

    def leave(self, tenant_id: str, sink: Sink) -> None:
        name = self._name(tenant_id)
        channel = self._channels.get(name)
        if channel is None:
            return
        channel.sinks.discard(sink)
        if not channel.sinks:
            del self._channels[name]
            self._start(self._unsubscribe(name))

    # reading -----------------------------------------------------------------------------------

    def _dispatch(self, message: dict[str, Any]) -> None:
        name = message["channel"]
        if message["type"] == "subscribe":
            self._confirmed(name)
        elif message["type"] == "message" and name in self._probe_names:
            probe = self._probes.pop(message["data"], None)
            if probe is not None and not probe.done():
                probe.set_result(None)
        elif message["type"] == "message" and (channel := self._channels.get(name)):
            stamp = stamp_of(message["data"])
            self._received += 1
            if not self._received % LAG_SAMPLE:
                metrics.observe_lag(stamp.ts)
            if not channel.take(stamp.seq, message["data"]):
                self._repair(channel)

    def _confirmed(self, name: bytes) -> None:
        left = max(self._unconfirmed.pop(name, 0) - 1, 0)
        if left:
            self._unconfirmed[name] = left
        channel = self._channels.get(name)
        if channel is None or name in self._unconfirmed:
            return
        if channel.confirmed.is_set():  # subscribed again after a reconnect: fill what was missed
            channel.begin_repair()
            self._repair(channel)
        else:
            self._start(self._baseline(channel))

    async def _baseline(self, channel: Channel) -> None:
        """Learn where the channel's seq stands before the first socket gets anything."""
        try:
            head = await self.log.head(channel.keys)
        except LOG_ERRORS:
            head = None
        channel.start(None if head is None else (head.epoch, head.head))

    def _repair(self, channel: Channel) -> None:
        channel.repair_wanted = True
        if not channel.repair_running:
            self._start(self._repairing(channel))

    async def _repairing(self, channel: Channel) -> None:
        """Deliver from history what the channel missed, then what was held meanwhile; again
        while more repairs are asked for (a reconnect during a repair)."""
        channel.repair_running = True
        try:
            while channel.repair_wanted:
                channel.repair_wanted = False
                channel.begin_repair()
                replay = await self._history(channel)
                metrics.REPAIRS.inc()
                if not channel.fill(replay):
                    channel.repair_wanted = True
        finally:
            channel.repair_running = False
        self._caught_up()

    def _caught_up(self) -> None:
        if self.degraded and not any(c.repairing for c in self._channels.values()):
            self.degraded = False
            metrics.HUB_DEGRADED.set(0)
            self._broadcast(LIVE)

    async def _history(self, channel: Channel) -> Replay:
        while True:
            try:
                return await self.log.after(channel.keys, channel.last_seq or channel.base or 0)
            except LOG_ERRORS:
                await asyncio.sleep(RETRY_DELAY_S)

    async def _read(self) -> None:
        while True:
            try:
                # under the lock: redis-py opens the connection on the first SUBSCRIBE, and two
                # first SUBSCRIBEs at once would each open one
                async with self._lock:
                    await self._pubsub.subscribe(*self.probe_channels)
                break
            except self._errors as exc:
                await self._lost(exc)
        if self._pubsub.rechecks:
            # on a cluster glide reconnects without a word: an outage met at start-up ends here,
            # not a probe round later
            self._caught_up()
        while True:
            messages: list[dict[str, Any]] = []
            try:
                await self._take(messages)
            except self._errors as exc:
                self._dispatch_all(messages)  # what was read before the loss, delivered first
                await self._lost(exc)
                continue
            self._failures = 0
            self._dispatch_all(messages)

    async def _take(self, messages: list[dict[str, Any]]) -> None:
        """Wait for a message, then take what redis-py already read after it (a burst), up to
        DRAIN_MESSAGES or DRAIN_BYTES: `get_message(timeout=0)` returns a message already in
        redis-py's buffer without waiting on the socket, and None at its first wait."""
        message = await self._pubsub.get_message(timeout=1.0)
        size = 0
        while message is not None:
            messages.append(message)
            size += len(message["data"]) if isinstance(message["data"], bytes) else 0
            if len(messages) >= DRAIN_MESSAGES or size >= DRAIN_BYTES:
                return
            message = await self._pubsub.get_message(timeout=0)

    def _dispatch_all(self, messages: list[dict[str, Any]]) -> None:
        """Dispatch one read's messages; each channel they touch then flushes them as a burst."""
        touched: list[Channel] = []
        for message in messages:
            channel = self._channels.get(message["channel"])
            if channel is not None and message["type"] == "message" and channel.collect():
                touched.append(channel)
            self._dispatch(message)
        for channel in touched:
            channel.flush()

    async def _lost(self, exc: BaseException) -> None:
        if not self.degraded:
            logger.warning("hub lost its Redis subscription (%s); reconnecting", type(exc).__name__)
            self.degraded = True
            metrics.HUB_DEGRADED.set(1)
            self._broadcast(DEGRADED)
        metrics.SUBSCRIPTION_RECONNECTS.inc()
        self._failures += 1
        delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** min(self._failures, 16))
        await asyncio.sleep(random.uniform(0, delay))

    def _broadcast(self, frame: bytes) -> None:
        for channel in self._channels.values():
            channel.deliver(0, frame)

    # probing -----------------------------------------------------------------------------------

    async def probe(self, timeout_s: float | None = None) -> bool:
        """True when a message published now comes back through this hub's subscription (each
        of its partitions, on a cluster)."""
        return all(heard for _, heard in await self._probe_each(timeout_s))

    async def _probe_each(self, timeout_s: float | None = None) -> list[tuple[bytes, bool]]:
        """This round's probes (on a cluster one per partition and node that serves part of
        it), each with whether it came back."""
        names = await self._pubsub.probes_for_round(self.probe_channels)
        heard = await asyncio.gather(*(self._probe_one(name, timeout_s) for name in names))
        return list(zip(names, heard, strict=True))

    async def _probe_one(self, name: bytes, timeout_s: float | None) -> bool:
        token = secrets.token_bytes(8).hex().encode()
        arrived = self._probes[token] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout_s or self._probe_timeout_s):
                await self._pubsub.publish(name, token)
                await arrived
            return True
        except self._probe_errors:
            return False
        finally:
            self._probes.pop(token, None)

    async def _watch(self) -> None:
        """Probe now and then; a subscription (or partition) that is connected but deaf is
        reconnected."""
        while True:
            await asyncio.sleep(self._probe_interval_s)
            try:
                await self.check()
            except Exception:  # a round that failed unforeseen must not end the probing
                logger.exception("hub probe round failed")

    async def check(self) -> None:
        """One probe round; where the subscription may drop messages silently (`rechecks`),
        each channel is then compared with its history head read before the probes went out:
        once a probe came back, what was published before it has arrived too, unless lost."""
        heads = await self._heads() if self._pubsub.rechecks else {}
        probed = await self._probe_each()
        deaf = sorted({self._pubsub.part_of(name) for name, heard in probed if not heard})
        if self._pubsub.rechecks:  # a cluster: the probes are what says a shard is away
            self._shards_heard(not deaf)
        if deaf and (self._pubsub.rechecks or not self.degraded):
            logger.warning("hub subscription is deaf (probe did not come back); reconnecting")
            metrics.DEAF_RECONNECTS.inc()
            for index in deaf:
                try:
                    await self._pubsub.reconnect(index)
                except self._errors as exc:  # the next round tries again
                    logger.warning("hub could not reconnect (%s)", type(exc).__name__)
        self._recheck(heads)

    def _shards_heard(self, all_heard: bool) -> None:
        """On a cluster glide reconnects by itself and raises nothing: sockets are told
        `degraded` when a probe round finds a partition deaf toward a shard (a failover, a node
        away), and `live` once a round hears every shard and the repairs are done."""
        if not all_heard and not self.degraded:
            logger.warning("hub: a shard did not answer its probe; sockets told degraded")
            self.degraded = True
            metrics.HUB_DEGRADED.set(1)
            self._broadcast(DEGRADED)
        elif all_heard:
            self._caught_up()

    async def _heads(self) -> dict[Channel, Replay]:
        channels = [c for c in self._channels.values() if c.confirmed.is_set()]
        heads: dict[Channel, Replay] = {}
        for start in range(0, len(channels), RECHECK_BATCH):
            batch = channels[start : start + RECHECK_BATCH]
            read = await asyncio.gather(
                *(self.log.head(c.keys) for c in batch), return_exceptions=True
            )
            for channel, head in zip(batch, read, strict=True):
                if isinstance(head, Replay):
                    heads[channel] = head
                elif not isinstance(head, LOG_ERRORS):
                    raise head
        return heads

    def _recheck(self, heads: dict[Channel, Replay]) -> None:
        """Repair each channel that is behind the head its history had before the probes (or
        whose epoch changed); a channel repairing already is left to that repair."""
        for channel, head in heads.items():
            if self._channels.get(self._name(channel.tenant_id)) is not channel:
                continue  # left meanwhile
            if channel.repairing or channel.repair_running:
                continue
            delivered = channel.last_seq or channel.base or 0
            if head.head > delivered or (channel.epoch and head.epoch != channel.epoch):
                logger.info("hub rechecked %s: behind its history; repairing", channel.tenant_id)
                channel.begin_repair()
                self._repair(channel)

    # heartbeat ---------------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            await self.beat()

    async def beat(self) -> None:
        """One heartbeat round: ping every socket of the process, HEARTBEAT_BATCH sockets per
        turn of the loop. A sink refuses the ping (and is dropped) when its peer answered nothing
        since the previous round: it takes the link for dead and aborts it."""
        pinged = 0
        for channel in list(self._channels.values()):
            channel.deliver(0, PING_FRAME, count=False)
            pinged += len(channel.sinks)
            if pinged >= HEARTBEAT_BATCH:
                pinged = 0
                await asyncio.sleep(0)  # the rest of the process runs between batches

    # lifetime ----------------------------------------------------------------------------------

    def _start(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Hub]:
        owned = [
            asyncio.create_task(self._read(), name="hub-reader"),
            asyncio.create_task(self._watch(), name="hub-prober"),
            asyncio.create_task(self._heartbeat(), name="hub-heartbeat"),
        ]
        try:
            yield self
        finally:
            for task in [*owned, *self._tasks]:
                task.cancel()
            await asyncio.wait([*owned, *self._tasks])
            await self._pubsub.aclose()
