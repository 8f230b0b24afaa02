"""A fault-injecting file system layer for tests: chosen paths raise a chosen errno at one step.

It patches the few functions through which watcherd touches files (``os.stat``, ``os.open``,
``io.open``/``open``, ``os.read``, ``os.fdopen``, ``os.replace``), and only for paths whose
name contains ``match``; every other path, the journal's included, is untouched. ``hits``
counts the injected errors, so a test can bound how often a failing file is retried.
"""

from __future__ import annotations

import builtins
import io
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import pytest

Step = Literal["stat", "open", "read", "write"]
STEPS: tuple[Step, ...] = ("stat", "open", "read", "write")

__all__ = ["STEPS", "FaultFS", "Step"]


class _FailingReads:
    """A file object whose reads raise; everything else goes to the real file."""

    def __init__(self, inner: Any, fault: FaultFS) -> None:
        self._inner = inner
        self._fault = fault

    def read(self, *args: Any) -> bytes:
        raise self._fault.error()

    def readinto(self, *args: Any) -> int:
        raise self._fault.error()

    def read1(self, *args: Any) -> bytes:
        raise self._fault.error()

    def __iter__(self) -> Iterator[bytes]:
        raise self._fault.error()

    def __enter__(self) -> _FailingReads:
        return self

    def __exit__(self, *exc: object) -> None:
        self._inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class FaultFS:
    """Makes paths whose name contains ``match`` fail with ``code`` at ``step``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, match: str, step: Step, code: int, *,
                 hang: bool = False) -> None:
        self.match = match
        self.step = step
        self.code = code
        #: Instead of failing at once, block like a hung network mount until stop().
        self.hang = hang
        self._released = threading.Event()
        self.active = True
        self.hits = 0
        self._lock = threading.Lock()
        self._fds: set[int] = set()
        self._install(monkeypatch)

    def stop(self) -> None:
        """Stop injecting: the paths work again (a share came back, space was freed)."""
        self.active = False
        self._released.set()

    def error(self) -> OSError:
        """Count one injected failure and build its exception (after the hang, if hanging)."""
        with self._lock:
            self.hits += 1
        if self.hang:
            self._released.wait(60)
        return OSError(self.code, os.strerror(self.code))

    def _matches(self, path: Any) -> bool:
        if not self.active or isinstance(path, int):
            return False
        try:
            name = os.path.basename(os.fsdecode(path))
        except (TypeError, ValueError):
            return False
        return self.match in name

    def _install(self, mp: pytest.MonkeyPatch) -> None:
        real_stat, real_open, real_io_open = os.stat, os.open, io.open
        real_read, real_fdopen, real_replace = os.read, os.fdopen, os.replace
        fault = self

        def stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
            if fault.step == "stat" and fault._matches(path):
                raise fault.error()
            return real_stat(path, *args, **kwargs)

        def os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            matches = fault._matches(path)
            creating = bool(flags & os.O_CREAT)
            if matches and ((fault.step == "open" and not creating)
                            or (fault.step == "write" and creating)):
                raise fault.error()
            fd = real_open(path, flags, *args, **kwargs)
            if matches and fault.step == "read":
                fault._fds.add(fd)
            return fd

        def read(fd: int, n: int) -> bytes:
            if fault.active and fd in fault._fds:
                raise fault.error()
            return real_read(fd, n)

        def fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
            f = real_fdopen(fd, *args, **kwargs)
            if fault.active and fd in fault._fds:
                return _FailingReads(f, fault)
            return f

        def io_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            matches = fault._matches(file)
            writing = any(c in mode for c in "wax+")
            if matches and ((fault.step == "open" and not writing)
                            or (fault.step == "write" and writing)):
                raise fault.error()
            f = real_io_open(file, mode, *args, **kwargs)
            if matches and fault.step == "read" and not writing:
                return _FailingReads(f, fault)
            return f

        def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
            if fault.step == "write" and fault._matches(dst):
                raise fault.error()
            real_replace(src, dst, *args, **kwargs)

        def closing(fd: int) -> None:
            fault._fds.discard(fd)
            real_close(fd)

        real_close = os.close
        mp.setattr(os, "stat", stat)
        mp.setattr(os, "open", os_open)
        mp.setattr(os, "read", read)
        mp.setattr(os, "fdopen", fdopen)
        mp.setattr(os, "replace", replace)
        mp.setattr(os, "close", closing)
        mp.setattr(io, "open", io_open)
        mp.setattr(builtins, "open", io_open)


@contextmanager
def fault_fs(match: str, step: Step, code: int) -> Iterator[FaultFS]:
    """A :class:`FaultFS` for the duration of a ``with`` block."""
    with pytest.MonkeyPatch.context() as mp:
        yield FaultFS(mp, match, step, code)
