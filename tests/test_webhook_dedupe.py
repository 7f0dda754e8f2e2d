"""Per-sender limits, and redeliveries dropped across replicas: `SeenIds` on the real local Redis (a cluster's
replicas share it), and in memory when Redis is not configured or unreachable."""

from __future__ import annotations

import asyncio
import secrets

import pytest
import redis

from bot.channels.webhook_tools import REDIS_RETRY_SECONDS, SeenIds, SenderRateLimit, bearer_ok
from tests.services import redis_available

REDIS_URL = "redis://127.0.0.1:6379/0"




@pytest.mark.skipif(not redis_available(REDIS_URL), reason="no Redis on 127.0.0.1:6379")
def test_two_replicas_share_what_they_have_seen():
    namespace = f"test-{secrets.token_hex(4)}"

    async def scenario() -> list[bool]:
        first, second = (SeenIds(ttl=60, redis_url=REDIS_URL, namespace=namespace) for _ in range(2))
        return [await first.seen_before("m.1"), await second.seen_before("m.1"), await second.seen_before("m.2"),
                await first.seen_before("m.2")]

    assert asyncio.run(scenario()) == [False, True, False, True]
    ttl = redis.Redis.from_url(REDIS_URL).ttl(f"guichet:seen:{namespace}:m.1")
    assert 0 < ttl <= 60


@pytest.mark.skipif(not redis_available(REDIS_URL), reason="no Redis on 127.0.0.1:6379")
def test_concurrent_deliveries_of_one_event_pass_once():
    namespace = f"test-{secrets.token_hex(4)}"

    async def scenario() -> list[bool]:
        replicas = [SeenIds(ttl=60, redis_url=REDIS_URL, namespace=namespace) for _ in range(5)]
        return await asyncio.gather(*(r.seen_before("m.same") for r in replicas))

    assert sorted(asyncio.run(scenario())) == [False, True, True, True, True]


def test_unreachable_redis_falls_back_on_memory(caplog):
    async def scenario() -> list[bool]:
        seen = SeenIds(ttl=60, redis_url="redis://127.0.0.1:9/0")
        return [await seen.seen_before("m.1"), await seen.seen_before("m.1")]

    assert asyncio.run(scenario()) == [False, True]
    assert f"this process's memory for {REDIS_RETRY_SECONDS} s" in caplog.text
    assert caplog.text.count("Redis unreachable") == 1  # the second call did not wait for Redis again


def test_memory_forgets_after_the_ttl_and_stays_bounded():
    async def scenario() -> tuple[list[bool], int]:
        seen = SeenIds(ttl=0.05, max_size=3)
        first = [await seen.seen_before(k) for k in ("a", "a", "b", "c", "d")]
        await asyncio.sleep(0.1)
        return first + [await seen.seen_before("a")], len(seen._seen)

    results, size = asyncio.run(scenario())
    assert results == [False, True, False, False, False, False] and size <= 3


def test_the_per_sender_limit_allows_a_burst_then_the_rate():
    limit = SenderRateLimit(burst=3, per_minute=6)  # one more message every 10 s
    assert [limit.allow("a", now=0) for _ in range(4)] == [True, True, True, False]
    assert limit.allow("b", now=0)  # each sender has its own bucket
    assert not limit.allow("a", now=9) and limit.allow("a", now=20)
    assert [limit.allow("a", now=1000) for _ in range(4)] == [True, True, True, False]  # never above the burst


def test_the_limit_keeps_a_bounded_number_of_senders_and_can_be_off():
    limit = SenderRateLimit(burst=1, per_minute=1, max_senders=2)
    for sender in ("a", "b", "c"):
        assert limit.allow(sender, now=0)
    assert limit.allow("a", now=0)  # forgotten (least recently seen): a fresh bucket
    off = SenderRateLimit(burst=1, per_minute=0)
    assert all(off.allow("a") for _ in range(100))


def test_bearer_tokens_are_checked_exactly_and_never_when_unset():
    assert bearer_ok("Bearer s3cret", "s3cret")
    assert not bearer_ok("Bearer s3cre", "s3cret") and not bearer_ok("bearer s3cret", "s3cret")
    assert not bearer_ok("s3cret", "s3cret") and not bearer_ok(None, "s3cret")
    assert not bearer_ok("Bearer ", "") and not bearer_ok("Bearer x", "")
