"""The WebSocket relay: `GET /ws`, one Redis subscription per process, fanned out to the sockets.

Modules: `handler` the `/ws` route (authentication, resume point, the only reader of a socket);
`hub` the process's one Pub/Sub connection, its reconnects and heartbeat; `channel` one tenant's
sinks and the seq bookkeeping that repairs gaps from the history; `connection` one socket's sink
(fast lane, backlog, closing); `frames` the control frames and the wire bytes of a frame;
`shutdown` closing every socket on SIGTERM. It imports `docpulse` and aiohttp, never `workers`.

Wire protocol (JSON text frames; README, "WebSocket"):
- server: `{"op":"ready","epoch":E,"head":N}` first; then each job event's JSON exactly as the
  worker published it, with its per-tenant `seq`; `{"op":"pong"}` for each client
  `{"op":"ping"}`; `{"op":"degraded"}` while the process has lost Redis and `{"op":"live"}` once
  it caught up; `{"op":"resync","epoch":E,"head":N}` when events were lost to this socket
  (reload the REST snapshot; events after N follow). WebSocket pings every 25 s (`hub`).
- client: `{"op":"ping"}` only, at most 4,096 bytes; `?since=SEQ&epoch=E` resumes after SEQ.
- close codes: 1001 shutdown (with a reconnect hint, spread over ~8 s), 1003 binary or malformed
  JSON, 1008 unknown op, 1009 over 4,096 bytes, 1011 subscription failed, 1013 the tenant holds
  TENANT_MAX_SOCKETS here, 4008 too slow (its backlog of WS_QUEUE_SIZE frames was full).

The fast lane, and why frames bypass aiohttp's writer: an event reaches the hub as the bytes the
worker published; `frames.Frame` adds the RFC 6455 header once, and `connection.Connection.offer`
hands those same bytes to every socket's `transport.write`. aiohttp's `send_str` would frame the
payload again for each socket and is a coroutine: the hub's one reader would either await every
socket (so one slow peer stalls a tenant) or need a queue and a writer task per socket (memory
for 10,000 idle sockets). Writing the shared bytes directly costs one `write()` per delivery
(per burst: a tenant's events from one read of Redis go out in one write, `hub` "Coalescing"),
no task and no await; the benchmarks put it at 7,300 user-space instructions per delivery
against 10,094 for a minimal `send_str` relay (README, "Benchmarks"). It is sound because server
frames are never masked, compression is off (`compress=False`, so the bytes are the same for
every socket), and each write is whole frames, made synchronously, so it never interleaves
with a frame aiohttp writes (pong, close).

Flow control: the transport pauses its protocol past 256 KiB buffered (`WRITE_BUFFER_LIMIT`).
From then on, and until a socket's opening frames (ready, a resume's history) are out, frames
wait in a bounded backlog that one drainer task writes with `drain()`; past WS_QUEUE_SIZE the
socket is closed 4008 and the other sockets never wait for it.

Ordering: a socket joins its tenant's channel before its history is read, so live events queue
behind the opening; the connection skips live events whose seq the opening already held. The
channel delivers seqs in order and without gaps: a skipped seq, a reconnect or a deaf probe makes
it read the missing events from the history (`docpulse.history`) before anything newer, or send
a resync when the history no longer reaches back.
"""
