"""How much PDF content text extraction goes through, counted as it goes (MAX_PDF_CONTENT_BYTES).

Each page's content streams count once per page, and a form XObject's content counts each time a
page or another form draws it (`/Name Do`): a 1 KB PDF whose page draws one 100 KB form 1,000
times made pypdf read 100 MB and keep going for minutes. The count is kept by a visitor pypdf
calls before every operator; once past the limit the visitor raises at every call, so pypdf (which
swallows errors inside a form) stops at the next operator of the page itself.
"""

from __future__ import annotations

from typing import Any

from pypdf import PageObject
from pypdf.errors import LimitReachedError
from pypdf.generic import ArrayObject, DictionaryObject, StreamObject

from workers.stages import DocumentError


class ContentBudget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.exceeded = False

    @property
    def reason(self) -> str:
        return (
            f"the PDF expands to more than {self.limit:,} bytes of page content "
            "(MAX_PDF_CONTENT_BYTES)"
        )

    def spend(self, size: int) -> None:
        self.used += size
        if self.used > self.limit:
            self.exceeded = True
        self.check()

    def check(self) -> None:
        if self.exceeded:
            raise DocumentError(self.reason)

    def extract_text(self, page: PageObject) -> str:
        """The page's text, its content and every form it draws counted as extraction goes."""
        self.spend(_content_bytes(page))
        forms = _Forms(page, self)
        text = page.extract_text(visitor_operand_before=forms.visit)
        self.check()  # pypdf may have swallowed the error raised inside a form
        return text


def _content_bytes(page: PageObject) -> int:
    """How many bytes the page's content streams decompress to (pypdf keeps them for the text)."""
    contents = _resolved(page.get("/Contents"))
    streams = contents if isinstance(contents, ArrayObject) else [contents]
    return sum(len(s.get_data()) for s in map(_resolved, streams) if isinstance(s, StreamObject))


class _Forms:
    """The form XObjects a page can draw, by name, from its resources and theirs."""

    def __init__(self, page: PageObject, budget: ContentBudget) -> None:
        self._budget = budget
        self._by_name: dict[str, list[StreamObject]] = {}
        self._sizes: dict[str, int] = {}
        seen: set[int] = set()
        pending = [page.get("/Resources")]
        while pending:
            xobjects = _resolved(_get(_resolved(pending.pop()), "/XObject"))
            if not isinstance(xobjects, DictionaryObject):
                continue
            for name, ref in xobjects.items():
                form = _resolved(ref)
                if isinstance(form, StreamObject) and form.get("/Subtype") == "/Form":
                    self._by_name.setdefault(name, []).append(form)
                    if id(form) not in seen:
                        seen.add(id(form))
                        pending.append(form.get("/Resources"))

    def visit(self, operator: bytes, operands: list[Any], cm: Any, tm: Any) -> None:
        self._budget.check()
        if operator == b"Do" and operands:
            self._budget.spend(self._size(str(operands[0])))

    def _size(self, name: str) -> int:
        """The largest form of that name (names may mean different forms in nested resources)."""
        if name not in self._sizes:
            try:
                sizes = [len(form.get_data()) for form in self._by_name.get(name, [])]
            except LimitReachedError:
                self._budget.exceeded = True
                raise DocumentError(self._budget.reason) from None
            self._sizes[name] = max(sizes, default=0)
        return self._sizes[name]


def _resolved(value: Any) -> Any:
    return value.get_object() if value is not None else None


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, DictionaryObject) else None
