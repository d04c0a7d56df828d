"""The control frames the server sends on `/ws`, besides the job events themselves."""

from __future__ import annotations

import struct
from typing import Final

import msgspec

DEGRADED: Final = b'{"op":"degraded"}'
LIVE: Final = b'{"op":"live"}'
PONG: Final = b'{"op":"pong"}'


class Position(msgspec.Struct, frozen=True, tag_field="op"):
    """Where a tenant's event log stands: its epoch and the last seq published."""

    epoch: str
    head: int


class Ready(Position, frozen=True, tag="ready"):
    """First frame: the subscription is live; events after `head` follow."""


class Resync(Position, frozen=True, tag="resync"):
    """Events were lost to this socket (history too short, or a new epoch): reload the REST
    snapshot; events after `head` follow."""


_encoder: Final = msgspec.json.Encoder()


def encode(frame: Ready | Resync) -> bytes:
    return _encoder.encode(frame)


TEXT: Final = 0x81  # FIN + text opcode
PING: Final = 0x89  # FIN + ping opcode


class Frame:
    """One outgoing frame: its payload, and its bytes on the wire, built once and shared.

    Server frames are not masked, and docpulse's sockets do not compress, so a frame's bytes are
    the same for every socket: the hub frames an event once, whatever the number of sockets.
    """

    __slots__ = ("payload", "wire")

    def __init__(self, payload: bytes, opcode: int = TEXT) -> None:
        self.payload = payload
        self.wire = _header(opcode, len(payload)) + payload


def _header(opcode: int, length: int) -> bytes:
    """The opcode byte, then the payload length (RFC 6455, section 5.2)."""
    if length < 126:
        return struct.pack("!BB", opcode, length)
    if length < 1 << 16:
        return struct.pack("!BBH", opcode, 126, length)
    return struct.pack("!BBQ", opcode, 127, length)


class Burst:
    """Frames of one channel taken from one read of Redis, in seq order, and their wire bytes
    concatenated once for every socket: a socket that keeps up gets them in one write."""

    __slots__ = ("events", "lowest", "wire")

    def __init__(self, events: list[tuple[int, Frame]]) -> None:
        self.events = events
        self.lowest = min(seq for seq, _ in events)  # seqs ascend, but a control frame has 0
        self.wire = b"".join(frame.wire for _, frame in events)


# the hub's heartbeat (app/relay/hub.py): one frame for every socket of the process
PING_FRAME: Final = Frame(b"", PING)
