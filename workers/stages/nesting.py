"""How deep HTML nests, told before an HTML parser sees it.

lexbor (selectolax) builds a tree of any depth, but its time grows with the square of the depth:
100,000 nested <div>s take minutes. This scan follows start and end tags much as an HTML5 parser
does (void elements, elements whose end tag may be left out, text inside <script> and comments),
in time linear in the input, so a document too deep fails before the parser starts.
"""

from __future__ import annotations

import re

from workers.stages import DocumentError

# elements that never hold others, and elements an HTML5 parser closes by itself when a sibling
# starts (so leaving their end tags out does not nest them); neither counts towards the depth
_FLAT = frozenset({
    "area", "base", "basefont", "bgsound", "br", "col", "embed", "frame", "hr", "img", "input",
    "keygen", "link", "meta", "param", "source", "track", "wbr",
    "a", "caption", "colgroup", "dd", "dt", "head", "li", "optgroup", "option", "p", "rb", "rp",
    "rt", "rtc", "tbody", "td", "tfoot", "th", "thead", "tr", "html", "body",
})  # fmt: skip
_TAG = re.compile(
    r"<!--.*?(?:-->|\Z)"  # a comment: skipped
    r"|<(script|style|textarea|title|xmp|iframe|noembed|noframes|plaintext)\b.*?(?:</\1\s*>|\Z)"
    r"|<(/?)([A-Za-z][^\s/>]*)",
    re.DOTALL | re.IGNORECASE,
)


def check_html_depth(source: str, max_depth: int) -> None:
    """Raise DocumentError when elements in `source` nest more than `max_depth` deep."""
    if html_depth(source, stop_past=max_depth) > max_depth:
        raise DocumentError(
            f"the HTML is nested more than {max_depth:,} elements deep (MAX_HTML_DEPTH)"
        )


def html_depth(source: str, *, stop_past: int) -> int:
    """The deepest nesting of elements in `source`; the scan stops once it passes `stop_past`."""
    stack: list[str] = []
    open_count: dict[str, int] = {}
    deepest = 0
    for match in _TAG.finditer(source):  # not findall: its list would hold every tag at once
        closing, name = match.group(2, 3)
        if name is None or (name := name.lower()) in _FLAT:
            continue  # a comment, a raw-text element, or one that does not nest
        if not closing:
            stack.append(name)
            open_count[name] = open_count.get(name, 0) + 1
            deepest = max(deepest, len(stack))
            if deepest > stop_past:
                break
        elif open_count.get(name):  # an end tag closes its element and any left open inside it
            while (popped := stack.pop()) != name:
                open_count[popped] -= 1
            open_count[name] -= 1
    return deepest
