"""What `docpulse dev` prints once the web process listens: the dashboard's URL, the demo token
in a variable, and commands that run as printed from the current directory (the sample files
of the checkout, the venv's `docpulse` when the venv is not activated)."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

import docpulse

SAMPLES = Path(docpulse.__file__).resolve().parent.parent / "tests" / "data"


def shown(path: Path) -> str:
    """`path` as typed from the current directory: relative below it, else absolute; quoted."""
    try:
        text = str(path.relative_to(Path.cwd()))
    except ValueError:
        text = str(path)
    return shlex.quote(text)


def docpulse_command(search_path: str | None) -> str:
    """`docpulse` when that is this installation's command on `search_path` ($PATH), else the
    path to it."""
    ours = Path(sys.executable).parent / "docpulse"
    found = shutil.which("docpulse", path=search_path)
    if found is not None and Path(found).resolve() == ours.resolve():
        return "docpulse"
    return shown(ours.absolute())


def sample(name: str) -> str:
    path = SAMPLES / name
    return shown(path) if path.is_file() else f"path/to/{name}"


def first_steps(base: str, token: str, search_path: str | None) -> str:
    """The lines to print for the web app at `base` and a demo `token` of the tenant acme;
    `search_path`: the $PATH the commands will run with."""
    return "\n".join(
        [
            f"docpulse dev: dashboard: {base}/ (sign in with the token below)",
            f"docpulse dev: API: {base}/api, described at {base}/api/openapi.json; "
            f"live events: ws{base.removeprefix('http')}/ws",
            "docpulse dev: a demo token for tenant acme (24 h); in another terminal, from here:",
            "",
            f"    TOKEN={token}",
            f'    curl -H "Authorization: Bearer $TOKEN" -F file=@{sample("notes.md")}'
            f" {base}/api/documents",
            f"    {docpulse_command(search_path)} submit {sample('report.pdf')} --url {base}"
            ' --token "$TOKEN" --follow',
            "",
        ]
    )
