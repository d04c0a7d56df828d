"""How deep a small JSON text nests, checked before it is decoded.

msgspec guards its recursion with the interpreter's recursion limit, so how deep it decodes depends
on how deep the caller's stack already is, and past it a RecursionError escapes. Client frames on
/ws are small (at most 4,096 bytes) and flat, so they get a fixed bound instead: a frame nesting
deeper than MAX_DEPTH is refused (close 1003) before msgspec sees it.
"""

from __future__ import annotations

from typing import Final

MAX_DEPTH: Final = 32


def nests_deeper_than(text: str, limit: int = MAX_DEPTH) -> bool:
    """Whether `text` opens more than `limit` arrays or objects inside each other (brackets in
    strings do not count). Linear; a text with `limit` or fewer brackets returns at once."""
    if text.count("[") + text.count("{") <= limit:
        return False
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False
