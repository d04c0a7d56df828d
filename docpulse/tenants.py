"""Tenant ids, and the one topic each tenant's job events travel on."""

from __future__ import annotations

import re

TENANT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_TENANT_ID = re.compile(TENANT_ID_PATTERN)
_TOPIC_SUFFIX = ".jobs"


class InvalidTenant(ValueError):
    """A tenant id or topic that could reach a key or channel name unsafely."""


def validate_tenant_id(tenant_id: str) -> str:
    """Return `tenant_id` if it is 1-64 of A-Z a-z 0-9 _ -; no dots, globs or spaces pass."""
    if not isinstance(tenant_id, str) or not _TENANT_ID.fullmatch(tenant_id):
        raise InvalidTenant(f"tenant id must match {TENANT_ID_PATTERN}, got {tenant_id!r:.80}")
    return tenant_id


def topic_for(tenant_id: str) -> str:
    """The ADR's topic of a tenant: `{tenant_id}.jobs`."""
    return validate_tenant_id(tenant_id) + _TOPIC_SUFFIX


def tenant_of(topic: str) -> str:
    """The tenant id of a `{tenant_id}.jobs` topic."""
    if not topic.endswith(_TOPIC_SUFFIX):
        raise InvalidTenant(f"topic must be '{{tenant_id}}.jobs', got {topic!r:.80}")
    return validate_tenant_id(topic[: -len(_TOPIC_SUFFIX)])
