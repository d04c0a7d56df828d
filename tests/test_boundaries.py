"""ADR 0004's rule, enforced for every package, with no exemptions: each package's docstring says
what it may import, and this is that list.

- `docpulse`, the contract (settings, events, bus, keys, job names...): none of the others, nor
  aiohttp.
- `store`, the storage layer (records, caps and their Lua): the contract only, nor aiohttp.
- `workers`: the contract and the store, never the web layer nor aiohttp.
- `app`: the contract and the store, never job code.
- `cli`, the composition root: all of them; only tests and benchmarks import it.
- `tests`: what tests share is in `tests.helpers`; no file imports a test module or conftest.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT

OURS = frozenset({"docpulse", "store", "workers", "app", "cli"})
WEB = frozenset({"aiohttp", "aiohttp_jinja2"})
# what each package may import among OURS (and, for the contract and store, what else it may not)
ALLOWED: dict[str, frozenset[str]] = {
    "docpulse": frozenset({"docpulse"}),
    "store": frozenset({"docpulse", "store"}),
    "workers": frozenset({"docpulse", "store", "workers"}),
    "app": frozenset({"docpulse", "store", "app"}),
    "cli": OURS,
}
ALSO_FORBIDDEN: dict[str, frozenset[str]] = {
    "docpulse": WEB,
    "store": WEB,
    "workers": WEB,
    "app": frozenset(),
    "cli": frozenset(),
}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def offenders(root: Path, package: str) -> list[str]:
    """Files under `root/package` that import a top-level package the rules forbid it."""
    forbidden = (OURS - ALLOWED[package]) | ALSO_FORBIDDEN[package]
    found = []
    for path in sorted((root / package).rglob("*.py")):
        tops = {name.split(".")[0] for name in imported_modules(path)}
        if tops & forbidden:
            found.append(f"{path.relative_to(root)} imports {sorted(tops & forbidden)}")
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_imports_only_what_its_rule_allows(package: str) -> None:
    assert (ROOT / package / "__init__.py").is_file()
    assert offenders(ROOT, package) == []


def test_every_package_has_a_rule() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert packages == set(ALLOWED)


def test_only_tests_and_benchmarks_import_the_composition_root() -> None:
    assert all("cli" not in ALLOWED[package] for package in ALLOWED if package != "cli")


@pytest.mark.parametrize(
    ("package", "source", "culprit"),
    [
        ("docpulse", "from app.responses import x\n", "app"),
        ("docpulse", "import workers.jobs\n", "workers"),
        ("docpulse", "from store.records import Records\n", "store"),
        ("docpulse", "import cli.main\n", "cli"),
        ("docpulse", "from aiohttp import web\n", "aiohttp"),
        ("store", "from workers import jobs\n", "workers"),
        ("workers", "from app.relay.hub import Hub\n", "app"),
        ("workers", "import aiohttp_jinja2\n", "aiohttp_jinja2"),
        ("app", "from workers.stages import parse\n", "workers"),
        ("app", "from cli.client import Backoff\n", "cli"),
    ],
)
def test_the_rule_checker_sees_a_violation(
    tmp_path: Path, package: str, source: str, culprit: str
) -> None:
    (tmp_path / package / "sub").mkdir(parents=True)
    (tmp_path / package / "sub" / "bad.py").write_text(f"import json\n{source}")
    (tmp_path / package / "good.py").write_text("from docpulse.events import JobEvent\n")
    assert offenders(tmp_path, package) == [f"{package}/sub/bad.py imports ['{culprit}']"]


def _module_imports(root: Path) -> dict[str, set[str]]:
    """Each module of ours, and the modules of ours it imports (`from a import b` counts a.b)."""
    modules = {
        ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): path
        for package in ALLOWED
        for path in (root / package).rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = found & modules.keys()
    return graph


def test_no_two_modules_import_each_other() -> None:
    """Not even for types only: a cycle means the shared thing belongs in one of them."""
    graph = _module_imports(ROOT)
    cycles = sorted((a, b) for a, deps in graph.items() for b in deps if a < b and a in graph[b])
    assert cycles == []


def test_the_cycle_checker_sees_a_type_only_cycle(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "hub.py").write_text("from app.channel import Channel\n")
    (tmp_path / "app" / "channel.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from app import hub\n"
    )
    graph = _module_imports(tmp_path)
    assert graph["app.hub"] == {"app.channel"}
    assert graph["app.channel"] == {"app.hub"}


def importers_of_test_modules(root: Path) -> list[str]:
    """Files under `root/tests` that import a test module or conftest: what tests share lives in
    tests.helpers, and conftest's fixtures reach tests through pytest, not through imports."""
    found = []
    for path in sorted((root / "tests").rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        parts = (name.split(".") for name in names)
        bad = sorted(
            ".".join(p[:2])
            for p in parts
            if p[0] == "tests" and p[1:2] and p[1].startswith(("test_", "conftest"))
        )
        if bad:
            found.append(f"{path.relative_to(root)} imports {bad}")
    return found


def test_no_test_module_imports_another_or_conftest() -> None:
    assert importers_of_test_modules(ROOT) == []


def test_the_test_import_checker_sees_a_test_module_and_conftest_imported(tmp_path: Path) -> None:
    (tmp_path / "tests" / "helpers").mkdir(parents=True)
    (tmp_path / "tests" / "test_a.py").write_text("from tests.test_b import DATA\n")
    (tmp_path / "tests" / "test_c.py").write_text("from tests import conftest\n")
    (tmp_path / "tests" / "helpers" / "d.py").write_text("from tests.helpers.e import x\n")
    assert importers_of_test_modules(tmp_path) == [
        "tests/test_a.py imports ['tests.test_b']",
        "tests/test_c.py imports ['tests.conftest']",
    ]


@pytest.mark.parametrize("module", ["docpulse.bus", "docpulse.events", "docpulse.queue"])
def test_importing_the_contract_loads_no_web_or_job_code(module: str) -> None:
    probe = (
        f"import sys, {module}\n"
        "bad = sorted(m for m in sys.modules\n"
        "             if m.split('.')[0] in {'aiohttp', 'app', 'workers', 'store', 'cli'})\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_web_app_loads_no_glide() -> None:
    """valkey-glide is an extra (`cluster`): the web imports it only when REDIS_CLUSTER_URL is
    set (app/resources.py), so a web process without it installed still starts."""
    probe = (
        "import sys, app.main, app.resources, app.relay.hub\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'glide', 'glide_shared'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
