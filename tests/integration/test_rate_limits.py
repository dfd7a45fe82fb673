"""Per-key limits: one contract for the in-process and the Redis token buckets (the machine's
Redis on 127.0.0.1:6379), two Redis-backed limiters sharing one limit, and the RateLimiter."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.limits import MemoryTokenBuckets, RateLimiter, RedisTokenBuckets, TokenBuckets
from core.access import Scope
from core.db import make_engine
from core.errors import RateLimitedError
from core.keys import KeyStore, Principal
from core.settings import ApiSettings, Settings
from tests.integration.api_support import serve_in_thread

REDIS_URL = "redis://127.0.0.1:6379/15"

READER = Scope(role="reader")


@pytest.fixture(params=["memory", "redis"])
async def buckets(request: pytest.FixtureRequest) -> AsyncIterator[TokenBuckets]:
    made: TokenBuckets = (
        MemoryTokenBuckets() if request.param == "memory" else RedisTokenBuckets(REDIS_URL)
    )
    yield made
    await made.aclose()


def _name() -> str:
    return f"test-{uuid.uuid4().hex}"


class TestTokenBucketsContract:
    async def test_a_full_bucket_admits_up_to_its_capacity(self, buckets: TokenBuckets) -> None:
        name = _name()
        waits = [await buckets.take(name, per_minute=3, cost=1, need=1) for _ in range(4)]
        assert waits[:3] == [0.0, 0.0, 0.0]
        # one unit refills in 60/3 = 20 s
        assert 0 < waits[3] <= 20

    async def test_buckets_are_independent_by_name(self, buckets: TokenBuckets) -> None:
        first, second = _name(), _name()
        assert await buckets.take(first, per_minute=1, cost=1, need=1) == 0.0
        assert await buckets.take(first, per_minute=1, cost=1, need=1) > 0
        assert await buckets.take(second, per_minute=1, cost=1, need=1) == 0.0

    async def test_a_charge_drives_the_bucket_into_debt(self, buckets: TokenBuckets) -> None:
        name = _name()
        assert await buckets.take(name, per_minute=600, cost=900, need=-1e18) == 0.0
        wait = await buckets.take(name, per_minute=600, cost=1, need=1)
        # 300 in debt + 1 needed at 10 a second: about 30 s
        assert 29 < wait <= 31

    async def test_a_refused_take_costs_nothing(self, buckets: TokenBuckets) -> None:
        name = _name()
        assert await buckets.take(name, per_minute=60, cost=60, need=60) == 0.0
        first = await buckets.take(name, per_minute=60, cost=30, need=30)
        second = await buckets.take(name, per_minute=60, cost=30, need=30)
        assert 0 < second <= first <= 30


async def test_redis_buckets_are_shared_between_processes_clients() -> None:
    one, two = RedisTokenBuckets(REDIS_URL), RedisTokenBuckets(REDIS_URL)
    name = _name()
    try:
        assert await one.take(name, per_minute=2, cost=1, need=1) == 0.0
        assert await two.take(name, per_minute=2, cost=1, need=1) == 0.0
        assert await one.take(name, per_minute=2, cost=1, need=1) > 0
        assert await two.take(name, per_minute=2, cost=1, need=1) > 0
    finally:
        await one.aclose()
        await two.aclose()


async def test_limiter_refuses_with_retry_after_and_uses_the_keys_own_limit() -> None:
    limiter = RateLimiter(MemoryTokenBuckets(), requests_per_minute=100)
    tight = Principal(subject=_name(), scope=READER, requests_per_minute=1)
    await limiter.admit_request(tight)
    with pytest.raises(RateLimitedError) as refused:
        await limiter.admit_request(tight)
    assert refused.value.status_code == 429
    assert 0 < refused.value.retry_after <= 60
    roomy = Principal(subject=_name(), scope=READER)
    for _ in range(5):
        await limiter.admit_request(roomy)


async def test_limiter_tokens_charge_estimate_then_settle() -> None:
    limiter = RateLimiter(MemoryTokenBuckets(), tokens_per_minute=1000)
    caller = Principal(subject=_name(), scope=READER)
    await limiter.admit_tokens(caller, 400)
    await limiter.charge_tokens(caller, 700)
    with pytest.raises(RateLimitedError, match="1000 tokens per minute"):
        await limiter.admit_tokens(caller, 10)


async def test_limiter_without_limits_admits_everything() -> None:
    limiter = RateLimiter(MemoryTokenBuckets())
    caller = Principal(subject=_name(), scope=READER)
    for _ in range(50):
        await limiter.admit_request(caller)
        await limiter.admit_tokens(caller, 10**6)


async def test_limiter_admits_when_redis_is_unreachable() -> None:
    limiter = RateLimiter(RedisTokenBuckets("redis://127.0.0.1:1/0"), requests_per_minute=1)
    caller = Principal(subject=_name(), scope=READER)
    try:
        await limiter.admit_request(caller)
        await limiter.admit_request(caller)
    finally:
        await limiter.aclose()


def test_two_api_apps_on_one_redis_share_a_keys_limit(tmp_path: Path) -> None:
    """N API processes, one limit: two apps (own limiter clients) with one store and Redis."""
    database = f"sqlite:///{tmp_path / 'shared.db'}"
    api = ApiSettings(rate_limit_redis_url=REDIS_URL)
    first, second = (
        Settings(data_dir=tmp_path / name, database_url=database, api=api) for name in ("a", "b")
    )
    engine = make_engine(database)
    key = KeyStore(engine).create(role="reader", requests_per_minute=3).key
    engine.dispose()
    headers = {"authorization": f"Bearer {key}"}
    with (
        serve_in_thread(create_app(first)) as one,
        serve_in_thread(create_app(second)) as two,
        httpx.Client(timeout=30, headers=headers) as http,
    ):
        statuses = [http.get(f"{url}/v1/models").status_code for url in (one, two, one, two)]
        refused = http.get(f"{one}/v1/models")
    assert statuses == [200, 200, 200, 429]
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
