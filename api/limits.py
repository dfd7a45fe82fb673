"""Per-key requests/minute and tokens/minute as token buckets: in-process, or in Redis so that
every API process shares them.

A bucket holds up to `per_minute` units and refills at `per_minute / 60` a second, so a key
may burst to its limit and then sustains the rate. Token charges may drive a bucket into debt
(a long answer costs more than its estimate); the key waits until the debt is repaid.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from core.errors import RateLimitedError
from core.keys import Principal
from core.metrics import RATE_LIMITED

logger = logging.getLogger(__name__)

_ALWAYS = -1e18  # the `need` of a charge: admitted whatever the level
_REDIS_PREFIX = "ondata:ratelimit:"

# KEYS[1] bucket; ARGV capacity, cost, need. Redis's clock is shared by every API process.
_TAKE_LUA = """
local capacity = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local need = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = capacity / 60
local state = redis.call('HMGET', KEYS[1], 'level', 'ts')
local level = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
level = math.min(capacity, level + math.max(0, now - ts) * rate)
local wait = 0
if level >= need then level = level - cost else wait = (need - level) / rate end
redis.call('HSET', KEYS[1], 'level', tostring(level), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], 120 + math.ceil(math.max(0, -level) / rate))
return tostring(wait)
"""


class TokenBuckets(Protocol):
    """Named token buckets; `take` deducts `cost` when the level is at least `need`."""

    async def take(self, name: str, *, per_minute: int, cost: float, need: float) -> float:
        """0.0 when admitted (cost deducted), else the seconds until the level reaches `need`."""
        ...

    async def aclose(self) -> None: ...


@dataclass
class _Bucket:
    level: float
    ts: float


class MemoryTokenBuckets:
    """Buckets in this process (the embedded default: one API process)."""

    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}

    async def take(self, name: str, *, per_minute: int, cost: float, need: float) -> float:
        now, rate = time.monotonic(), per_minute / 60
        bucket = self._buckets.setdefault(name, _Bucket(level=per_minute, ts=now))
        bucket.level = min(per_minute, bucket.level + (now - bucket.ts) * rate)
        bucket.ts = now
        if bucket.level < need:
            return (need - bucket.level) / rate
        bucket.level -= cost
        return 0.0

    async def aclose(self) -> None:
        self._buckets.clear()


class RedisTokenBuckets:
    """Buckets in Redis, updated atomically by one Lua script (N API processes, one limit)."""

    def __init__(self, url: str) -> None:
        self._client = aioredis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._script = self._client.register_script(_TAKE_LUA)

    async def take(self, name: str, *, per_minute: int, cost: float, need: float) -> float:
        args = [per_minute, cost, need]
        wait = await self._script(keys=[_REDIS_PREFIX + name], args=args)
        return float(wait)

    async def aclose(self) -> None:
        await self._client.aclose()


def make_token_buckets(redis_url: str | None) -> TokenBuckets:
    return RedisTokenBuckets(redis_url) if redis_url else MemoryTokenBuckets()


class RateLimiter:
    """Applies each principal's requests/minute and tokens/minute (its own, or the defaults)."""

    def __init__(
        self,
        buckets: TokenBuckets,
        *,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
    ) -> None:
        self._buckets = buckets
        self._rpm = requests_per_minute
        self._tpm = tokens_per_minute

    async def admit_request(self, principal: Principal) -> None:
        """Count one request; RateLimitedError (429) when the key is over its requests/minute."""
        limit = principal.requests_per_minute or self._rpm
        if limit is not None:
            wait = await self._take(f"{principal.subject}:requests", limit, cost=1, need=1)
            _raise_if_waiting(wait, f"{limit} requests per minute", limit="requests")

    async def admit_tokens(self, principal: Principal, tokens: int) -> None:
        """Charge a request's estimated tokens; 429 while the key's tokens/minute are spent."""
        limit = principal.tokens_per_minute or self._tpm
        if limit is not None:
            need = min(max(tokens, 1), limit)
            wait = await self._take(f"{principal.subject}:tokens", limit, cost=tokens, need=need)
            _raise_if_waiting(wait, f"{limit} tokens per minute", limit="tokens")

    async def charge_tokens(self, principal: Principal, tokens: int) -> None:
        """Charge tokens spent beyond the estimate (never refused; later requests wait)."""
        limit = principal.tokens_per_minute or self._tpm
        if limit is not None and tokens > 0:
            await self._take(f"{principal.subject}:tokens", limit, cost=tokens, need=_ALWAYS)

    async def _take(self, name: str, per_minute: int, *, cost: float, need: float) -> float:
        try:
            return await self._buckets.take(name, per_minute=per_minute, cost=cost, need=need)
        except (RedisError, OSError) as exc:
            # limits protect capacity, not data: an unreachable Redis must not stop the API
            logger.warning("rate limiter unavailable, request admitted: %s", exc)
            return 0.0

    async def aclose(self) -> None:
        await self._buckets.aclose()


def _raise_if_waiting(wait: float, what: str, *, limit: str) -> None:
    if wait > 0:
        RATE_LIMITED.labels(limit=limit).inc()
        raise RateLimitedError(
            f"Rate limit of {what} for this key reached; retry after {math.ceil(wait)} s.",
            retry_after=wait,
        )
