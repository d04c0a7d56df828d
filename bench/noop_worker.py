"""arq's floor: three no-op jobs per document, each enqueueing the next.

Run as `python -m bench.noop_worker` (REDIS_URL, DOCPULSE_NAMESPACE, WORKER_* as for docpulse).

The worker is docpulse's own arq configuration (`workers.worker.worker_settings`: msgspec
serializer, WORKER_POLL_DELAY, WORKER_CONCURRENCY, abort polling, kept results) with these
functions instead of the stages, so the pipeline's documents per second can be read against
what arq alone allows. Like a stage, each job enqueues its successor under a job id of its own.
"""

from __future__ import annotations

from typing import Any, Final

from arq import func
from arq.connections import ArqRedis
from arq.worker import Worker

from docpulse.keys import Keys
from docpulse.logs import configure_logging
from docpulse.settings import Settings
from workers.worker import worker_settings

NOOP_JOBS: Final = ("noop_1", "noop_2", "noop_3")


def noop_job_id(keys: Keys, step: int, item: int) -> str:
    return f"{keys.namespace}noop-{step}-{item}"


async def enqueue_noop(arq: ArqRedis, keys: Keys, step: int, item: int) -> None:
    await arq.enqueue_job(
        NOOP_JOBS[step - 1], item, _job_id=noop_job_id(keys, step, item), _queue_name=keys.queue
    )


async def noop_1(ctx: dict[str, Any], item: int) -> None:
    await enqueue_noop(ctx["redis"], ctx["keys"], 2, item)


async def noop_2(ctx: dict[str, Any], item: int) -> None:
    await enqueue_noop(ctx["redis"], ctx["keys"], 3, item)


async def noop_3(ctx: dict[str, Any], item: int) -> None:
    return None


def create_noop_worker(settings: Settings, **kw: Any) -> Worker:
    options = worker_settings(settings)
    options.update(
        functions=[
            func(noop_1, name="noop_1"),
            func(noop_2, name="noop_2"),
            func(noop_3, name="noop_3"),
        ],
        on_startup=None,
        on_shutdown=None,
        ctx={"keys": Keys(settings.namespace)},
    )
    return Worker(**{**options, **kw})


def main() -> None:
    configure_logging()
    create_noop_worker(Settings.from_env()).run()


if __name__ == "__main__":
    main()
