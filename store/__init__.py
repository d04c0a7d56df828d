"""The storage layer both processes use: document and job records, the tenant caps, and the
Lua scripts that change them atomically.

- `records`: documents, jobs, content, text, chunks and vectors in Redis (the truth that pages
  and the polling API read; events are the news).
- `caps`: the per-tenant upload caps, counted in Redis so every web process sees the same.
- `cancel`: cancel a document, retry one or many, each change one script (cancel.lua,
  retry.lua) with its event.
- `enqueue`: a document's stage jobs on the arq queue together with their records (submit,
  enqueue a stage, abort).
- `arq_jobs`: arq's side of a job (enqueue, requeue a retried one, abort), on the queue's server.
- `pending`: jobs accepted with their records but not yet known to be on arq's queue (the records
  and the queue may be two servers, and no script touches both), and the sweep that queues them.
- `tenant_index`: the set of tenant ids that submitted a document, written beside each submit.
- `overview`: what the operator's page shows (queue, workers, tenants, last failures), read only.

It imports only the contract (`docpulse`), never `app`, `workers`, `cli` nor aiohttp;
tests/test_boundaries.py enforces that.
"""
