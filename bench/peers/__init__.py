"""The relays docpulse's fan-out is measured against, each run as its own process.

- `minimal_relay`: the practical limit: one Pub/Sub subscription, bytes forwarded verbatim.
- `socketio_relay`: python-socketio's AsyncServer on aiohttp, rooms per tenant, AsyncRedisManager.
- `broadcaster_relay`: encode/broadcaster's Redis backend behind an aiohttp WebSocket endpoint.

None authenticates: the tenant comes from the query string (`?tenant=ID`).
"""
