"""Recent completion rate, the denominator of every ``retry_after`` estimate.

Two fixed windows, the previous one weighted by how much of it still
overlaps the sliding window (the approximation Cloudflare and Envoy use
for rate limits): O(1) per completion, no samples kept, no clock read.
"""

from __future__ import annotations

from typing import final

__all__ = ["CompletionRate"]


@final
class CompletionRate:
    """Completions per second over the last ``window`` seconds, approximately."""

    __slots__ = ("_current", "_previous", "_start", "window")

    def __init__(self, window: float = 5.0) -> None:
        self.window = window
        self._start = 0.0
        self._current = 0
        self._previous = 0

    def record(self, now: float) -> None:
        """Count one completion at ``now`` (non-decreasing)."""
        if now - self._start >= self.window:
            self._roll(now)
        self._current += 1

    def per_second(self, now: float) -> float:
        elapsed = now - self._start
        window = self.window
        if elapsed >= 2 * window:
            return 0.0
        if elapsed >= window:  # no completion since the current window ended
            return self._current * (1.0 - (elapsed - window) / window) / window
        return (self._previous * (1.0 - elapsed / window) + self._current) / window

    def _roll(self, now: float) -> None:
        elapsed = now - self._start
        if elapsed < 2 * self.window:
            self._previous = self._current
            self._start += self.window
        else:
            self._previous = 0
            self._start = now
        self._current = 0
