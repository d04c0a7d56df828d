"""ADR 0004's rule, enforced: workers never import the web layer, the web layer never imports job
code, and the contract (event schema and bus) imports neither aiohttp nor either side."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# the composition root may start either process; nothing else in the contract may reach them
CONTRACT_EXEMPT = frozenset({"cli.py"})


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def offenders(package: str, forbidden: set[str], exempt: frozenset[str] = frozenset()) -> list[str]:
    """Files under `package` that import a top-level package in `forbidden`."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        tops = {name.split(".")[0] for name in imported_modules(path)}
        if path.name not in exempt and tops & forbidden:
            found.append(f"{path.relative_to(ROOT)} imports {sorted(tops & forbidden)}")
    return found


def test_workers_never_import_the_web_layer() -> None:
    assert offenders("workers", {"app", "aiohttp", "aiohttp_jinja2"}) == []


def test_the_web_layer_never_imports_job_code() -> None:
    assert offenders("app", {"workers"}) == []


def test_the_contract_imports_neither_side_nor_aiohttp() -> None:
    assert offenders("docpulse", {"app", "workers", "aiohttp"}, CONTRACT_EXEMPT) == []


def test_the_rule_checker_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from app.views import x\nimport workers.jobs\n")
    assert imported_modules(bad) == {"app.views", "workers.jobs"}


@pytest.mark.parametrize("module", ["docpulse.bus", "docpulse.events", "docpulse.queue"])
def test_importing_the_contract_loads_no_web_or_job_code(module: str) -> None:
    probe = (
        f"import sys, {module}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'aiohttp', 'app', 'workers'})\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
