"""Per-client rate limiting for the search API (off by default; LENSFLOW_RATE_LIMIT="60/minute").

A moving window per client, from `limits` (the library under slowapi). A client is its API key when it sends
one, else its address: behind a reverse proxy, start uvicorn with --proxy-headers / --forwarded-allow-ips so the
address is the shopper's, or limit at the proxy. The counters live in this process's memory: each worker
process of a service limits on its own.
"""

from __future__ import annotations

import hashlib
import math
import time

from limits import parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter


class RateLimiter:
    """`hit(client)` counts a request and says how long the client must wait when it is over its rate."""

    def __init__(self, spec: str):
        self.spec = spec
        self.items = parse_many(spec)
        self._window = MovingWindowRateLimiter(MemoryStorage())

    def hit(self, client: str) -> int | None:
        """None when the request may go on; else whole seconds until the client may send again (Retry-After)."""
        for item in self.items:
            if not self._window.hit(item, client):
                reset_at, _ = self._window.get_window_stats(item, client)
                return max(1, math.ceil(reset_at - time.time()))
        return None


def client_id(api_key: str | None, address: str | None) -> str:
    """Who a request counts against: a digest of its API key (never the key itself), else its address."""
    if api_key:
        return "key:" + hashlib.sha256(api_key.encode()).hexdigest()[:16]
    return "addr:" + (address or "unknown")
