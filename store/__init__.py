"""The storage layer both processes use: document and job records, the tenant caps, and the
Lua scripts that change them atomically.

- `records`: documents, jobs, content, text, chunks and vectors in Redis (the truth that pages
  and the polling API read; events are the news).
- `caps`: the per-tenant upload caps, counted in Redis so every web process sees the same.
- `cancel`: cancel a document, retry one or many, each change one script (cancel.lua,
  retry.lua) with its event.
- `enqueue`: a document's stage jobs on the arq queue together with their records (submit,
  enqueue a stage, abort).
- `tenant_index`: the set of tenant ids that submitted a document, written beside each submit.
- `overview`: what the operator's page shows (queue, workers, tenants, last failures), read only.

It imports only the contract (`docpulse`), never `app`, `workers`, `cli` nor aiohttp;
tests/test_boundaries.py enforces that.
"""
