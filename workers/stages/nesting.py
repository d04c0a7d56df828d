"""How deep HTML nests and how many elements it has, told before an HTML parser sees it.

lexbor (selectolax) builds a tree of any depth, but its time grows with the square of the depth:
100,000 nested <div>s take minutes. This scan follows start and end tags much as an HTML5 parser
does (void elements, elements whose end tag may be left out, text inside <script> and comments),
in time linear in the input, so a document too deep fails before the parser starts. The parsed
tree and the text taken from it cost about 600 bytes per element (a dense 20 MiB page of 1.1
million elements took 660 MiB), hence a bound on elements too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class HtmlShape:
    depth: int  # the deepest nesting of elements
    elements: int  # start tags


def check_html(source: str, *, max_depth: int, max_elements: int) -> None:
    """Raise DocumentError when `source` nests too deep or has too many elements to parse."""
    shape = html_shape(source, stop_past=(max_depth, max_elements))
    if shape.depth > max_depth:
        raise DocumentError(
            f"the HTML is nested more than {max_depth:,} elements deep (MAX_HTML_DEPTH)"
        )
    if shape.elements > max_elements:
        raise DocumentError(f"the HTML has more than {max_elements:,} elements (MAX_HTML_ELEMENTS)")


def html_shape(source: str, *, stop_past: tuple[int, int]) -> HtmlShape:
    """How deep and how many the elements of `source` are; the scan stops past either bound."""
    stack: list[str] = []
    open_count: dict[str, int] = {}
    deepest = elements = 0
    for match in _TAG.finditer(source):  # not findall: its list would hold every tag at once
        raw, closing, name = match.group(1, 2, 3)
        elements += bool(raw or (name and not closing))
        if elements > stop_past[1]:
            break
        if name is None or (name := name.lower()) in _FLAT:
            continue  # a comment, a raw-text element, or one that does not nest
        if not closing:
            stack.append(name)
            open_count[name] = open_count.get(name, 0) + 1
            deepest = max(deepest, len(stack))
            if deepest > stop_past[0]:
                break
        elif open_count.get(name):  # an end tag closes its element and any left open inside it
            while (popped := stack.pop()) != name:
                open_count[popped] -= 1
            open_count[name] -= 1
    return HtmlShape(deepest, elements)
