"""The soak test's load: uploads from a few tenants, sockets that come and go, sockets that stay,
Redis broken now and then, and what the web process holds (tasks, descriptors, memory, Redis
connections) measured at quiet points."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
import msgspec
from redis.asyncio import Redis

from cli.client import Backoff, Failed, open_socket, reopen_socket
from cli.embedded import EmbeddedRedis
from store.records import DocumentRecord, Records
from tests.helpers.paths import DATA

# parsed, chunked and embedded, and one that fails in parse with a reason
FILES = ("notes.md", "plain.txt", "page.html", "report.pdf", "corrupt.pdf")
UPLOAD_INTERVAL_S = 0.5  # per tenant: a steady trickle, not a benchmark
OUTAGE_S = 1.0  # how long Redis stays down each time
# Memory: after the warm-up, RSS moved by at most 1 MiB over a 120 s soak (~650 uploads, ~330
# sockets, ~15,000 events delivered); Python's allocator keeps the arenas it grew, so some drift
# is no leak. Allowed: 5% of the baseline + 4 MiB (about 10 MiB): a leak of 50 KB per upload
# failed even a 60 s run (RSS +12 MiB); the default run catches about 25 KB per upload or 1 KB
# per event delivered, `make soak` (900 s) about an eighth of that.
RSS_GROWTH_ALLOWED = 0.05
RSS_SLACK = 4 * 2**20
# The load generator's HTTP and WebSocket clients live in this process too: at any instant a
# keep-alive connection or a socket being torn down may hold a descriptor or two. A leak shows
# as hundreds (one per upload or socket: 681 uploads and 338 sockets in the default run).
FD_SLACK = 2


@dataclass
class Tally:
    accepted: set[tuple[str, int]] = field(default_factory=set)  # (tenant, document id): 202
    refused: Counter[str] = field(default_factory=Counter)
    sockets: int = 0
    socket_failures: int = 0
    events: int = 0
    restarts: int = 0


async def upload_steadily(
    session: aiohttp.ClientSession, tenant: str, tally: Tally, stop: asyncio.Event
) -> None:
    turn = random.randrange(len(FILES))
    while not stop.is_set():
        name = FILES[turn % len(FILES)]
        turn += 1
        form = aiohttp.FormData()
        form.add_field("file", (DATA / name).read_bytes(), filename=name)
        try:
            async with session.post("/api/documents", data=form) as resp:
                body = await resp.read()
                if resp.status == 202:
                    tally.accepted.add((tenant, msgspec.json.decode(body)["document_id"]))
                else:  # Redis is down: 503; nothing else is expected
                    tally.refused[str(resp.status)] += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            tally.refused[type(exc).__name__] += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), UPLOAD_INTERVAL_S)  # pacing


async def come_and_go(
    session: aiohttp.ClientSession, tenant: str, tally: Tally, stop: asyncio.Event
) -> None:
    """Sockets that open, read a moment, and leave; one at a time, until `stop`."""
    while not stop.is_set():
        try:
            ws = await open_socket(session)
        except (Failed, aiohttp.ClientError, TimeoutError):  # Redis down (1011): count, go on
            tally.socket_failures += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)  # pacing
            continue
        tally.sockets += 1
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(random.uniform(0.2, 2.0)):
                async for msg in ws:
                    tally.events += msg.type is aiohttp.WSMsgType.TEXT and '"seq"' in msg.data
        await ws.close()


async def stay(session: aiohttp.ClientSession, tally: Tally) -> None:
    """A socket held all run long (reopened with the client's backoff should the server close)."""
    ws, backoff = await open_socket(session), Backoff()
    tally.sockets += 1
    while True:
        backoff.ready()
        async for msg in ws:
            tally.events += msg.type is aiohttp.WSMsgType.TEXT and '"seq"' in msg.data
        ws = await reopen_socket(session, backoff, ws.close_code)


async def break_redis(server: EmbeddedRedis, tally: Tally, times: int, span_s: float) -> None:
    """`times` outages spread over `span_s`: SIGKILL and SIGTERM by turns, then a restart."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for n in range(1, times + 1):
        await asyncio.sleep(start + n * span_s / (times + 1) - loop.time())  # pacing
        await asyncio.to_thread(server.kill if n % 2 else server.stop)
        await asyncio.sleep(OUTAGE_S)  # the outage itself
        await asyncio.to_thread(server.restart)
        tally.restarts += 1
    await asyncio.sleep(start + span_s - loop.time())  # the load goes on to the end of the span


async def all_documents(
    records: Records, tenants: tuple[str, ...]
) -> list[tuple[str, DocumentRecord]]:
    found = []
    for tenant in tenants:
        offset, total = 0, 1
        while offset < total:
            docs, total = await records.list_documents(tenant, offset=offset, limit=200)
            offset += len(docs) or total
            found += [(tenant, doc) for doc in docs]
    return found


def ended(doc: DocumentRecord) -> bool:
    """Done, or failed saying why."""
    return doc.state == "done" or (doc.state == "failed" and bool(doc.error))


@dataclass(frozen=True)
class Held:
    """What the web app holds at a quiet point. Its Redis pool keeps the connections its busiest
    moment since the last restart opened, so their number is not the leak to look for: a
    connection still taken from the pool (`redis_in_use`; the hub's subscription holds one) or
    open on the server without the pool knowing it (`redis_orphans`) is."""

    tasks: int
    fds: int
    redis_connections: int  # CLIENT LIST, by the app's client name
    redis_in_use: int
    redis_orphans: int
    rss: int

    def within(self, before: Held) -> bool:
        """No more tasks, descriptors or connections than `before`, and about its memory."""
        return (
            self.tasks <= before.tasks
            and self.fds - self.pooled_since(before) <= before.fds + FD_SLACK
            and self.redis_in_use <= before.redis_in_use
            and self.redis_orphans <= before.redis_orphans
            and self.rss <= before.rss * (1 + RSS_GROWTH_ALLOWED) + RSS_SLACK
        )

    def pooled_since(self, before: Held) -> int:
        """Connections the app's Redis pool opened since `before` (it keeps them, idle)."""
        return max(0, self.redis_connections - before.redis_connections)

    def __str__(self) -> str:
        return (
            f"tasks {self.tasks}, fds {self.fds}, Redis connections {self.redis_connections} "
            f"({self.redis_in_use} in use, {self.redis_orphans} orphaned), "
            f"RSS {self.rss / 2**20:.1f} MiB"
        )


async def held(redis: Redis, client_name: str, app_redis: Redis) -> Held:
    gc.collect()
    named = sum(1 for c in await redis.client_list() if c.get("name") == client_name)
    pool = app_redis.connection_pool
    in_use = len(pool._in_use_connections)  # redis-py has no public count of these
    return Held(
        tasks=len(asyncio.all_tasks()),
        fds=len(os.listdir("/proc/self/fd")),
        redis_connections=named,
        redis_in_use=in_use,
        redis_orphans=max(0, named - in_use - len(pool._available_connections)),
        rss=rss(),
    )


def rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")
