"""Failed authentications, counted per client address, so that keys cannot be guessed at full speed.

A token bucket per address: each failure takes a token; with none left the failure is answered 429 with
`Retry-After` instead of 401, and the bucket refills at a steady rate. The bucket is consulted only when a
key has failed: a valid key is always let in, also from an address that is being throttled (a reseller
behind the same NAT as a misbehaving script is not locked out).

In memory, per API process: several processes each keep their own buckets, so a client may fail
`burst` times per process before it is slowed. The key's 192 random bits are what make guessing hopeless;
this keeps a flood of guesses loud and cheap to answer.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    at: float


class FailedAuthentications:
    def __init__(
        self,
        *,
        burst: int,
        per_minute: float,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        self.burst, self.rate = float(burst), per_minute / 60.0
        self._clock, self._max_clients = clock, max_clients
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def failed(self, client: str) -> int | None:
        """Count one failed authentication; the seconds to wait (for `Retry-After`) when over the limit."""
        now = self._clock()
        bucket = self._buckets.pop(client, None) or _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        self._buckets[client] = bucket  # most recently seen last: the oldest go first when memory is full
        while len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        return max(1, math.ceil((1 - bucket.tokens) / self.rate))
