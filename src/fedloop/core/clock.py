"""Clocks: the one place fedloop reads wall time, so tests can pin it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "FixedClock", "SystemClock", "utc_now"]


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime.

    Returns
    -------
    datetime
        ``datetime.now(UTC)``.
    """
    return datetime.now(UTC)


class Clock(Protocol):
    """Something that tells the time."""

    def now(self) -> datetime:
        """Return the current aware UTC datetime."""
        ...

    def monotonic(self) -> float:
        """Return seconds from an arbitrary origin that never go backwards."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """Return the current aware UTC datetime."""
        return utc_now()

    def monotonic(self) -> float:
        """Return ``time.monotonic()``."""
        return time.monotonic()


class FixedClock:
    """A clock that only moves when told to (for tests and replays).

    Parameters
    ----------
    start : datetime
        The initial time; must be timezone-aware.
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware datetime")
        self._now = start
        self._mono = 0.0

    def now(self) -> datetime:
        """Return the pinned time."""
        return self._now

    def monotonic(self) -> float:
        """Return seconds advanced so far."""
        return self._mono

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        from datetime import timedelta

        self._now = self._now + timedelta(seconds=seconds)
        self._mono += seconds
