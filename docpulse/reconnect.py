"""The reconnect policy of every /ws client, defined once.

`docpulse submit --url` (cli/client.py) imports `POLICY`; the browser's static/js/live.js reads
it from the page, where app/pages.py renders `POLICY.as_json()` into a
`<script type="application/json" id="reconnect-policy">` (data, not code: the CSP allows it).

- Backoff: full jitter, a delay uniform over [0, min(max_s, base_s * 2**attempt)), so that
  thousands of clients dropped together do not come back together. `attempt` counts the tries
  since the last socket that stayed ready `stable_s`.
- A restart (a close with one of `restart_codes`, 1001 going away or 1012 service restart) sends
  every client away at once, and the next process may listen only seconds later: the backoff
  starts at `restart_attempt` (a 16 s cap), else the clients closed last would all be back in
  the second the new process listens.
- The browser falls back to polling GET /api/jobs every `poll_s` once `failures_before_polling`
  sockets in a row never became ready, and goes on trying the socket by the backoff above; it
  never gives up. The command line reads the document record instead (cli/client.py).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Final

import msgspec


class ReconnectPolicy(msgspec.Struct, frozen=True, kw_only=True):
    base_s: float = 0.5
    max_s: float = 20.0
    stable_s: float = 10.0  # a socket ready this long resets the backoff
    restart_attempt: int = 5
    restart_codes: frozenset[int] = frozenset({1001, 1012})
    failures_before_polling: int = 3
    poll_s: float = 2.0

    def cap(self, attempt: int) -> float:
        """The longest delay before try `attempt` (0 is the first reconnect)."""
        return min(self.max_s, self.base_s * 2.0 ** min(attempt, 32))

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Full jitter: uniform over [0, cap(attempt))."""
        return rand() * self.cap(attempt)

    def as_json(self) -> dict[str, Any]:
        """What the page carries for live.js (the codes as a sorted list)."""
        fields: dict[str, Any] = msgspec.to_builtins(self, order="sorted")
        fields["restart_codes"] = sorted(self.restart_codes)
        return fields


POLICY: Final = ReconnectPolicy()
