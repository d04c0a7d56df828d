"""Is a TCP port taken, and the one line that says so: `docpulse dev` checks before it starts
anything, `docpulse web` says the same when its own bind fails."""

from __future__ import annotations

import socket
from typing import Final

SEARCH: Final = 100  # ports tried above a taken one for a free one to suggest


def port_in_use(host: str, port: int) -> bool:
    """Whether binding `host:port` fails, as the web process binds it (connections left in
    TIME_WAIT do not count: aiohttp sets SO_REUSEADDR too)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False


def in_use_message(host: str, port: int) -> str:
    """`port 8000 is in use; set PORT=8001 (or another free port)`, naming a port free now."""
    free = next(
        (p for p in range(port + 1, min(port + SEARCH, 65535) + 1) if not port_in_use(host, p)),
        port + 1,
    )
    return f"port {port} is in use; set PORT={free} (or another free port)"
