"""docpulse's benchmarks (issue 6): `python -m bench` (`make bench`); `--quick` for a short run.

One runner, several suites, one table. Every suite measures its figures and their baselines in the
same run, interleaved (A, B, A, B ...) so that drift on a shared machine hits both alike, and
reports medians. Suites today: `publish` (the cost of one `publish_event`) and `pipeline`
(documents per second through parse -> chunk -> embed, with and without events, against arq's own
floor). A fan-out suite (WebSocket relay) plugs into the same runner: see `bench.suites`.
"""
