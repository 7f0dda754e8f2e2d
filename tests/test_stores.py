"""The cluster's Rasa stores: the lock store (bot/lock_store.py) on the real local Redis,
carrying on in the replica's memory while Redis is unreachable; the SQL tracker store
(bot/tracker_store.py) checking its connections."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable

import pytest
import redis
from rasa.utils.endpoints import EndpointConfig

from bot import lock_store as lock_store_module
from bot.lock_store import ResilientRedisLockStore
from tests.test_inbox import needs_redis


def two_turns(store: ResilientRedisLockStore, during: Callable[[], None] = lambda: None) -> list[str]:
    """Two messages of one conversation at once: the order in which they held its lock."""
    order: list[str] = []

    async def turn(name: str) -> None:
        async with store.lock("citizen", wait_time_in_seconds=0.01):
            order.append(f"{name} in")
            during()
            await asyncio.sleep(0.05)
            order.append(f"{name} out")

    async def scenario() -> None:
        await asyncio.gather(turn("a"), turn("b"))

    asyncio.run(scenario())
    return order


@needs_redis
def test_locks_live_in_redis_and_serialize_a_conversation():
    prefix = f"t{secrets.token_hex(4)}"
    store = ResilientRedisLockStore(EndpointConfig(url="127.0.0.1", port=6379, db=4, key_prefix=prefix))
    client = redis.Redis(db=4)

    def shared() -> None:
        assert client.exists(f"{prefix}:lock:citizen")  # shared with the other replicas

    assert two_turns(store, shared) == ["a in", "a out", "b in", "b out"]
    assert not client.exists(f"{prefix}:lock:citizen")
    assert store.memory.conversation_locks == {}


def test_with_redis_unreachable_conversations_are_locked_in_memory(caplog, monkeypatch):
    monkeypatch.setattr(lock_store_module, "RETRY_SECONDS", 60)
    store = ResilientRedisLockStore(EndpointConfig(url="127.0.0.1", port=9, db=0))
    assert two_turns(store) == ["a in", "a out", "b in", "b out"]
    assert store.memory.conversation_locks == {}
    assert any("Redis lock store unreachable" in r.getMessage() for r in caplog.records)


def test_rasa_builds_it_from_endpoints():
    from rasa.core.lock_store import LockStore

    config = EndpointConfig(type="bot.lock_store.ResilientRedisLockStore", url="127.0.0.1", port=6379, db=4,
                            key_prefix="guichet")
    store = LockStore.create(config)
    assert isinstance(store, ResilientRedisLockStore)
    with pytest.raises(Exception, match="Could not find a class"):
        LockStore.create(EndpointConfig(type="bot.lock_store.Nope"))


def test_the_tracker_store_checks_its_connections_and_keeps_conversations(tmp_path):
    from rasa.core.tracker_store import TrackerStore
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    from bot.tracker_store import ResilientSQLTrackerStore

    config = EndpointConfig(type="bot.tracker_store.ResilientSQLTrackerStore", dialect="sqlite",
                            db=str(tmp_path / "tracker.db"))
    store = TrackerStore.create(config, Domain.empty())
    inner = getattr(store, "_tracker_store", store)  # Rasa wraps it
    assert isinstance(inner, ResilientSQLTrackerStore)  # not Rasa's silent in-memory fallback
    assert inner.engine.pool._pre_ping

    async def scenario() -> list[str]:
        tracker = DialogueStateTracker("citizen", slots=[])
        tracker.update(UserUttered("bonjour"))
        await store.save(tracker)
        again = await store.retrieve("citizen")
        return [e.text for e in again.events if isinstance(e, UserUttered)]

    assert asyncio.run(scenario()) == ["bonjour"]
