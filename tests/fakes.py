"""Small hand-written stand-ins (no MagicMock)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from types import TracebackType

import numpy as np
import numpy.typing as npt


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
