from __future__ import annotations

import pytest

from docpulse.connections import arq_redis_settings, redis_client
from docpulse.settings import Settings, SettingsError


def test_settings_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {"REDIS_URL": "redis://h:1/2", "MAX_DOCUMENT_BYTES": "10", "PUBLISH_EVENTS": "off",
         "JOB_TIMEOUT": "2.5", "DOCPULSE_NAMESPACE": "x:"}
    )  # fmt: skip
    assert settings.redis_url == "redis://h:1/2"
    assert settings.max_document_bytes == 10
    assert settings.publish_events is False
    assert settings.job_timeout_s == 2.5
    assert settings.namespace == "x:"
    assert Settings.from_env({}) == Settings()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MAX_DOCUMENT_BYTES": "big"}, "MAX_DOCUMENT_BYTES='big' is not a valid int"),
        ({"PUBLISH_EVENTS": "maybe"}, "PUBLISH_EVENTS"),
        ({"CHUNK_OVERLAP": "1000"}, "CHUNK_OVERLAP"),
        ({"REDIS_SSL_CERT_REQS": "sometimes"}, "REDIS_SSL_CERT_REQS"),
        ({"MAX_ATTEMPTS": "0"}, "MAX_ATTEMPTS"),
    ],
)
def test_bad_values_say_which_variable_is_wrong(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


async def test_rediss_urls_accept_heroku_self_signed_certificates_by_default() -> None:
    settings = Settings(redis_url="rediss://:secret@example.invalid:6380")
    arq = arq_redis_settings(settings)
    assert arq.ssl is True
    assert arq.ssl_cert_reqs == "none"
    client = redis_client(settings)
    assert client.connection_pool.connection_kwargs["ssl_cert_reqs"] == "none"
    await client.aclose()


async def test_certificate_checks_can_be_required() -> None:
    settings = Settings(
        redis_url="rediss://example.invalid:6380?ssl_cert_reqs=required",
        redis_ssl_cert_reqs="none",
    )
    assert arq_redis_settings(settings).ssl_cert_reqs == "required"
    plain = arq_redis_settings(Settings(redis_url="redis://example.invalid:6379/3"))
    assert plain.ssl is False
    assert plain.database == 3
