"""Lua scripts are `.lua` files next to the module that registers them, read once per process.

Each file names its KEYS and ARGV in locals on its first lines; the module reads it at import
(`lua`) and each Redis client registers it (`Redis.register_script`: EVALSHA, loaded again after
a Redis restart). The files ship as package data (setup.cfg, `[options.package_data]`).

A script that needs another's logic includes it: a line `--!include package/name.inc.lua` is
replaced by that file, which defines local functions only (the way BullMQ's scripts share
theirs). One level: an included file includes nothing.

A script that publishes an event (through `append_event.inc.lua`) comes in two variants: PUBLISH
for one Redis, whose hub SUBSCRIBEs, and `sharded=True`, SPUBLISH for a Redis Cluster, where the
channel hashes to the slot of the tenant's keys (docpulse.keys) so the script stays on one node.
The include publishes on one line, `PUBLISH_COMMAND`; the variant swaps that line, and the line
`NODE_LIFE` for one that reads the node's replication id: a tenant's seq stamped on a promoted
replica (or on another primary, after a migration) starts a new epoch (append_event.inc.lua).
"""

from __future__ import annotations

import re
from importlib.resources import files

INCLUDE = re.compile(r"^--!include (\w+)/([\w.]+\.inc\.lua)$", re.MULTILINE)
PUBLISH_COMMAND = "call('PUBLISH', channel, msg)"  # append_event's publishing line
SHARDED_PUBLISH_COMMAND = "call('SPUBLISH', channel, msg)"
NODE_LIFE = "local life = nil"  # append_event's line for the life of the node that stamps
SHARDED_NODE_LIFE = "local life = node_life()"


def lua(package: str, name: str, *, sharded: bool = False) -> str:
    """The text of the script `name` in `package` (e.g. `lua("store", "end_job.lua")`), with
    its includes in place; `sharded`: its events are SPUBLISHed (ValueError if it has none)."""
    text = INCLUDE.sub(lambda m: _read(m[1], m[2]).rstrip("\n"), _read(package, name))
    if not sharded:
        return text
    if text.count(PUBLISH_COMMAND) != 1 or text.count(NODE_LIFE) != 1:
        raise ValueError(f"{package}/{name} publishes no event: it has no sharded variant")
    return text.replace(PUBLISH_COMMAND, SHARDED_PUBLISH_COMMAND).replace(
        NODE_LIFE, SHARDED_NODE_LIFE
    )


def _read(package: str, name: str) -> str:
    return files(package).joinpath(name).read_text(encoding="utf-8")
