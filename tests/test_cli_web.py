"""`docpulse token` and `docpulse web` as commands, the web process as a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import jwt
import pytest

from docpulse.cli import main
from docpulse.embedded import free_port
from docpulse.settings import Settings
from tests.webtools import SECRET


def test_token_prints_a_token_for_the_tenant(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SECRET_KEY", SECRET)
    assert main(["token", "acme", "--ttl", "60"]) == 0
    claims = jwt.decode(capsys.readouterr().out.strip(), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "acme"
    assert main(["token", "not.a.tenant"]) == 2


def test_token_needs_a_secret_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    assert main(["token", "acme"]) == 2
    assert "SECRET_KEY" in capsys.readouterr().err


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DOCPULSE_DEV")}
    return {
        **env,
        "REDIS_URL": settings.redis_url,
        "DOCPULSE_NAMESPACE": settings.namespace,
        **extra,
    }


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=2) as resp:
        status: int = resp.status
        return status


def test_web_refuses_to_start_without_a_secret_key(settings: Settings) -> None:
    args = [sys.executable, "-m", "docpulse", "web", "--port", str(free_port())]
    done = subprocess.run(args, env=_env(settings), capture_output=True, text=True, timeout=20)
    assert done.returncode == 2
    assert "SECRET_KEY" in done.stdout + done.stderr


@pytest.mark.e2e
@pytest.mark.timeout(20)
def test_web_serves_until_sigterm(settings: Settings) -> None:
    port = free_port()
    args = [sys.executable, "-m", "docpulse", "web", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(args, env=_env(settings, SECRET_KEY=SECRET))
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                assert _get(f"http://127.0.0.1:{port}/readyz") == 200
                break
            except OSError:
                assert process.poll() is None, "the web process exited"
                assert time.monotonic() < deadline, "the web process did not start"
                time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
