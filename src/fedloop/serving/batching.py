"""Adaptive batching: concurrent requests to one model version coalesce into one onnxruntime call."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from fedloop.serving.runtime import Array, ModelRuntime

__all__ = ["AdaptiveBatcher"]

#: Batches of at most this many rows always run on the event loop: a thread hop costs more.
INLINE_MAX_ROWS = 16
#: Bigger batches also run on the loop when the graph takes less than this (measured at load).
INLINE_MAX_S = 0.0005


@dataclass(slots=True)
class _Item:
    feeds: dict[str, Array]
    rows: int
    future: asyncio.Future[list[Array]]
    arrived: float = field(default_factory=time.monotonic)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class AdaptiveBatcher:
    """Queue of requests to one model version, run as few onnxruntime calls as possible.

    A request that finds the version idle and no other request on its way runs at once (no
    added latency). Requests that arrive while a batch runs, or that are known to be on their
    way (``pending``: routed here, body still being read), join the next batch, up to
    ``max_batch_size`` rows or ``max_wait_ms`` after the first one arrived. Nothing is ever
    refused: under overload batches simply grow, which is what raises throughput.

    Parameters
    ----------
    runtime : ModelRuntime
        The version to run.
    executor : Executor
        Threads for batches that take longer than :data:`INLINE_MAX_S` (as measured when the
        version loaded) and have more than :data:`INLINE_MAX_ROWS` rows; smaller ones run on
        the event loop, where a thread hop would cost more than the run.
    enabled : bool, default True
        False runs every request on its own.
    max_batch_size : int, default 256
        Most rows per call (a bigger single request still runs, alone).
    max_wait_ms : float, default 2.0
        Longest the first request of a batch waits for requests known to be coming.
    on_batch : callable or None
        Called with (requests, rows) after each call (metrics).

    Example
    -------
    >>> batcher = AdaptiveBatcher(runtime, executor=pool)  # doctest: +SKIP
    >>> outputs = await batcher.infer({"features": x}, rows=len(x))
    """

    def __init__(
        self,
        runtime: ModelRuntime,
        *,
        executor: Executor,
        enabled: bool = True,
        max_batch_size: int = 256,
        max_wait_ms: float = 2.0,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.enabled = enabled and runtime.batchable
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.on_batch = on_batch
        self.inline_max_rows = max(INLINE_MAX_ROWS, int(INLINE_MAX_S / runtime.seconds_per_row))
        #: Requests routed to this version whose body is still being read or parsed.
        self.pending = 0
        self._executor = executor
        self._queue: deque[_Item] = deque()
        self._wake: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._busy = False
        self._closed = False

    # -- the request side --------------------------------------------------------------------
    async def infer(self, feeds: dict[str, Array], rows: int) -> list[Array]:
        """Run one validated request, batched with others when that helps.

        Parameters
        ----------
        feeds : dict
            Input name -> array (validated against the signature).
        rows : int
            Rows in the request.

        Returns
        -------
        list of ndarray
            This request's outputs, in signature order.
        """
        if not self.enabled or self._closed:
            return await self._run(feeds, rows)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Array]] = loop.create_future()
        self._queue.append(_Item(feeds, rows, future))
        if self._task is None:
            self._task = loop.create_task(self._worker())
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)
        return await future

    async def _run(self, feeds: dict[str, Array], rows: int) -> list[Array]:
        if rows <= self.inline_max_rows:
            outputs = self.runtime.run(feeds)
        else:
            loop = asyncio.get_running_loop()
            outputs = await loop.run_in_executor(self._executor, self.runtime.run, feeds)
        if self.on_batch is not None:
            self.on_batch(1, rows)
        return outputs

    # -- the batching side -------------------------------------------------------------------
    async def _wait(self, timeout_s: float | None) -> None:
        loop = asyncio.get_running_loop()
        wake: asyncio.Future[None] = loop.create_future()
        self._wake = wake
        handle = None if timeout_s is None else loop.call_later(timeout_s, _resolve, wake)
        try:
            await wake
        finally:
            self._wake = None
            if handle is not None:
                handle.cancel()

    def _collect(self) -> tuple[list[_Item], int]:
        items = [self._queue.popleft()]
        rows = items[0].rows
        while self._queue and rows + self._queue[0].rows <= self.max_batch_size:
            item = self._queue.popleft()
            items.append(item)
            rows += item.rows
        return items, rows

    async def _worker(self) -> None:
        while not self._closed:
            if not self._queue:
                await self._wait(None)
                continue
            # Wait (briefly) only for requests already on their way: no idle-time latency.
            deadline = self._queue[0].arrived + self.max_wait_s
            while (
                self.pending > 0
                and sum(i.rows for i in self._queue) < self.max_batch_size
                and (left := deadline - time.monotonic()) > 0
            ):
                await self._wait(left)
            items, rows = self._collect()
            self._busy = True
            try:
                await self._execute(items, rows)
            finally:
                self._busy = False

    async def _execute(self, items: list[_Item], rows: int) -> None:
        try:
            if len(items) == 1:
                feeds = items[0].feeds
            else:
                feeds = {
                    spec.name: np.concatenate([i.feeds[spec.name] for i in items])
                    for spec in self.runtime.inputs
                }
            if rows <= self.inline_max_rows:
                outputs = self.runtime.run(feeds)
            else:
                loop = asyncio.get_running_loop()
                outputs = await loop.run_in_executor(self._executor, self.runtime.run, feeds)
        except Exception as err:  # one bad request must not fail its batch-mates
            if len(items) == 1:
                if not items[0].future.done():
                    items[0].future.set_exception(err)
                return
            for item in items:
                await self._execute([item], item.rows)
            return
        if self.on_batch is not None:
            self.on_batch(len(items), rows)
        if len(items) == 1:
            if not items[0].future.done():
                items[0].future.set_result(outputs)
            return
        start = 0
        for item in items:
            stop = start + item.rows
            if not item.future.done():  # a caller that went away
                item.future.set_result([out[start:stop] for out in outputs])
            start = stop

    @property
    def idle(self) -> bool:
        """True when nothing is queued, running or on its way."""
        return not self._queue and not self._busy and self.pending == 0

    async def close(self, *, timeout_s: float = 30.0) -> None:
        """Finish the queued and in-flight requests (up to ``timeout_s``), then stop.

        Parameters
        ----------
        timeout_s : float, default 30
            Longest to wait for requests still being served.
        """
        deadline = time.monotonic() + timeout_s
        while not self.idle and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for item in self._queue:
            if not item.future.done():
                item.future.cancel()
        self._queue.clear()
