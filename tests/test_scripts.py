"""Lua lives in .lua files, each naming its KEYS and ARGV in locals on its first lines, read from
the installed package; no Python module holds Lua source."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from docpulse.scripts import INCLUDE, lua
from tests.helpers.paths import ROOT

PACKAGES = ("docpulse", "store", "app", "workers", "cli")
LUA = sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.lua"))
SCRIPTS = [p for p in LUA if not p.name.endswith(".inc.lua")]
INCLUDES = [p for p in LUA if p.name.endswith(".inc.lua")]
# a KEYS or ARGV slot by number: only in a `local name = ...` line of the script's header
SLOT = re.compile(r"\b(KEYS|ARGV)\[\d+\]")
DECLARATION = re.compile(r"^local \w+ = (tonumber\()?(KEYS|ARGV)\[\d+\]\)?( or '')?\s*(--.*)?$")


def header_end(lines: list[str]) -> int:
    """The index of the first line past the header (comments, blanks, `local` declarations)."""
    for index, line in enumerate(lines):
        if line.strip() and not line.startswith(("--", "local ", " ")):
            return index
    return len(lines)


def misplaced_slots(text: str) -> list[str]:
    """Lines that use KEYS[n] or ARGV[n] other than as a named local in the header."""
    lines = text.splitlines()
    end = header_end(lines)
    return [
        line
        for index, line in enumerate(lines)
        if SLOT.search(line.split("--")[0]) and (index >= end or not DECLARATION.match(line))
    ]


def test_no_python_module_holds_lua() -> None:
    sources = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]
    holders = [str(p.relative_to(ROOT)) for p in sources if "redis.call(" in p.read_text()]
    assert holders == []
    assert len(SCRIPTS) >= 7


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_script_names_its_keys_and_args_at_the_top(path: Path) -> None:
    text = path.read_text()
    assert SLOT.search(text), "a script that takes no KEYS or ARGV needs no file of its own"
    assert misplaced_slots(text) == []


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_script_is_loaded_by_the_module_next_to_it(path: Path) -> None:
    package = path.parent.relative_to(ROOT).as_posix().replace("/", ".")
    callers = [
        p for p in path.parent.glob("*.py") if f'lua("{package}", "{path.name}")' in p.read_text()
    ]
    assert callers, f"no module of {package} loads {path.name}"
    assert lua(package, path.name) == INCLUDE.sub(lambda m: included(m[1], m[2]), path.read_text())
    assert "--!include" not in lua(package, path.name)


def included(package: str, name: str) -> str:
    return (ROOT / package / name).read_text().rstrip("\n")


@pytest.mark.parametrize("path", INCLUDES, ids=lambda p: str(p.relative_to(ROOT)))
def test_an_included_file_defines_functions_only_and_is_included(path: Path) -> None:
    text = path.read_text()
    assert not SLOT.search(text), "an included file takes its keys and arguments as parameters"
    assert "--!include" not in text, "one level of includes"
    code = [line for line in text.splitlines() if line.strip() and not line.startswith("--")]
    assert code[0].startswith("local function "), code[0]
    line = f"--!include {path.parent.name}/{path.name}"
    assert any(line in script.read_text().splitlines() for script in SCRIPTS)


def test_the_slot_check_sees_a_positional_key() -> None:
    good = "-- header\nlocal job = KEYS[1]\nlocal n = tonumber(ARGV[2])\n\nredis.call('GET', job)\n"
    assert misplaced_slots(good) == []
    bad = good + "redis.call('SET', KEYS[2], ARGV[1])\n"
    assert misplaced_slots(bad) == ["redis.call('SET', KEYS[2], ARGV[1])"]
    late = good + "local again = KEYS[3]\n"
    assert misplaced_slots(late) == ["local again = KEYS[3]"]
