"""Markdown -> plain text, with markdown-it-py: no markup characters, sections by h1/h2."""

from __future__ import annotations

from markdown_it import MarkdownIt
from markdown_it.token import Token
from selectolax.lexbor import LexborHTMLParser

from workers.stages import ProgressFn
from workers.stages.document import ParsedDocument
from workers.stages.html import html_text


def parse_markdown(source: str, progress: ProgressFn) -> ParsedDocument:
    tokens = MarkdownIt("commonmark").parse(source)
    sections = max(1, sum(_is_section(token) for token in tokens))
    blocks: list[str] = []
    done = 0
    for token in tokens:
        if _is_section(token):
            progress(done / sections)
            done += 1
        if block := _markdown_block(token):
            blocks.append(block)
    return ParsedDocument("\n\n".join(blocks), sections, "markdown")


def _is_section(token: Token) -> bool:
    return token.type == "heading_open" and token.tag in ("h1", "h2")


def _markdown_block(token: Token) -> str:
    if token.type == "inline":
        return "".join(_markdown_inline(child) for child in token.children or [])
    if token.type in ("fence", "code_block"):
        return token.content.rstrip("\n")
    if token.type == "html_block":
        return html_text(LexborHTMLParser(token.content))
    return ""


def _markdown_inline(token: Token) -> str:
    if token.type in ("text", "code_inline", "image"):
        return token.content
    return {"softbreak": " ", "hardbreak": "\n"}.get(token.type, "")
