"""Everything the web app stores on `web.Application`, as typed keys in one place."""

from __future__ import annotations

import collections
from typing import Final

from aiohttp import web
from arq.connections import ArqRedis

from app.relay.hub import Hub
from docpulse.connections import RecordsRedis
from docpulse.keys import Keys
from docpulse.settings import Settings
from store.cancel import Controls
from store.records import Records

SETTINGS: Final = web.AppKey("settings", Settings)
KEYS: Final = web.AppKey("keys", Keys)
REDIS: Final[web.AppKey[RecordsRedis]] = web.AppKey("redis")  # one Redis or a cluster
ARQ: Final = web.AppKey("arq", ArqRedis)
RECORDS: Final = web.AppKey("records", Records)
CONTROLS: Final = web.AppKey("controls", Controls)  # cancel and retry
HUB: Final = web.AppKey("hub", Hub)
# the open WebSockets, closed with 1001 on shutdown
SOCKETS: Final = web.AppKey("sockets", set[web.WebSocketResponse])
# open WebSockets per tenant on this process, for TENANT_MAX_SOCKETS
TENANT_SOCKETS: Final = web.AppKey("tenant_sockets", collections.Counter[str])
