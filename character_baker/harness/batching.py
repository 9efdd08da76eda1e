"""One-item async calls of a list -> list function, served as one call per wave, in a worker thread.

Inspect scores samples concurrently and each scorer asks about one reply. The embedded judges (gradient-boosted
trees, an embedding table) cost about as much for thirty replies as for one, so the replies that arrive together
are judged together: the local provider batches generation the same way. The function must treat its items
independently (item i's result depends on item i alone), which is what makes the batch invisible in the results
(up to floating-point sums that BLAS orders by batch size: the leak judge's probabilities move by ~1e-9).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

import anyio

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    def __init__(self, fn: Callable[[list[T]], list[R]], max_size: int = 64, wait: float = 0.005) -> None:
        self.fn, self.max_size, self.wait = fn, max_size, wait
        self.calls = 0  # how many times `fn` ran (tests read it)
        # per event loop: a judge lives for the process, and each scoring run may bring its own loop
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[tuple[T, asyncio.Future[R]]]] = (
            weakref.WeakKeyDictionary())
        self._flushers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = (
            weakref.WeakKeyDictionary())

    async def __call__(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queues.setdefault(loop, []).append((item, future))
        flusher = self._flushers.get(loop)
        if flusher is None or flusher.done():
            self._flushers[loop] = loop.create_task(self._flush(loop))
        return await future

    async def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        await asyncio.sleep(self.wait)  # let the rest of this wave join
        queue = self._queues[loop]
        while queue:
            batch = queue[: self.max_size]
            del queue[: len(batch)]
            self.calls += 1
            try:
                results = await anyio.to_thread.run_sync(self.fn, [item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"{self.fn!r} returned {len(results)} results for {len(batch)} items")
            except Exception as e:  # noqa: BLE001 - every caller of this batch gets the failure
                for _, future in batch:
                    if not future.done():
                        future.set_exception(e)
                continue
            for (_, future), result in zip(batch, results):
                if not future.done():  # a caller that was cancelled meanwhile
                    future.set_result(result)


def batched(owner: object, method: str) -> Batcher:  # type: ignore[type-arg]
    """The batcher of `owner.method`, made on first use (judges restored from disk never ran `__init__`)."""
    key = f"_batcher_{method}"
    found = owner.__dict__.get(key)
    if found is None:
        found = owner.__dict__[key] = Batcher(getattr(owner, method))
    return found
