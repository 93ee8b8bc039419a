"""Coalescing of lookups that arrive together into batch calls.

A worker following hundreds of orders at one provider would otherwise send one `status` request per order
and poll; providers answer up to 100 ids per call and rate-limit the rest. `Coalescer` collects the ids asked
for during a short window (or until a batch is full), sends one request, and hands each caller its own
answer or its own error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Generic, TypeVar

from providers.apiv2 import MAX_BATCH

T = TypeVar("T")

# One batch call: ids in, each id's result or the exception meant for its caller out.
Fetch = Callable[[Sequence[str]], Awaitable[Mapping[str, "T | BaseException"]]]


class Coalescer(Generic[T]):
    """`await get(id)` returns that id's result; concurrent gets share batch calls of up to `max_batch` ids.

    The first id of a batch opens a window of `window` seconds; the batch leaves when the window closes or
    when it is full. An exception of the whole call reaches every caller of the batch; a per-id exception
    only its own callers. The same id asked twice in one window is sent once.
    """

    def __init__(self, fetch: Fetch[T], *, window: float = 0.1, max_batch: int = MAX_BATCH) -> None:
        self._fetch = fetch
        self._window = window
        self._max_batch = max_batch
        self._waiting: dict[str, list[asyncio.Future[T]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.calls = 0  # batch calls sent, for logs and tests

    async def get(self, key: str) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._waiting.setdefault(key, []).append(future)
        if len(self._waiting) >= self._max_batch:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._window, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch = dict(list(self._waiting.items())[: self._max_batch])
        for key in batch:
            del self._waiting[key]
        if self._waiting:  # more than one batch was waiting: the rest leaves in the next window
            self._timer = asyncio.get_running_loop().call_later(self._window, self._flush)
        if batch:
            self.calls += 1
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: dict[str, list[asyncio.Future[T]]]) -> None:
        try:
            results = await self._fetch(list(batch))
        except BaseException as exc:  # every caller of the batch gets the call's failure
            for futures in batch.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for key, futures in batch.items():
            result = results.get(key)
            for future in futures:
                if future.done():  # its caller gave up (activity cancelled)
                    continue
                if key not in results:
                    future.set_exception(LookupError(f"the batch answer left out {key}"))
                elif isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)  # type: ignore[arg-type]
