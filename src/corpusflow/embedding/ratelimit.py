"""The rate gate every OpenAI embedding worker thread passes before it sends a request."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.utils import parsedate_to_datetime

WINDOW_SECONDS = 60.0


class _Cancelled(Exception):
    """The consumer went away: in-flight workers stop retrying."""


def _sleep_unless(stop: threading.Event, seconds: float) -> None:
    if seconds > 0 and stop.wait(seconds):
        raise _Cancelled
    if stop.is_set():
        raise _Cancelled


class RateGate:
    """Shared by all worker threads: a pause after a 429, an optional tokens-per-minute budget,
    and at most `concurrency` requests on the wire, across calls (two `embed` calls running
    at once, e.g. a pipeline's, share the bound instead of doubling it).

    The budget is a sliding 60 s window rather than a refilling bucket: a bucket holding a
    minute's worth of tokens lets up to twice the limit through in some minute, a window never
    lets more than `tokens_per_minute` (as counted) into any 60 s span.
    """

    def __init__(
        self,
        tokens_per_minute: int | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[threading.Event, float], None] = _sleep_unless,
        concurrency: int | None = None,
    ):
        self.tokens_per_minute = tokens_per_minute
        self._slots = threading.BoundedSemaphore(concurrency) if concurrency else None
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._sent: deque[tuple[float, int]] = deque()
        self._in_window = 0
        self._paused_until = 0.0

    def pause(self, seconds: float) -> None:
        """Hold every request until `seconds` from now (the server asked us to back off)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def acquire(self, tokens: int, stop: threading.Event) -> None:
        """Block until a request of `tokens` may be sent; raises _Cancelled if `stop` is set."""
        while True:
            with self._lock:
                now = self._clock()
                delay = self._paused_until - now
                if delay <= 0:
                    if not self.tokens_per_minute:
                        return
                    delay = self._budget_delay(now, tokens)
                    if delay <= 0:
                        self._sent.append((now, tokens))
                        self._in_window += tokens
                        return
            self._sleep(stop, delay)

    @contextmanager
    def in_flight(self, stop: threading.Event) -> Iterator[None]:
        """Hold one of the `concurrency` slots for a request; raises _Cancelled if `stop` is set."""
        slots = self._slots
        if slots is None:
            yield
            return
        while not slots.acquire(timeout=0.05):
            if stop.is_set():
                raise _Cancelled
        try:
            yield
        finally:
            slots.release()

    def _budget_delay(self, now: float, tokens: int) -> float:
        while self._sent and self._sent[0][0] <= now - WINDOW_SECONDS:
            self._in_window -= self._sent.popleft()[1]
        excess = self._in_window + tokens - (self.tokens_per_minute or 0)
        if excess <= 0:
            return 0.0
        freed = 0
        for sent_at, n in self._sent:
            freed += n
            if freed >= excess:
                return sent_at + WINDOW_SECONDS - now
        return WINDOW_SECONDS  # unreachable while each request fits in the budget


def retry_after(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (retry-after-ms, Retry-After seconds or date)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / scale
        except ValueError:
            if name == "retry-after-ms":
                continue
            try:
                seconds = parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError, IndexError, OverflowError):
                continue
        if math.isfinite(seconds):
            return max(0.0, seconds)
    return None
