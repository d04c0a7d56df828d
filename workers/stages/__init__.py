"""The pipeline's stages as pure, synchronous functions: parse -> chunk -> embed.

They take bytes, text or arrays and return values; they know nothing of asyncio, Redis or arq. The
job layer runs them in a worker thread and turns `DocumentError` into a failed job a user can read.
"""

from collections.abc import Callable

__all__ = ["DocumentError", "ProgressFn", "increasing"]


class DocumentError(Exception):
    """The document itself cannot be processed.

    `str(exc)` is a reason a user can read, such as 'the file is empty' or 'the PDF is damaged and
    cannot be read (...)'. Retrying will not help: the same document fails the same way.
    """


ProgressFn = Callable[[float], None]
"""Called with the fraction done, 0.0..1.0, from the worker thread that runs the stage."""


def increasing(progress: ProgressFn) -> ProgressFn:
    """`progress`, called only with fractions above the last one, so 1.0 is reported just once."""
    last = 0.0

    def report(fraction: float) -> None:
        nonlocal last
        if fraction > last:
            last = fraction
            progress(fraction)

    return report
