"""Rate limit of failed authentications (token guessing), in memory, per process.

A failure is a request that presents a token (bearer header, the login form) that does
not authenticate. A browser's session cookie is not a token: a cookie naming no live
session (logged out, expired, rotated token) is deleted in the answer and not counted,
so a stale cookie cannot lock out everyone behind its address; session ids are 256
random bits, so guessing them is hopeless with or without a limit. Failures are counted in a sliding window
per *client address* and per *token prefix* (the first 8 characters presented), so that
neither many tokens from one address nor one partly known token from many addresses
gets more than ``limit`` tries per ``window`` seconds. While a key is over the limit,
every request presenting a token under that key is refused with 429 and
``Retry-After`` *before* the token is looked at, so the answer reveals nothing about the
token. Requests without a token are never limited here.

In memory is enough for the embedded mode (one process). With several server
processes each counts its own failures: the limit per process still holds.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

PREFIX_CHARS = 8


def failure_keys(client: str | None, token: str) -> list[str]:
    return [f"addr:{client or 'unknown'}", f"token:{token[:PREFIX_CHARS]}"]


class AuthFailureLimiter:
    """Sliding-window counters of failures; bounded in memory (``max_keys``)."""

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self.clock = clock
        self._lock = threading.Lock()
        self._events: dict[str, deque[float]] = {}

    @property
    def enabled(self) -> bool:
        return self.limit > 0 and self.window > 0

    def _trim(self, key: str, now: float) -> deque[float] | None:
        q = self._events.get(key)
        if q is None:
            return None
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self._events[key]
            return None
        return q

    def retry_after(self, keys: Iterable[str]) -> int | None:
        """Seconds until a request under ``keys`` may try again, or None if it may now."""
        if not self.enabled:
            return None
        now = self.clock()
        wait = 0.0
        with self._lock:
            for key in keys:
                q = self._trim(key, now)
                if q is not None and len(q) >= self.limit:
                    # free again when enough of the oldest failures leave the window
                    wait = max(wait, q[len(q) - self.limit] + self.window - now)
        return max(1, math.ceil(wait)) if wait > 0 else None

    def record_failure(self, keys: Iterable[str]) -> None:
        if not self.enabled:
            return
        now = self.clock()
        with self._lock:
            for key in keys:
                q = self._events.get(key)
                if q is None:
                    if len(self._events) >= self.max_keys:
                        self._prune(now)
                    q = self._events[key] = deque()
                q.append(now)
                while len(q) > self.limit:  # older events cannot change the answer
                    q.popleft()

    def _prune(self, now: float) -> None:
        for key in list(self._events):
            self._trim(key, now)
        while len(self._events) >= self.max_keys:  # still full: forget the oldest keys
            del self._events[next(iter(self._events))]
