"""The first run on a fresh clone, as a newcomer meets it: `make run` on a terminal, the commands
it prints (run exactly as printed), Ctrl-C, a taken port, `docpulse --help`, and what `docpulse
submit` shows and asks for."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cli.embedded import free_port
from cli.main import main
from docpulse.settings import Settings
from tests.helpers.browser import worker
from tests.helpers.paths import DATA, ROOT
from tests.helpers.processes import docpulse, web_running
from tests.helpers.webtools import SECRET, eventually, tenant_token

VENV_BIN = str(Path(sys.executable).parent)


def newcomer_env(settings: Settings, port: int) -> dict[str, str]:
    """A fresh shell's environment: the venv not activated, no SECRET_KEY, the test's Redis."""
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != VENV_BIN)
    drop = {"SECRET_KEY", "DOCPULSE_DEV", "DOCPULSE_TOKEN", "MAKEFLAGS", "MAKELEVEL", "MFLAGS"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("VIRTUAL_")}
    return env | {
        "PATH": path,
        "PORT": str(port),
        "REDIS_URL": settings.redis_url,
        "DOCPULSE_NAMESPACE": settings.namespace,
    }


@contextlib.contextmanager
def listening_port() -> Iterator[int]:
    """A port something else listens on, as when a second `make run` starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


class Terminal:
    """A pseudo-terminal with a program in its own session, the terminal as its controlling one
    (`setsid --ctty`): what it prints, and Ctrl-C typed as a person types it."""

    def __init__(self) -> None:
        self.master, self._slave = pty.openpty()
        self.output = bytearray()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            ["setsid", "--ctty", *args], stdin=self._slave, stdout=self._slave,
            stderr=self._slave, env=env, cwd=cwd,
        )  # fmt: skip
        os.close(self._slave)
        asyncio.get_running_loop().add_reader(self.master, self._read)

    def _read(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: every process holding the terminal has gone
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self.master)
        self.output += data

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace").replace("\r\n", "\n")

    def ctrl_c(self) -> None:
        os.write(self.master, b"\x03")

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.master)
        os.close(self.master)


@contextlib.asynccontextmanager
async def terminal() -> AsyncIterator[Terminal]:
    term = Terminal()
    try:
        yield term
    finally:
        if term.process is not None and term.process.poll() is None:
            term.ctrl_c()
            with contextlib.suppress(TimeoutError):
                await eventually(term.exited, timeout=10)
            if term.process.poll() is None:
                term.process.kill()
                term.process.wait()
        term.close()


def printed_commands(text: str) -> list[str]:
    """The indented lines `docpulse dev` prints for copying, in order."""
    return [line.strip() for line in text.splitlines() if line.startswith("    ")]


@pytest.mark.e2e
async def test_make_run_prints_commands_that_work_as_printed_and_ctrl_c_exits_0(
    settings: Settings,
) -> None:
    port = free_port()
    async with terminal() as term:
        term.start(["make", "run"], newcomer_env(settings, port), ROOT)
        await eventually(lambda: "Ctrl-C stops everything" in term.text, timeout=12)
        assert f"dashboard: http://127.0.0.1:{port}/" in term.text
        commands = printed_commands(term.text)
        assert commands[0].startswith("TOKEN=ey"), term.text
        # in another terminal: a fresh shell in the repo root, the venv not activated
        shell = await asyncio.create_subprocess_exec(
            "bash", "-e", "-c", "\n".join(commands), cwd=ROOT,
            env=newcomer_env(settings, port), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        async with asyncio.timeout(12):
            out = (await shell.communicate())[0].decode()
        assert shell.returncode == 0, out
        assert re.search(r'\{"document_id":\d+,"job_id":\d+\}', out), out  # curl's upload
        assert "done: parsed, chunked and embedded" in out  # docpulse submit --follow
        term.ctrl_c()
        await eventually(term.exited, timeout=12)
        assert term.process is not None
        assert term.process.returncode == 0, term.text
    after = term.text.split("Ctrl-C stops everything", 1)[1]
    assert "Interrupt" not in after, after
    assert "Error" not in after, after
    assert "exited with status" not in after, after


@pytest.mark.e2e
async def test_dev_on_a_taken_port_says_so_in_one_line_and_starts_nothing(
    settings: Settings,
) -> None:
    with listening_port() as port:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli", "dev", env=newcomer_env(settings, port),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        async with asyncio.timeout(10):
            out = (await process.communicate())[0].decode()
    assert process.returncode == 2, out
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    assert re.fullmatch(
        rf"docpulse dev: port {port} is in use; set PORT=\d+ \(or another free port\)", lines[0]
    ), out


@pytest.mark.e2e
async def test_web_on_a_taken_port_says_so_in_one_line_and_exits_2(settings: Settings) -> None:
    with listening_port() as port:
        env = newcomer_env(settings, port) | {"SECRET_KEY": SECRET, "LOG_FORMAT": "text"}
        args = ["web", "--host", "127.0.0.1", "--port", str(port)]
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli", *args, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        async with asyncio.timeout(15):
            out = (await process.communicate())[0].decode()
    assert process.returncode == 2, out
    assert "Traceback" not in out, out
    assert "Errno" not in out, out
    errors = [line for line in out.splitlines() if "ERROR" in line]
    assert len(errors) == 1, out
    assert f"port {port} is in use; set PORT=" in errors[0]


def test_help_says_what_the_commands_do_and_no_internal_notes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "composition root" not in shown
    assert "later, app" not in shown
    assert "docpulse dev" in shown
    assert "parse, chunk and embed" in shown


def _token(tenant: str) -> str:
    return tenant_token(tenant)


@pytest.mark.e2e
async def test_submit_url_takes_the_tenant_from_the_token(settings: Settings) -> None:
    async with web_running(settings) as (url, _), worker(settings):
        args = ["submit", str(DATA / "notes.md"), "--url", url, "--token", _token("acme")]
        code, out = await docpulse(settings, *args, "--follow")
        assert code == 0, out
        assert "done: parsed, chunked and embedded" in out
        code, out = await docpulse(settings, *args, "--tenant", "globex")
        assert code == 2, out
        assert "the token is for tenant 'acme', not 'globex'" in out
    code, out = await docpulse(settings, "submit", str(DATA / "notes.md"))  # Redis: no token
    assert code == 2, out
    assert "--tenant is needed without --url" in out


@pytest.mark.e2e
async def test_a_refused_upload_draws_no_progress_bars(settings: Settings) -> None:
    async with web_running(settings) as (url, _):
        code, out = await docpulse(
            settings, "submit", str(DATA / "image.png"), "--url", url,
            "--token", _token("acme"), "--follow",
        )  # fmt: skip
    assert code == 2, out
    assert "415 cannot read 'image.png'" in out
    assert "queued" not in out, out
    assert "0%" not in out, out


@pytest.mark.e2e
async def test_after_a_failed_parse_the_later_stages_say_pending_as_the_api_does(
    settings: Settings,
) -> None:
    async with web_running(settings) as (url, _), worker(settings):
        code, out = await docpulse(
            settings, "submit", str(DATA / "corrupt.pdf"), "--url", url,
            "--token", _token("acme"), "--follow",
        )  # fmt: skip
    assert code == 1, out
    assert re.search(r"parse\s.*failed", out), out
    for stage in ("chunk", "embed"):
        assert re.search(rf"{stage}\s.*0%\s+pending", out), out
        assert not re.search(rf"{stage}\s.*queued", out), out
