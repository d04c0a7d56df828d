"""The four relays of the fan-out suite, each a server process of its own, and their clients.

- docpulse: `python -m docpulse web` (auth, hub, per-socket queues, seq, history);
- minimal: `bench.peers.minimal_relay`, the practical limit (the baseline of every ratio);
- socketio: `bench.peers.socketio_relay` (python-socketio + AsyncRedisManager);
- broadcaster: `bench.peers.broadcaster_relay` (encode/broadcaster, Redis backend).

docpulse may run in several arms at once: `docpulse@<commit>` (an older version) and
`docpulse+<loop>` (on EVENT_LOOP=<loop>; plain `docpulse` runs on the environment's setting).

Each has a namespace of its own, so an event published for one arm reaches no other.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from app.auth import issue_token
from bench.fanout_procs import Server, free_port, server
from bench.processes import REPO_ROOT

DOCPULSE: Final = "docpulse"
MINIMAL: Final = "minimal"
SOCKETIO: Final = "socketio"
BROADCASTER: Final = "broadcaster"
ARMS: Final = (DOCPULSE, MINIMAL, SOCKETIO, BROADCASTER)
WEB_CLIENT_NAME: Final = "bench-web"  # docpulse web's Redis connections, in CLIENT LIST
WS_QUEUE_SIZE: Final = 100_000  # a saturation burst never fills a socket's queue
_PEERS: Final = {
    MINIMAL: "bench.peers.minimal_relay",
    SOCKETIO: "bench.peers.socketio_relay",
    BROADCASTER: "bench.peers.broadcaster_relay",
}


@dataclass
class Arm:
    name: str
    namespace: str
    server: Server
    secret: str = ""
    _tokens: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The load generator's protocol: docpulse (bearer token, ready), socketio, plain."""
        if self.is_docpulse:
            return "docpulse"
        return "socketio" if self.name == SOCKETIO else "plain"

    @property
    def is_docpulse(self) -> bool:
        """docpulse, another version (`docpulse@<commit>`) or on a loop (`docpulse+uvloop`)."""
        return is_docpulse(self.name)

    @property
    def feed(self) -> str:
        """How the publisher feeds it: docpulse's EventBus, or socketio's Redis manager."""
        return "socketio" if self.name == SOCKETIO else "bus"

    def url(self, tenant: str) -> str:
        base = f"ws://127.0.0.1:{self.server.port}"
        if self.is_docpulse:
            return f"{base}/ws"
        if self.name == SOCKETIO:
            return f"{base}/socket.io/?EIO=4&transport=websocket&tenant={tenant}"
        return f"{base}/ws?tenant={tenant}"

    def token(self, tenant: str) -> str | None:
        if not self.is_docpulse:
            return None
        if tenant not in self._tokens:
            self._tokens[tenant] = issue_token(self.secret, tenant, 3600)
        return self._tokens[tenant]


def is_docpulse(name: str) -> bool:
    return name.split("@")[0].split("+")[0] == DOCPULSE


@contextlib.asynccontextmanager
async def start_arm(
    name: str, redis_url: str, namespace: str, log_dir: Path, checkout: Path | None = None
) -> AsyncIterator[Arm]:
    """`checkout`: run docpulse from this copy of the repository instead (an older version)."""
    port = free_port()
    log = log_dir / f"fanout-{name}.log"
    if is_docpulse(name):
        secret = secrets.token_urlsafe(32)
        loop = {"EVENT_LOOP": name.split("+")[1]} if "+" in name else {}
        env = {
            **os.environ,
            "REDIS_URL": f"{redis_url}?client_name={WEB_CLIENT_NAME}",
            "SECRET_KEY": secret,
            "DOCPULSE_NAMESPACE": namespace,
            "WS_QUEUE_SIZE": str(WS_QUEUE_SIZE),
            "LOG_FORMAT": "json",
            **loop,
        }
        args = ["-m", "cli", "web", "--host", "127.0.0.1", "--port", str(port)]
        async with server(args, env, log, port, checkout or REPO_ROOT) as running:
            yield Arm(name, namespace, running, secret)
        return
    args = ["-m", _PEERS[name], "--port", str(port), "--redis", redis_url]
    async with server([*args, "--namespace", namespace], None, log, port) as running:
        yield Arm(name, namespace, running)
