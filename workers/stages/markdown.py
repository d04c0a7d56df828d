"""Markdown -> plain text, with markdown-it-py: no markup characters, sections by h1/h2."""

from __future__ import annotations

from markdown_it import MarkdownIt
from markdown_it.token import Token

from workers.stages import DocumentError, ProgressFn
from workers.stages.document import ParsedDocument
from workers.stages.html import html_text, parse_html_tree
from workers.stages.limits import ParseLimits

# markdown-it parses nested blocks by recursion and, past its "maxNesting" (20 in the commonmark
# preset), silently drops what is deeper: such a document fails instead of losing text
_PARSER = MarkdownIt("commonmark")
_MAX_NESTING: int = _PARSER.options["maxNesting"]
_LEAVES = frozenset({"paragraph_open", "heading_open"})


def parse_markdown(source: str, progress: ProgressFn, limits: ParseLimits) -> ParsedDocument:
    """The text of Markdown; `limits` bound each HTML block in it as they bound HTML."""
    tokens = _PARSER.parse(source)
    sections = max(1, sum(_is_section(token) for token in tokens))
    blocks: list[str] = []
    done = 0
    for token in tokens:
        if token.nesting == 1 and token.level >= _MAX_NESTING - 1 and token.type not in _LEAVES:
            raise DocumentError(
                f"the Markdown nests lists or block quotes more than {_MAX_NESTING - 1} levels "
                "deep (a list counts as two), and the text inside would be lost"
            )
        if _is_section(token):
            progress(done / sections)
            done += 1
        if block := _markdown_block(token, limits):
            blocks.append(block)
    return ParsedDocument("\n\n".join(blocks), sections, "markdown")


def _is_section(token: Token) -> bool:
    return token.type == "heading_open" and token.tag in ("h1", "h2")


def _markdown_block(token: Token, limits: ParseLimits) -> str:
    if token.type == "inline":
        return "".join(_markdown_inline(child) for child in token.children or [])
    if token.type in ("fence", "code_block"):
        return token.content.rstrip("\n")
    if token.type == "html_block":
        return html_text(parse_html_tree(token.content, limits))
    return ""


def _markdown_inline(token: Token) -> str:
    if token.type in ("text", "code_inline", "image"):
        return token.content
    return {"softbreak": " ", "hardbreak": "\n"}.get(token.type, "")
