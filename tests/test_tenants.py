from __future__ import annotations

import pytest

from docpulse.keys import Keys
from docpulse.tenants import InvalidTenant, tenant_of, topic_for, validate_tenant_id


@pytest.mark.parametrize("tenant_id", ["acme", "a", "A-b_9", "x" * 64])
def test_plain_tenant_ids_pass(tenant_id: str) -> None:
    assert validate_tenant_id(tenant_id) == tenant_id
    assert tenant_of(topic_for(tenant_id)) == tenant_id


@pytest.mark.parametrize(
    "tenant_id", ["", "x" * 65, "acme.jobs", "acme*", "ac?me", "[ab]", "a b", "a:b", "a{b}", "é"]
)
def test_ids_that_could_reach_a_key_or_channel_unsafely_are_refused(tenant_id: str) -> None:
    with pytest.raises(InvalidTenant):
        validate_tenant_id(tenant_id)
    with pytest.raises(InvalidTenant):
        topic_for(tenant_id)


@pytest.mark.parametrize("topic", ["acme", "acme.job", "a.b.jobs", "*.jobs", ".jobs"])
def test_topics_must_be_a_tenant_id_and_jobs(topic: str) -> None:
    with pytest.raises(InvalidTenant):
        tenant_of(topic)


def test_every_key_of_a_tenant_names_the_tenant_and_its_channel_as_hash_tag() -> None:
    keys = Keys("ns:").tenant("acme")
    assert keys.channel == "ns:acme.jobs"
    names = [keys.documents, keys.jobs_by_update, keys.job(3), *keys.document_data(7)]
    assert all(name.startswith("dp:{ns:acme.jobs}:") for name in names)
    assert len(set(names)) == len(names)
