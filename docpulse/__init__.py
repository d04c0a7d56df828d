"""docpulse: the contract shared by the web app and the workers.

This package holds what both processes import: settings, tenant ids, the event schema, the event
bus with its history and outbox, Redis key names, the names of the arq jobs and their serializer,
the file types docpulse reads, connections, logs, the shared metrics, and the reconnect policy of
every /ws client (`reconnect.py`: the command line imports it, the pages render it for the
browser). The storage layer (records, caps) is `store`, the command line `cli`. It never imports
`app` (the aiohttp web process), `workers` (the arq job code), `store` or `cli`, nor aiohttp;
tests/test_boundaries.py enforces that.
"""
