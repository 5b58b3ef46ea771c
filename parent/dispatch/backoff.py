"""When a retryable target comes back: WNS's Retry-After if it gave one, else exponential
backoff with full jitter, so a burst of failures does not return as a burst."""

from __future__ import annotations

import random


def retry_delay(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds to wait before attempt `attempt + 1` (attempts count from 1)."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), cap)
    ceiling = min(cap, base * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security
