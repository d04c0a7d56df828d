"""The reconnect storm's load generator, a process of its own:
`python -m tests.helpers.storm_clients`.

Opens COUNT sockets to URL's /ws (tokens from the STORM_TOKENS environment variable, comma
separated, one session per token), prints `ready N` once all are ready, then waits for the server
to close them. Each client comes back through cli.client's shipped policy (`reopen_socket` with a
`Backoff`), holds the new socket, and once every client is back (or DEADLINE seconds passed) one
JSON line is printed: per client the close code, the monotonic times at which the policy had its
successful try due and at which its new `ready` came, and the attempts it took. CLOCK_MONOTONIC is
the machine's, so the test can compare times.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

import aiohttp

from cli.client import Backoff, open_socket, reopen_socket
from tests.helpers.webtools import authorization

OPENING_AT_ONCE = 100  # handshakes in flight while the sockets are first opened


class Opening:
    """Paces the first handshakes and tells when all `total` sockets are ready."""

    def __init__(self, total: int) -> None:
        self.total, self.ready = total, 0
        self.slots = asyncio.Semaphore(OPENING_AT_ONCE)
        self.all_ready = asyncio.Event()

    def one_ready(self) -> None:
        self.ready += 1
        if self.ready == self.total:
            self.all_ready.set()


async def client(session: aiohttp.ClientSession, opening: Opening) -> dict[str, Any]:
    async with opening.slots:
        ws = await open_socket(session)
    backoff = Backoff()
    backoff.ready()
    opening.one_ready()
    async for _ in ws:  # frames before the close are not this test's business
        pass
    code, closed_at = ws.close_code, time.monotonic()
    ws = await reopen_socket(session, backoff, code)
    return {
        "code": code,
        "closed": closed_at,
        "ready": time.monotonic(),
        "due": backoff.due_at,
        "attempts": backoff.attempt,
        "ws": ws,
    }


async def storm(url: str, tokens: list[str], count: int, deadline_s: float) -> dict[str, Any]:
    sessions = [
        aiohttp.ClientSession(
            url,
            headers=authorization(token),
            connector=aiohttp.TCPConnector(limit=0),
        )
        for token in tokens
    ]
    opening = Opening(count)
    tasks = [
        asyncio.create_task(client(sessions[i % len(sessions)], opening)) for i in range(count)
    ]
    try:
        await asyncio.wait_for(opening.all_ready.wait(), deadline_s)
        print(f"ready {count}", flush=True)
        done, pending = await asyncio.wait(tasks, timeout=deadline_s)
        results = [task.result() for task in done if task.exception() is None]
        errors = [repr(task.exception()) for task in done if task.exception() is not None]
        for result in results:
            await result.pop("ws").close()
        return {"clients": results, "errors": errors[:5], "pending": len(pending)}
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for session in sessions:
            await session.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--deadline", type=float, default=60.0)
    args = parser.parse_args()
    tokens = os.environ["STORM_TOKENS"].split(",")
    outcome = asyncio.run(storm(args.url, tokens, args.count, args.deadline))
    print(json.dumps(outcome), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
