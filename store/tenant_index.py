"""The index of tenants: every tenant id that ever submitted a document, for the operator's page.

Nothing else in Redis lists the tenants (their keys are found by name, never by scanning). The id
is added with its own SADD just before the document's script runs (store/enqueue.py): a script
must touch one hash slot on a Redis Cluster, and this key is global, not under a tenant's tag.
Added first, so no stored document's tenant is missing; a tenant whose upload was then refused
is listed with nothing in flight. Tenants that uploaded before the index existed appear with
their next upload.
"""

from __future__ import annotations

from typing import Final

from docpulse.connections import RecordsRedis
from docpulse.keys import Keys

MAX_LISTED: Final = 1000  # tenants the operator's page shows, in id order


async def remember(redis: RecordsRedis, keys: Keys, tenant_id: str) -> None:
    await redis.sadd(keys.tenants, tenant_id)  # type: ignore[misc]  # redis-py: sync-or-async


async def known(redis: RecordsRedis, keys: Keys) -> list[str]:
    """The indexed tenant ids, sorted; at most MAX_LISTED of them."""
    return (await every(redis, keys))[:MAX_LISTED]


async def every(redis: RecordsRedis, keys: Keys) -> list[str]:
    """Every indexed tenant id, sorted (the sweeper of pending enqueues, store/pending.py)."""
    members: set[bytes] = await redis.smembers(keys.tenants)  # type: ignore[misc]
    return sorted(m.decode() for m in members)
