"""Blocking calls on sources and outputs, run off the event loop, per storage, with timeouts.

A hung network mount blocks ``stat``, ``open`` and ``read`` for minutes, and a thread blocked
there cannot be interrupted. So each watch root gets its own small thread pool: a mount that
stops answering ties up only its own threads, its calls time out as ``ETIMEDOUT`` (which
:mod:`watcherd.fserrors` classifies as transient, so the file waits and retries), and the
other folders keep their threads and keep flowing.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

__all__ = ["StorageTimeout", "run_on"]

T = TypeVar("T")

#: How long one stat/open/small read may take before the storage is taken as not answering.
_DEFAULT_TIMEOUT = 60.0
#: Threads per storage: enough for hashing and a pipeline step side by side.
_THREADS_PER_ROOT = 4

_pools: dict[str, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


class StorageTimeout(OSError):
    """A call on a file did not return in time: its storage is hung or very slow."""

    def __init__(self, what: str, seconds: float) -> None:
        super().__init__(errno.ETIMEDOUT,
                         f"the storage did not answer within {seconds:.0f} s ({what})")


def _pool_for(root: Path | str | None) -> ThreadPoolExecutor:
    key = os.fsdecode(root) if root is not None else ""
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = ThreadPoolExecutor(max_workers=_THREADS_PER_ROOT,
                                      thread_name_prefix="watcherd-files")
            _pools[key] = pool
        return pool


async def run_on(root: Path | str | None, fn: Callable[..., T], *args: object,
                 timeout: float = _DEFAULT_TIMEOUT) -> T:
    """Run ``fn(*args)`` in ``root``'s thread pool; :class:`StorageTimeout` past ``timeout``.

    A call that times out keeps its thread until the storage answers; the caller has moved on.
    """
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(_pool_for(root), functools.partial(fn, *args))
    try:
        return await asyncio.wait_for(future, timeout)
    except TimeoutError:
        name = getattr(fn, "__name__", "a file call")
        raise StorageTimeout(name, timeout) from None
