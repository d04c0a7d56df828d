"""The README's layout tree stays true: every module and Lua script of the packages, every template
and static file has its line, and every line names something that exists."""

from __future__ import annotations

import re

from tests.helpers.paths import ROOT

PACKAGES = ("docpulse", "store", "workers", "app", "cli")
# a line: the tree's drawing (4 characters a level), a name, two spaces or more, what it holds
LINE = re.compile(r"^(?P<indent>(?:[│ ]   |[├└]── )*)(?P<name>\S+)(?: {2,}(?P<what>\S.*))?$")


def layout_tree(readme: str) -> list[str]:
    """The code block that opens the README's "Layout" section, one line per entry."""
    section = readme.split("\n## Layout", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"^```\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    assert block is not None, 'the "Layout" section has no tree'
    return block.group(1).splitlines()


def tree_paths(lines: list[str]) -> dict[str, str]:
    """Each entry's path (folders end with /) and what its line says it holds."""
    paths: dict[str, str] = {}
    parents: list[str] = []
    for line in lines:
        match = LINE.match(line)
        assert match is not None, f"not a tree line: {line!r}"
        depth = len(match["indent"]) // 4
        assert depth <= len(parents), f"a line deeper than its folder: {line!r}"
        del parents[depth:]
        path = "".join(parents) + match["name"]
        paths[path] = match["what"] or ""
        if path.endswith("/"):
            parents.append(match["name"])
    return paths


def files_that_need_a_line() -> set[str]:
    found = {
        p
        for package in PACKAGES
        for pattern in ("*.py", "*.lua")
        for p in (ROOT / package).rglob(pattern)
    }
    found |= {
        p for folder in ("templates", "static") for p in (ROOT / folder).rglob("*") if p.is_file()
    }
    return {p.relative_to(ROOT).as_posix() for p in found if "__pycache__" not in p.parts}


def test_every_module_script_template_and_static_file_has_a_line() -> None:
    paths = tree_paths(layout_tree((ROOT / "README.md").read_text()))
    assert sorted(files_that_need_a_line() - paths.keys()) == []


def test_every_line_names_something_that_exists_and_says_what_it_holds() -> None:
    paths = tree_paths(layout_tree((ROOT / "README.md").read_text()))
    assert sorted(p for p in paths if not (ROOT / p).exists()) == []
    assert sorted(p for p in paths if p.endswith("/") != (ROOT / p).is_dir()) == []
    assert sorted(p for p, what in paths.items() if not what and not p.endswith("/")) == []


def test_the_tree_reader_sees_nesting_and_a_missing_module() -> None:
    lines = [
        "app/                 the web process",
        "├── api.py           the REST API",
        "└── relay/           the relay",
        "    └── hub.py       the hub",
        "cli/                 the command",
    ]
    assert tree_paths(lines) == {
        "app/": "the web process",
        "app/api.py": "the REST API",
        "app/relay/": "the relay",
        "app/relay/hub.py": "the hub",
        "cli/": "the command",
    }
    assert "app/relay/hub.py" in files_that_need_a_line()
    assert "app/relay/hub.py" not in tree_paths(lines[:3])
