"""How often one client may get the page's token wrong: a few times a minute, then 429.

``POST /login`` compares a guess with the token; without a limit, anyone who reaches a page
beyond loopback could guess as fast as the network allows. After ``max_failures`` wrong
guesses from one address within ``window`` seconds, that address's logins are refused (even a
right one, or the limit would tell nothing) until the oldest of those failures is older than
the window. The table is bounded: past ``max_clients`` addresses, the longest quiet is dropped.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

#: Wrong tokens one client address may send per window of this many seconds.
MAX_FAILURES = 5
WINDOW_SECONDS = 60.0
_MAX_CLIENTS = 4096


@dataclass(eq=False)
class LoginThrottle:
    """The recent failed logins of each client address."""

    max_failures: int = MAX_FAILURES
    window: float = WINDOW_SECONDS
    max_clients: int = _MAX_CLIENTS
    clock: Callable[[], float] = time.monotonic
    _failures: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict)

    def retry_after(self, address: str) -> int | None:
        """Whole seconds until ``address`` may try again, or None when it may now."""
        recent = self._recent(address)
        if recent is None or len(recent) < self.max_failures:
            return None
        return max(1, math.ceil(recent[0] + self.window - self.clock()))

    def failed(self, address: str) -> None:
        """``address`` sent a wrong token."""
        recent = self._recent(address)
        if recent is None:
            recent = self._failures[address] = deque(maxlen=self.max_failures)
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)
        recent.append(self.clock())
        self._failures.move_to_end(address)

    def succeeded(self, address: str) -> None:
        """``address`` signed in: its failures are forgotten."""
        self._failures.pop(address, None)

    def _recent(self, address: str) -> deque[float] | None:
        recent = self._failures.get(address)
        if recent is None:
            return None
        cutoff = self.clock() - self.window
        while recent and recent[0] <= cutoff:
            recent.popleft()
        if not recent:
            del self._failures[address]
            return None
        return recent
