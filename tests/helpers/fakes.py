"""Small hand-written stand-ins (no MagicMock): stages that block, work slowly or fail once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from workers.stages import DocumentError
from workers.stages.embed import HashingEmbedder


class BlockingEmbedder:
    """An embedder whose first call blocks until released: a stage caught mid-work.

    Later calls (after `release`) embed instantly. Used as a context manager, it always releases
    its thread on exit, so no test leaves a worker thread behind.
    """

    name = "blocking"
    dim = 384

    def __init__(self) -> None:
        self._entered = threading.Event()
        self._released = threading.Event()

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self._entered.set()
        self._released.wait(timeout=30)
        return np.zeros((len(texts), self.dim), dtype=np.float32)

    async def wait_entered(self, timeout: float = 15.0) -> None:
        if not await asyncio.to_thread(self._entered.wait, timeout):
            raise TimeoutError("the stage never reached the embedder")

    def release(self) -> None:
        self._released.set()

    def __enter__(self) -> BlockingEmbedder:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class SlowStage:
    """A stage function (parse_content, chunk_text) that works until released: it reports a
    little progress every few milliseconds, as CPU-heavy stage work does, and keeps what ended
    it. Patch it over the real one in workers.jobs; with `then`, a released call returns
    `then(*args, **kwargs)` (the real function), so the stage finishes as usual."""

    def __init__(self, then: Callable[..., Any] | None = None) -> None:
        self._then = then
        self._entered = threading.Event()
        self._released = threading.Event()
        self.exited = threading.Event()
        self.ended_by: BaseException | None = None

    def __call__(self, *args: Any, progress: Callable[[float], None], **kwargs: Any) -> Any:
        self._entered.set()
        try:
            step = 0
            while not self._released.wait(timeout=0.005):
                step += 1
                progress(min(0.9, step / 10_000))
        except BaseException as exc:
            self.ended_by = exc
            raise
        finally:
            self.exited.set()
        if self._then is None:
            raise RuntimeError("a SlowStage without `then` was released")
        return self._then(*args, progress=progress, **kwargs)

    async def wait_entered(self, timeout: float = 15.0) -> None:
        if not await asyncio.to_thread(self._entered.wait, timeout):
            raise TimeoutError("the stage never reached its work")

    def release(self) -> None:
        self._released.set()

    def __enter__(self) -> SlowStage:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class FailsOnce:
    """A stage function whose first call fails with a DocumentError a user could read; later
    calls are the real function's (patched over it in workers.jobs): a failure that a retry
    gets past."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self._real = real
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            raise DocumentError("failed on purpose, once")
        return self._real(*args, **kwargs)


class FailsOnceEmbedder:
    """The hashing embedder, except that its first call raises (with `fails`): the embed stage
    fails once."""

    name = "fails-once"

    def __init__(self, dim: int = 384, *, fails: bool = True) -> None:
        self._real = HashingEmbedder(dim)
        self.dim = dim
        self._fails = fails
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.calls += 1
        if self._fails and self.calls == 1:
            raise DocumentError("failed on purpose, once")
        return self._real.embed(texts)
