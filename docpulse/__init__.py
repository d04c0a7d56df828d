"""docpulse: the contract shared by the web app and the workers.

This package holds what both processes import: settings, the event schema, the event bus, Redis
key names, document and job records, and the names of the arq jobs. It never imports `app`
(the aiohttp web process) or `workers` (the arq job code); a test enforces that.
"""
