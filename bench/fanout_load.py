"""A load-generator process of the fan-out suite: many WebSocket clients, one event loop.

`python -m bench.fanout_load` reads one JSON command per line on stdin and answers each with one
JSON line on stdout (`bench.fanout_procs.Receivers` drives it):

- `connect`: open sockets to relays (`kind`: docpulse, plain or socketio), wait until each is
  ready (docpulse: its `ready` frame; Socket.IO: the namespace's CONNECT; plain: the upgrade);
- `start`: count from now on only events of this trial (their `document_id` is the trial's id)
  and record each one's latency, now minus the event's `ts`; answers how many of the arm's
  sockets are still open;
- `stats`: the trial's count, first and last arrival, this process's CPU seconds, and the
  latencies (ms, float32) written to a file;
- `count`: the trial's count so far; `seen`: how many sockets of an arm have had an event of a
  trial (the warm-up's check);
- `close`: close an arm's sockets; `cycles`: connect, wait for ready and close, `count` times.
"""

from __future__ import annotations

import asyncio
import sys
import time
from array import array
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Final

import aiohttp
import msgspec

from bench.peers.serve import raise_open_files
from bench.procstat import cpu_seconds

CONNECT_CONCURRENCY: Final = 25


class Stamp(msgspec.Struct):
    """What a receiver reads of an event; other frames (ready, pong) decode to zeros."""

    document_id: int = 0
    ts: datetime | None = None


_stamp: Final = msgspec.json.Decoder(Stamp)
_socketio_event: Final = msgspec.json.Decoder(tuple[str, Stamp])


@dataclass
class Trial:
    id: int = -1
    count: int = 0
    first: float = 0.0
    last: float = 0.0
    latencies_ms: array[float] = field(default_factory=lambda: array("f"))


@dataclass
class Socket:
    ws: aiohttp.ClientWebSocketResponse
    last_trial: int = 0
    reader: asyncio.Task[None] | None = None


class Load:
    def __init__(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=True)
        )
        self.arms: dict[str, list[Socket]] = {}
        self.trial = Trial()

    def _take(self, sock: Socket, stamp: Stamp) -> None:
        trial = self.trial
        if stamp.document_id <= 0 or stamp.ts is None:
            return
        sock.last_trial = stamp.document_id
        if stamp.document_id != trial.id:
            return
        now = time.time()
        trial.latencies_ms.append((now - stamp.ts.timestamp()) * 1000.0)
        trial.count += 1
        if not trial.first:
            trial.first = now
        trial.last = now

    async def _read(self, sock: Socket, kind: str) -> None:
        ws = sock.ws
        while True:
            msg = await ws.receive()
            if msg.type is not aiohttp.WSMsgType.TEXT:
                return
            data: str = msg.data
            if kind != "socketio":
                self._take(sock, _stamp.decode(data))
            elif data.startswith("42"):
                self._take(sock, _socketio_event.decode(data[2:])[1])
            elif data == "2":  # Engine.IO ping
                await ws.send_str("3")

    async def _open(self, url: str, kind: str, token: str | None) -> Socket:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        ws = await self.session.ws_connect(url, headers=headers, max_msg_size=0)
        if kind == "docpulse":
            first = await ws.receive_str()
            if '"ready"' not in first:
                raise RuntimeError(f"docpulse's first frame was not ready: {first[:80]}")
        elif kind == "socketio":
            await ws.receive_str()  # Engine.IO OPEN
            await ws.send_str("40")
            reply = await ws.receive_str()
            if not reply.startswith("40"):
                raise RuntimeError(f"Socket.IO did not connect: {reply[:80]}")
        return Socket(ws)

    async def connect(self, arms: list[dict[str, Any]]) -> dict[str, Any]:
        """Open sockets to several relays side by side: `arms` are {arm, kind, sockets} with
        `sockets` as [url, token or null, count] triples. Answers each arm's seconds."""
        seconds = await asyncio.gather(*(self._connect(**arm) for arm in arms))
        return {"seconds": {arm["arm"]: s for arm, s in zip(arms, seconds, strict=True)}}

    async def _connect(self, arm: str, kind: str, sockets: list[list[Any]]) -> float:
        began = time.perf_counter()
        opened = self.arms.setdefault(arm, [])
        jobs = [(url, token) for url, token, count in sockets for _ in range(count)]

        async def one(url: str, token: str | None) -> None:
            sock = await self._open(url, kind, token)
            sock.reader = asyncio.create_task(self._read(sock, kind))
            opened.append(sock)

        await _bounded([partial(one, url, token) for url, token in jobs], CONNECT_CONCURRENCY)
        return time.perf_counter() - began

    async def close(self, arm: str) -> dict[str, Any]:
        sockets = self.arms.pop(arm, [])
        await _bounded([partial(_close, sock) for sock in sockets], 200)
        return {"closed": len(sockets)}

    async def cycles(self, url: str, kind: str, token: str | None, count: int) -> dict[str, Any]:
        async def one() -> None:
            sock = await self._open(url, kind, token)
            await sock.ws.close()

        await _bounded([one] * count, CONNECT_CONCURRENCY)
        return {"cycles": count}

    def start(self, trial: int, arm: str) -> dict[str, Any]:
        self.trial = Trial(id=trial)
        return {"alive": self._alive(arm)}

    def _alive(self, arm: str) -> int:
        return sum(
            1 for s in self.arms.get(arm, []) if s.reader is not None and not s.reader.done()
        )

    def stats(self, path: str) -> dict[str, Any]:
        trial = self.trial
        Path(path).write_bytes(trial.latencies_ms.tobytes())
        return {"count": trial.count, "first": trial.first, "last": trial.last}

    def count(self) -> dict[str, Any]:
        return {"count": self.trial.count}

    def seen(self, arm: str, trial: int) -> dict[str, Any]:
        seen = sum(1 for s in self.arms.get(arm, []) if s.last_trial >= trial)
        return {"seen": seen, "alive": self._alive(arm)}


async def _close(sock: Socket) -> None:
    await sock.ws.close()
    if sock.reader is not None:
        sock.reader.cancel()
        await asyncio.gather(sock.reader, return_exceptions=True)


async def _bounded(jobs: list[Callable[[], Awaitable[None]]], limit: int) -> None:
    queue = iter(jobs)

    async def worker() -> None:
        for job in queue:
            await job()

    await asyncio.gather(*(worker() for _ in range(min(limit, len(jobs)) or 1)))


async def _serve() -> None:
    load = Load()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**24)  # a connect command names every socket
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            command = msgspec.json.decode(line)
            op = command.pop("op")
            try:
                if op in ("start", "stats", "seen", "count"):
                    reply = getattr(load, op)(**command)
                else:
                    reply = await getattr(load, op)(**command)
                reply["cpu"] = cpu_seconds()
            except Exception as exc:  # reported to the suite, which raises it there
                reply = {"error": f"{op}: {type(exc).__name__}: {exc}"}
            sys.stdout.buffer.write(msgspec.json.encode(reply) + b"\n")
            sys.stdout.flush()
    finally:
        for arm in list(load.arms):
            await load.close(arm)
        await load.session.close()


if __name__ == "__main__":
    raise_open_files()
    asyncio.run(_serve())
