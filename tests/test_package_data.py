"""A non-editable install (`pip install .`, a wheel) carries the dashboard: templates/ and static/
go into the wheel as package data of `app` (setup.py), and a web process run from anywhere but
the repository serves them from there."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import aiohttp
import pytest

from cli.embedded import EmbeddedRedis, free_port
from tests.helpers.paths import ROOT
from tests.helpers.webtools import SECRET, until_ready

PAGES = ("templates", "static")
BUILD_TIMEOUT_S = 120  # pip builds the wheel in an isolated environment: about 8 s here


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """docpulse's wheel, built by pip as `pip install .` builds it, from a copy of the checkout's
    files (a build/ folder left in the checkout by an earlier build would leak into it)."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    listed = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    files = subprocess.run(listed, cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (ROOT / name).is_file():  # not a file deleted but not yet committed
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    pip = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--quiet",
        "--no-deps",
        "-w",
        str(out),
        str(source),
    ]
    subprocess.run(pip, check=True, timeout=BUILD_TIMEOUT_S)
    return next(out.glob("docpulse-*.whl"))


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel unpacked into a folder of its own, as an installer lays it out in site-packages."""
    site = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return site


def repo_files(name: str) -> set[str]:
    return {p.relative_to(ROOT).as_posix() for p in (ROOT / name).rglob("*") if p.is_file()}


@pytest.mark.timeout(BUILD_TIMEOUT_S + 20)
def test_the_wheel_holds_every_template_and_static_file_under_app(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for name in PAGES:
        assert {f"app/{path}" for path in repo_files(name)} <= names, name
        assert not any(n.startswith(f"{name}/") for n in names), "a top-level package of that name"


@pytest.mark.timeout(BUILD_TIMEOUT_S + 20)
def test_the_wheel_holds_every_lua_script_beside_its_module(wheel: Path) -> None:
    """A script missing from the wheel is an import error of its module, in production only."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    scripts = {p.relative_to(ROOT).as_posix() for p in ROOT.glob("*/*.lua")}
    scripts |= {p.relative_to(ROOT).as_posix() for p in ROOT.glob("*/*/*.lua")}
    assert scripts, "no Lua scripts found"
    assert sorted(scripts - names) == []


@pytest.mark.e2e
@pytest.mark.timeout(BUILD_TIMEOUT_S + 20)  # the first test of the module builds the wheel
async def test_a_web_process_run_from_the_wheel_elsewhere_serves_the_pages(
    installed: Path, valkey: EmbeddedRedis, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(installed),  # ahead of the editable install of this checkout
        "REDIS_URL": valkey.url,
        "DOCPULSE_NAMESPACE": f"wheel-{uuid.uuid4().hex[:12]}:",
        "SECRET_KEY": SECRET,
    }
    where = "import app.pages as p; print(p.__file__, p.TEMPLATES, p.STATIC, sep='\\n')"
    found = subprocess.run(
        [sys.executable, "-c", where], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert found.returncode == 0, found.stderr
    assert all(Path(line).is_relative_to(installed) for line in found.stdout.split()), found.stdout
    port = free_port()
    command = [sys.executable, "-m", "cli", "web", "--host", "127.0.0.1", "--port", str(port)]
    process = await asyncio.create_subprocess_exec(
        *command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await until_ready(url, process)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/signin") as resp:
                assert resp.status == 200
                assert 'name="token"' in await resp.text()
            for path in repo_files("static"):
                async with session.get(f"{url}/{path}") as resp:
                    assert resp.status == 200, path
                    assert await resp.read() == (ROOT / path).read_bytes(), path
    finally:
        process.terminate()
        await process.wait()
