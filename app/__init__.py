"""The aiohttp web process: REST API, WebSocket relay, the tenants' pages and the operator's.

It enqueues jobs by name (`docpulse.queue`) and never imports `workers`.
"""
