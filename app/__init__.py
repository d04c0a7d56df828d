"""The aiohttp web process: REST API, WebSocket relay and status pages.

It enqueues jobs by name (`docpulse.queue`) and never imports `workers`.
"""
