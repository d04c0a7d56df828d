"""The control frames the server sends on `/ws`, besides the job events themselves."""

from __future__ import annotations

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
