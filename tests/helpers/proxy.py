"""A TCP proxy the tests put between the web app and Redis, to make its connections misbehave.

`freeze()` stops reading on the connections open now and keeps them open: a half-dead link that
neither side notices (a deaf subscription); `thaw()` lets them go on (and notice what happened
meanwhile, such as Redis closing them). New connections forward normally. The upstream sockets
have small receive buffers, so a frozen subscriber's backlog reaches Redis's output buffer soon.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

from cli.embedded import free_port


class Link:
    def __init__(self) -> None:
        self.running = asyncio.Event()
        self.running.set()
        self.tasks: list[asyncio.Task[None]] = []
        self.writers: list[asyncio.StreamWriter] = []


class Proxy:
    def __init__(self, upstream_port: int) -> None:
        self.port = free_port()
        self._upstream_port = upstream_port
        self._links: list[Link] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def freeze(self) -> None:
        for link in self._links:
            link.running.clear()

    def thaw(self) -> None:
        for link in self._links:
            link.running.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self._upstream_port))
        up_reader, up_writer = await asyncio.open_connection(sock=sock, limit=4096)
        link = Link()
        link.writers = [writer, up_writer]
        link.tasks = [
            asyncio.create_task(self._pipe(reader, up_writer, link)),
            asyncio.create_task(self._pipe(up_reader, writer, link)),
        ]
        self._links.append(link)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: Link
    ) -> None:
        try:
            while True:
                await link.running.wait()
                if not (data := await reader.read(4096)):
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            for each in link.writers:
                each.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Proxy]:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        try:
            yield self
        finally:
            self._server.close()
            for link in self._links:
                for task in link.tasks:
                    task.cancel()
                for each in link.writers:
                    each.close()
            tasks = [t for link in self._links for t in link.tasks]
            if tasks:
                await asyncio.wait(tasks)
            await self._server.wait_closed()
