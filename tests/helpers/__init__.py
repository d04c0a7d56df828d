"""What the tests share, beside the fixtures of tests/conftest.py; no test module imports another.

- `paths`: ROOT (the repository) and DATA (the sample documents).
- `webtools`: the test secret, settings with it (`keyed`), the one source of tenant tokens and
  Authorization headers (`tenant_token`, `signed`, `bearer`, ACME, GLOBEX; the operator's:
  `operator_token`, OPERATOR), the test client's
  type (`AppClient`, `MakeClient`), signing in on the pages (`sign_in`), `eventually` (wait on a
  condition, sync or async), reading a relay socket until a condition holds, and waiting for a
  web process to be ready.
- `jobs`: submit a document as an upload does, run real arq workers (burst or in a task), tell
  when a document ended, cancel and retry documents (`controls`), settings with the records and
  arq's queue on two servers (`on_two_servers`; conftest's `split_settings` fixture uses it).
- `redistools`: `Listener` (a raw Pub/Sub subscriber), `awaited` (a redis-py reply its types
  leave sync-or-async), `drop_subscribers`.
- `cluster`: a local Valkey Cluster of 3 primaries and 3 replicas (`ValkeyCluster`, the
  `valkey_cluster` fixture's), with `node_of(key)`, `migrate_slot` and `fail_over`.
- `sharded`: `ShardedListener`, a sharded Pub/Sub subscriber on a cluster (valkey-glide).
- `processes`: the Procfile's lines, `docpulse ...` and `docpulse web` as real processes
  (`docpulse_process`: web or worker in production mode, its output kept), `stop`, /proc.
- `rawhttp`: requests aiohttp's HTTP parser refuses, carrying secrets, sent as raw bytes.
- `fakes`: small hand-written stand-ins (an embedder that blocks until released, a stage that
  works until released, stages and an embedder that fail once).
- `proxy`: a TCP proxy between the web app and Redis whose connections a test can freeze.
- `browser`: the machine's Chromium through Playwright, the app on a real port, a signed-in page.
- `soak_load`: the steady load of tests/test_soak.py.
- `storm_clients`: the reconnect storm's clients, a process of their own
  (`python -m tests.helpers.storm_clients`, started by tests/test_storm.py).
"""
