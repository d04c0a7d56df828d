"""The pipeline's stages as pure, synchronous functions: parse -> chunk -> embed.

They take bytes, text or arrays and return values; they know nothing of asyncio, Redis or arq. The
job layer runs them in a worker thread and turns `DocumentError` into a failed job a user can read.
"""

import threading
from collections.abc import Callable

__all__ = ["DocumentError", "ProgressFn", "Stopped", "increasing", "stoppable"]


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


class Stopped(Exception):
    """Raised by a progress callback in a stage's thread once its attempt stopped waiting for
    it (cancelled, timed out, the worker shutting down): the stage's work ends there."""


def stoppable(progress: ProgressFn) -> tuple[ProgressFn, Callable[[], None]]:
    """`progress`, and a `stop()` after which each call of it raises Stopped instead."""
    stopped = threading.Event()

    def report(fraction: float) -> None:
        if stopped.is_set():
            raise Stopped("the attempt stopped")
        progress(fraction)

    return report, stopped.set
