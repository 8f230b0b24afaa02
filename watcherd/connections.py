"""Who may hold a connection to watcherd's HTTP server, and what a hang-up is.

The HTTP server (:mod:`watcherd.httpserver`: the status page, the Gladia callback listener)
accepts connections from outside. Each connection takes a slot from a
:class:`ConnectionLimiter`: at most ``per_address`` from one client address and ``total`` in
all. A connection that is only waiting on its client (its
request head or body has not all arrived, or its answer is not read) can be *evicted*: when a
new connection finds its client's share or the whole server full, the longest-held such
connection is closed to make room. Idle or slow clients (a slow-loris) therefore never keep
a quick request such as ``GET /healthz`` out; only requests the server is working on count
for good, and those end quickly. Beyond that, a connection is refused (503).

The limiter is plain bookkeeping, no I/O: the server says how to close a connection (cancel
its task) when it admits it, and marks the stretch its handler runs as busy (the listener
also a callback's body, whose path proved it knows the token).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

__all__ = [
    "MAX_CONNECTIONS",
    "PER_ADDRESS",
    "ConnectionLimiter",
    "ConnectionLimits",
    "Slot",
    "is_hangup",
    "is_loopback",
    "peer_address",
]

#: Connections held at once, in all and from one client address.
MAX_CONNECTIONS = 32
PER_ADDRESS = 8
# What a socket says when its peer has gone: closed, reset, or never fully there.
_HANGUP_ERRNOS = frozenset({errno.ENOTCONN, errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED,
                            errno.ESHUTDOWN, errno.EBADF})


@dataclass(frozen=True)
class ConnectionLimits:
    """How many connections a server holds: ``total``, and ``per_address`` from one client."""

    total: int = MAX_CONNECTIONS
    per_address: int = PER_ADDRESS

    def __post_init__(self) -> None:
        if not 1 <= self.per_address <= self.total:
            raise ValueError("connection limits need 1 <= per_address <= total")


@dataclass(eq=False)
class Slot:
    """One admitted connection: its client address, and whether its handler is running."""

    address: str
    close: Callable[[], object]
    number: int
    busy: bool = False
    evicted: bool = False
    released: bool = False


@dataclass(eq=False)
class ConnectionLimiter:
    """The slots of one server (used from its event loop only)."""

    limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    _slots: dict[int, Slot] = field(default_factory=dict)  # admission order: oldest first
    _counter: int = 0

    def admit(self, address: str, close: Callable[[], object]) -> Slot | None:
        """A slot for a new connection from ``address``, or None: refuse it (all are busy).

        To make room, the oldest connection that is only waiting on its client is evicted
        (``close`` of its slot is called): one of this address's own when the address has
        its full share, else the oldest of any address when the server is full.
        """
        same = [s for s in self._slots.values() if s.address == address]
        if len(same) >= self.limits.per_address:
            if not self._evict_oldest(same):
                return None
        elif len(self._slots) >= self.limits.total and not self._evict_oldest(
                list(self._slots.values())):
            return None
        self._counter += 1
        slot = Slot(address, close, self._counter)
        self._slots[slot.number] = slot
        return slot

    def _evict_oldest(self, candidates: list[Slot]) -> bool:
        victim = next((s for s in candidates if not s.busy), None)
        if victim is None:
            return False
        victim.evicted = True
        self.release(victim)
        victim.close()
        return True

    @contextlib.contextmanager
    def working(self, slot: Slot) -> Iterator[None]:
        """While the server works on the connection's request, it is not evicted."""
        slot.busy = True
        try:
            yield
        finally:
            slot.busy = False

    def release(self, slot: Slot) -> None:
        """The connection ended: its slot is free (a second release is harmless)."""
        if not slot.released:
            slot.released = True
            self._slots.pop(slot.number, None)

    def held(self, address: str | None = None) -> int:
        """How many slots are held (by ``address``, or in all)."""
        if address is None:
            return len(self._slots)
        return sum(1 for s in self._slots.values() if s.address == address)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without its brackets) is this
    machine: ``localhost`` or a loopback address. Anything else, a name included, may be
    reached from elsewhere."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def peer_address(peername: object) -> str:
    """The client address of a socket's ``getpeername()`` ("?" when there is none)."""
    if isinstance(peername, tuple) and peername:
        return str(peername[0])
    return "?"


def is_hangup(exc: BaseException) -> bool:
    """Whether ``exc`` only says the client went away (a debug line, not an error)."""
    return isinstance(exc, ConnectionError) or (
        isinstance(exc, OSError) and exc.errno in _HANGUP_ERRNOS)
