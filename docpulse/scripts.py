"""Lua scripts are `.lua` files next to the module that registers them, read once per process.

Each file names its KEYS and ARGV in locals on its first lines; the module reads it at import
(`lua`) and each Redis client registers it (`Redis.register_script`: EVALSHA, loaded again after
a Redis restart). The files ship as package data (setup.cfg, `[options.package_data]`).

A script that needs another's logic includes it: a line `--!include package/name.inc.lua` is
replaced by that file, which defines local functions only (the way BullMQ's scripts share
theirs). One level: an included file includes nothing.
"""

from __future__ import annotations

import re
from importlib.resources import files

INCLUDE = re.compile(r"^--!include (\w+)/([\w.]+\.inc\.lua)$", re.MULTILINE)


def lua(package: str, name: str) -> str:
    """The text of the script `name` in `package` (e.g. `lua("store", "end_job.lua")`), with
    its includes in place."""
    text = _read(package, name)
    return INCLUDE.sub(lambda m: _read(m[1], m[2]).rstrip("\n"), text)


def _read(package: str, name: str) -> str:
    return files(package).joinpath(name).read_text(encoding="utf-8")
