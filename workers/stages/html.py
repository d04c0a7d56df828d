"""HTML -> visible plain text via selectolax's HTML5 parser (lexbor): blocks on their own lines."""

from __future__ import annotations

import re
from collections.abc import Iterator

from selectolax.lexbor import LexborHTMLParser, LexborNode

from workers.stages import ProgressFn
from workers.stages.document import ParsedDocument
from workers.stages.limits import ParseLimits
from workers.stages.nesting import check_html

_HIDDEN = ["script", "style", "noscript", "template"]
_BLOCKS = frozenset({
    "address", "article", "aside", "blockquote", "caption", "dd", "details", "dialog", "div", "dl",
    "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
    "header", "hgroup", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table",
    "tr", "ul",
})  # fmt: skip
_SPACES = re.compile(r"\s+")


def parse_html(source: str, progress: ProgressFn, limits: ParseLimits) -> ParsedDocument:
    parser = parse_html_tree(source, limits)
    sections = max(1, len(parser.css("h1, h2")))
    return ParsedDocument(html_text(parser), sections, "html")


def parse_html_tree(source: str, limits: ParseLimits) -> LexborHTMLParser:
    """The parsed tree; a document too deep or too large for `limits` fails before parsing."""
    check_html(source, max_depth=limits.max_html_depth, max_elements=limits.max_html_elements)
    return LexborHTMLParser(source)


def html_text(parser: LexborHTMLParser) -> str:
    """The visible text, each block element on lines of its own, runs of whitespace collapsed."""
    parser.strip_tags(_HIDDEN)
    lines = _Lines()
    for node, leaving in _walk(parser.body or parser.root):
        if node.is_text_node:
            lines.add(node.text_content or "")
        elif node.tag in _BLOCKS:
            if node.tag == "pre":
                lines.pre += -1 if leaving else 1
            lines.brk("\n\n")
        elif node.tag == "br" and not leaving:
            lines.brk("\n")
        elif node.tag in ("td", "th") and not leaving:
            lines.add(" ")
    return re.sub(r"\n{3,}", "\n\n", "".join(lines.parts)).strip()


def _walk(root: LexborNode | None) -> Iterator[tuple[LexborNode, bool]]:
    """Each element and text node, depth first: (node, False) on the way in, (node, True) out."""
    stack = [(root, False)] if root is not None else []
    while stack:
        node, leaving = stack.pop()
        yield node, leaving
        if node.is_element_node and not leaving:
            stack.append((node, True))
            children = [c for c in node.iter(include_text=True) if not c.is_comment_node]
            stack.extend((child, False) for child in reversed(children))


class _Lines:
    """Text assembled node by node; inside <pre> (when `pre` > 0) whitespace is kept as it is."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pre = 0

    def add(self, text: str) -> None:
        if not self.pre:
            text = _SPACES.sub(" ", text)
            if not self.parts or self.parts[-1].endswith("\n"):
                text = text.lstrip(" ")
        if text:
            self.parts.append(text)

    def brk(self, newlines: str) -> None:
        if self.parts:
            self.parts[-1] = self.parts[-1].rstrip(" ")
        self.parts.append(newlines)
