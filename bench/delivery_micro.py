"""The relay's delivery path alone, for an instruction count: `python bench/delivery_micro.py ARM`.

ARM `docpulse`: job events go through the hub as its reader hands them over (`Hub._dispatch`:
stamp, lag, channel order, framing once, `Connection.offer` per socket); ARM `minimal`: the
minimal relay's loop, `await send_frame(data, TEXT)` per socket (aiohttp's `WebSocketWriter`,
what `WebSocketResponse.send_frame` calls). Every socket is one end of a Unix socket pair whose
other end nobody reads during the run (the events fit in the kernel's buffer), so only the
server's side is counted. Run it under callgrind, then again with `--baseline` (the same events
made, none delivered); the difference over events x sockets per tenant is one delivery's cost:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null python bench/delivery_micro.py ARM

`--loop uvloop` runs it on uvloop's event loop instead of asyncio's (its transports' `write`
then is uvloop's). To count an older version, put a `git archive` copy of its app/ and
docpulse/ first on PYTHONPATH (this file imports nothing from bench/).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from collections.abc import Callable
from typing import Any

import msgspec
from aiohttp import WSMsgType
from aiohttp._websocket.writer import WebSocketWriter
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_writer import StreamWriter
from redis.asyncio import Redis

from app.relay.channel import Channel
from app.relay.connection import Connection
from app.relay.hub import Hub
from docpulse.events import make_event
from docpulse.keys import Keys

SOCKET_BUFFER = 1 << 20
VERIFY = "--verify" in sys.argv


async def _transports(count: int) -> tuple[list[Any], list[socket.socket]]:
    loop = asyncio.get_running_loop()
    transports, peers = [], []
    for _ in range(count):
        ours, theirs = socket.socketpair()
        for sock in (ours, theirs):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        transport, protocol = await loop.connect_accepted_socket(lambda: BaseProtocol(loop), ours)
        transports.append((transport, protocol))
        peers.append(theirs)
    return transports, peers


def _payloads(events: int, tenants: int) -> list[tuple[int, bytes]]:
    """Job events as the publish path sends them (a seq per tenant), round-robin over tenants."""
    out = []
    for index in range(events):
        tenant = index % tenants
        event = make_event(
            "parse", "progress", tenant_id=f"t{tenant}", document_id=1, job_id=index + 1,
            progress=index % 101,
        )  # fmt: skip
        stamped = msgspec.structs.replace(event, seq=index // tenants + 1)
        out.append((tenant, msgspec.json.encode(stamped)))
    return out


async def _docpulse(events: list[tuple[int, bytes]], tenants: int, per_tenant: int) -> None:
    keys = Keys("micro:")
    hub = Hub(Redis(), keys, log=None)  # type: ignore[arg-type] # no history is read
    loop = asyncio.get_running_loop()
    transports, _peers = await _transports(tenants * per_tenant)
    names = []
    for tenant in range(tenants):
        channel = Channel(f"t{tenant}", keys.tenant(f"t{tenant}"))
        channel.start(("epoch", 0))
        for transport, protocol in transports[tenant * per_tenant : (tenant + 1) * per_tenant]:
            # no WebSocketResponse: the sink writes frames to the transport itself
            conn = Connection(None, transport, StreamWriter(protocol, loop), 256)  # type: ignore[arg-type]
            # None today; an older open() returned a coroutine, hence the check below
            opened: Any = conn.open([], after=0)  # type: ignore[func-returns-value]
            if asyncio.iscoroutine(opened):  # the older, awaited open()
                await opened
            channel.sinks.add(conn)
        name = keys.channel(f"t{tenant}.jobs").encode()
        hub._channels[name] = channel
        names.append(name)
    for tenant, data in events:
        hub._dispatch({"type": "message", "channel": names[tenant], "data": data})
    _check(transports, _peers)


async def _minimal(events: list[tuple[int, bytes]], tenants: int, per_tenant: int) -> None:
    transports, _peers = await _transports(tenants * per_tenant)
    writers = [WebSocketWriter(protocol, transport) for transport, protocol in transports]
    sockets = {
        f"t{t}".encode(): writers[t * per_tenant : (t + 1) * per_tenant] for t in range(tenants)
    }
    channels = [f"t{t}".encode() for t in range(tenants)]
    for tenant, data in events:
        message: dict[str, Any] = {"type": "pmessage", "channel": channels[tenant], "data": data}
        if message["type"] != "pmessage":
            continue
        for writer in list(sockets.get(message["channel"], ())):
            await writer.send_frame(message["data"], WSMsgType.TEXT)
    _check(transports, _peers)


def _check(transports: list[Any], peers: list[socket.socket]) -> None:
    buffered = sum(transport.get_write_buffer_size() for transport, _ in transports)
    if buffered:
        print(f"warning: {buffered} bytes left in transports: the peers' buffers filled")
    if VERIFY:
        received = b"".join(peer.recv(SOCKET_BUFFER, socket.MSG_DONTWAIT) for peer in peers)
        frames = received.count(b'"seq":')
        print(f"{len(received):,} bytes received, {frames:,} events")


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("arm", choices=("docpulse", "minimal"))
    parser.add_argument("--events", type=int, default=3000, help="in all, over the tenants")
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--per-tenant", type=int, default=10)
    parser.add_argument("--verify", action="store_true", help="count what the peers received")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument(
        "--baseline", action="store_true", help="everything but the delivery: subtract this run"
    )
    args = parser.parse_args()
    events = _payloads(args.events, args.tenants)
    if args.baseline:
        events = []
    run = _docpulse if args.arm == "docpulse" else _minimal
    with asyncio.Runner(loop_factory=_loop_factory(args.loop)) as runner:
        runner.run(run(events, args.tenants, args.per_tenant))
    return 0


if __name__ == "__main__":
    sys.exit(main())
