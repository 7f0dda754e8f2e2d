"""The cluster's Rasa stores: the lock store (bot/lock_store.py) on the real local Redis,
carrying on in the replica's memory while Redis is unreachable; the SQL tracker store
(bot/tracker_store.py) checking its connections and running its SQL off the event loop."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable

import pytest
import redis
import sqlalchemy as sa
from rasa.utils.endpoints import EndpointConfig
from sqlalchemy.pool import QueuePool

from bot import lock_store as lock_store_module
from bot.lock_store import ResilientRedisLockStore
from tests.services import loop_ticks_during
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
    # SQLite: connections kept open (SQLAlchemy 1.4 would open one per session), in WAL mode
    assert isinstance(inner.engine.pool, QueuePool)
    with inner.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL: every commit on disk

    async def scenario() -> list[str]:
        tracker = DialogueStateTracker("citizen", slots=[])
        tracker.update(UserUttered("bonjour"))
        await store.save(tracker)
        again = await store.retrieve("citizen")
        return [e.text for e in again.events if isinstance(e, UserUttered)]

    assert asyncio.run(scenario()) == ["bonjour"]


@pytest.fixture(params=["sqlite", "postgresql"])
def tracker_store(request, tmp_path):
    """The tracker store as Rasa builds it from endpoints.yml, on SQLite or PostgreSQL."""
    from urllib.parse import parse_qs, urlsplit

    from rasa.core.tracker_store import TrackerStore
    from rasa.shared.core.domain import Domain

    from tests.handoff_support import database_url

    with database_url(request.param, tmp_path) as url:
        if request.param == "sqlite":
            config = EndpointConfig(type="bot.tracker_store.ResilientSQLTrackerStore", dialect="sqlite",
                                    db=str(tmp_path / "tracker.db"))
        else:
            parts = urlsplit(url)
            config = EndpointConfig(type="bot.tracker_store.ResilientSQLTrackerStore", dialect="postgresql",
                                    url=parts.hostname, port=parts.port, db=parts.path.lstrip("/"),
                                    username=parts.username,
                                    query={k: v[0] for k, v in parse_qs(parts.query).items()})
        store = TrackerStore.create(config, Domain.empty())
        inner = getattr(store, "_tracker_store", store)
        if request.param == "postgresql":
            assert inner.engine.pool._pre_ping  # a connection left dead by a restart is replaced
        yield inner
        store_engine = getattr(store, "_tracker_store", store).engine
        store_engine.dispose()


def test_conversations_saved_at_once_keep_their_events_in_order(tracker_store):
    """40 conversations of 3 turns each, all at once: the SQL runs in the store's threads,
    and every conversation reads back exactly its own events, in order."""
    import threading

    from rasa.shared.core.events import ActionExecuted, BotUttered, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    threads: set[str] = set()
    scope = tracker_store.session_scope

    def recording_scope():
        threads.add(threading.current_thread().name)
        return scope()

    tracker_store.session_scope = recording_scope

    async def conversation(index: int) -> None:
        tracker = DialogueStateTracker(f"citizen-{index}", slots=[])
        for turn in range(3):
            tracker.update(UserUttered(f"question {turn} de {index} 🙂 <b>x</b>"))
            tracker.update(ActionExecuted("action_guichet_faq"))
            tracker.update(BotUttered(f"réponse {turn} à {index}"))
            await tracker_store.save(tracker)
            tracker = await tracker_store.retrieve(f"citizen-{index}")

    async def scenario() -> None:
        await asyncio.gather(*(conversation(i) for i in range(40)))

    asyncio.run(scenario())

    async def read(index: int) -> list[str]:
        tracker = await tracker_store.retrieve(f"citizen-{index}")
        return [e.text for e in tracker.events if isinstance(e, (UserUttered, BotUttered))]

    for index in range(40):
        expected = [text for turn in range(3) for text in
                    (f"question {turn} de {index} 🙂 <b>x</b>", f"réponse {turn} à {index}")]
        assert asyncio.run(read(index)) == expected
    assert threads and all(name.startswith("guichet-tracker-store") for name in threads)


def test_saves_write_the_rows_rasa_writes(tracker_store, tmp_path):
    """The store's own count-and-insert (two statements built once) writes, turn after
    turn and across a new conversation session, exactly the rows Rasa's `SQLTrackerStore`
    writes for the same conversation (each turn continues from the stored conversation and
    is saved once, as Rasa's processor does)."""
    from rasa.core.tracker_store import SQLTrackerStore
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import ActionExecuted, BotUttered, SessionStarted, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    rasa_store = SQLTrackerStore(Domain.empty(), dialect="sqlite", db=str(tmp_path / "rasa.db"))
    tracker = DialogueStateTracker("citizen", slots=[])
    turns = [
        [ActionExecuted("action_session_start", timestamp=1.0), SessionStarted(timestamp=1.0),
         ActionExecuted("action_listen", timestamp=1.0)],
        [UserUttered("horaires ? 🙂 <script>x</script>", {"name": "faq", "confidence": 0.9}, timestamp=2.0),
         ActionExecuted("action_guichet_faq", timestamp=2.1), BotUttered("De 8 h à 17 h.", timestamp=2.1),
         ActionExecuted("action_listen", timestamp=2.1)],
        [UserUttered("merci", {"name": "thanks", "confidence": 0.8}, timestamp=3.0),
         ActionExecuted("action_listen", timestamp=3.0)],
        # a new session the next day: Rasa counts only the events since its start
        [ActionExecuted("action_session_start", timestamp=90_000.0), SessionStarted(timestamp=90_000.0),
         ActionExecuted("action_listen", timestamp=90_000.0),
         UserUttered("bonjour", {"name": "greet", "confidence": 0.95}, timestamp=90_001.0)],
        [ActionExecuted("utter_greet", timestamp=90_001.1), BotUttered("Bonjour !", timestamp=90_001.1)],
    ]

    async def save_each_turn() -> None:
        # as Rasa does: each turn continues the conversation retrieved from the store
        ours, theirs = tracker, tracker.copy()
        for events in turns:
            for event in events:
                ours.update(event)
                theirs.update(event)
            await tracker_store.save(ours)
            await rasa_store.save(theirs)
            ours, theirs = await tracker_store.retrieve("citizen"), await rasa_store.retrieve("citizen")

    asyncio.run(save_each_turn())

    def rows(store: SQLTrackerStore) -> list[tuple]:
        table = store.SQLEvent.__table__
        with store.engine.connect() as connection:
            return [tuple(row) for row in connection.execute(
                sa.select(table.c.sender_id, table.c.type_name, table.c.timestamp, table.c.intent_name,
                          table.c.action_name, table.c.data).order_by(table.c.id))]

    ours = rows(tracker_store)
    assert ours == rows(rasa_store)
    assert len(ours) == sum(len(events) for events in turns)
    assert [row[4] for row in ours if row[1] == "action"][-1] == "utter_greet"
    retrieved = asyncio.run(tracker_store.retrieve("citizen"))
    assert [e.text for e in retrieved.events if isinstance(e, UserUttered)] == ["bonjour"]  # this session
    rasa_store.engine.dispose()


def test_the_event_loop_runs_while_the_tracker_store_writes(tracker_store):
    import time

    from rasa.shared.core.events import UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    insert = tracker_store._insert_new_events

    def slow_insert(tracker):  # a slow disk, a busy database
        time.sleep(0.5)
        insert(tracker)

    tracker_store._insert_new_events = slow_insert

    async def scenario() -> tuple[DialogueStateTracker | None, int]:
        tracker = DialogueStateTracker("citizen", slots=[])
        tracker.update(UserUttered("bonjour"))
        _, ticks = await loop_ticks_during(tracker_store.save(tracker))
        return await tracker_store.retrieve("citizen"), ticks

    stored, ticks = asyncio.run(scenario())
    assert [e.text for e in stored.events if isinstance(e, UserUttered)] == ["bonjour"]
    assert ticks >= 10


def test_run_without_loop_refuses_a_coroutine_that_awaits():
    from bot.tracker_store import run_without_loop

    async def plain() -> int:
        return 7

    async def awaiting() -> None:
        await asyncio.sleep(0)

    assert run_without_loop(plain()) == 7
    with pytest.raises(RuntimeError, match="awaited"):
        run_without_loop(awaiting())


def test_turns_of_a_postgresql_outage_are_written_back_once_it_is_back():
    """PostgreSQL stopped between turns: the conversation goes on from the replica's memory
    (a citizen already known, and one first seen during the outage), and once PostgreSQL
    is back every event is in the table exactly once, in order."""
    from rasa.core.tracker_store import FailSafeTrackerStore, TrackerStore
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import BotUttered, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    from bot import tracker_store as module
    from tests.services import private_postgres

    def texts(tracker: DialogueStateTracker | None) -> list[str]:
        return [e.text for e in (tracker.events if tracker else []) if isinstance(e, (UserUttered, BotUttered))]

    with private_postgres() as server:
        config = EndpointConfig(type="bot.tracker_store.ResilientSQLTrackerStore", dialect="postgresql",
                                url="127.0.0.1", port=server.port, db="guichet", username="postgres")
        inner = TrackerStore.create(config, Domain.empty())
        store = FailSafeTrackerStore(inner)  # as Rasa's Agent wraps it

        async def turn(sender: str, number: int) -> None:
            tracker = await store.retrieve(sender) or DialogueStateTracker(sender, slots=[])
            tracker.update(UserUttered(f"{sender} question {number} <b>🙂</b>"))
            tracker.update(BotUttered(f"{sender} réponse {number}"))
            await store.save(tracker)

        async def scenario() -> dict[str, list[str]]:
            await turn("known", 1)
            server.stop()
            for number in (2, 3):
                await turn("known", number)  # kept in memory, continued from memory
                await turn("new", number)  # first seen now: Rasa starts it afresh
            assert set(inner.kept) == {"known", "new"}
            assert texts(await store.retrieve("known"))[-2:] == ["known question 3 <b>🙂</b>", "known réponse 3"]
            server.start()
            await turn("known", 4)  # its next turn writes it back first
            deadline = asyncio.get_running_loop().time() + 20
            while inner.kept and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.2)  # "new" writes nothing more: the background retry
            assert not inner.kept
            return {sender: texts(await inner.retrieve_full_tracker(sender)) for sender in ("known", "new")}

        monkey = pytest.MonkeyPatch()
        monkey.setattr(module, "RETRY_SECONDS", 0.5)
        try:
            stored = asyncio.run(scenario())
        finally:
            monkey.undo()
            inner.engine.dispose()
    expected = {sender: [t for n in numbers for t in (f"{sender} question {n} <b>🙂</b>", f"{sender} réponse {n}")]
                for sender, numbers in (("known", (1, 2, 3, 4)), ("new", (2, 3)))}
    assert stored == expected


def test_turns_kept_by_a_replica_after_the_conversation_went_on_elsewhere_are_not_written(caplog):
    """Both faults at once (docs/deployment.md): replica A keeps a turn while PostgreSQL
    is away; once it is back, the conversation's next turn reaches replica B, which does
    not know that turn and saves its own. A's kept turn is older than what is stored now:
    appending it would put the conversation out of order for Rasa, so it is not written,
    and the count is logged. The stored conversation stays in order."""
    from rasa.core.tracker_store import FailSafeTrackerStore, TrackerStore
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import BotUttered, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    from bot import tracker_store as module
    from tests.services import private_postgres

    with private_postgres() as server:
        config = EndpointConfig(type="bot.tracker_store.ResilientSQLTrackerStore", dialect="postgresql",
                                url="127.0.0.1", port=server.port, db="guichet", username="postgres")
        replica_a, replica_b = (TrackerStore.create(config, Domain.empty()) for _ in range(2))

        async def turn(replica: TrackerStore, number: int) -> None:
            store = FailSafeTrackerStore(replica)  # as Rasa's Agent wraps it
            tracker = await store.retrieve("citizen") or DialogueStateTracker("citizen", slots=[])
            tracker.update(UserUttered(f"question {number}"))
            tracker.update(BotUttered(f"réponse {number}"))
            await store.save(tracker)

        async def scenario() -> list[str]:
            await turn(replica_a, 1)
            server.stop()
            await turn(replica_a, 2)  # kept in A's memory
            assert set(replica_a.kept) == {"citizen"}
            server.start()
            await turn(replica_b, 3)  # B reads turn 1 only, and saves turn 3
            assert await replica_a.write_back("citizen")  # the database answers: A's copy is done with
            assert not replica_a.kept
            stored = await replica_b.retrieve_full_tracker("citizen")
            return [e.text for e in stored.events if isinstance(e, (UserUttered, BotUttered))]

        monkey = pytest.MonkeyPatch()
        monkey.setattr(module, "RETRY_SECONDS", 3600)  # no background retry: the test writes back
        try:
            with caplog.at_level("WARNING", logger="bot.tracker_store"):
                stored = asyncio.run(scenario())
        finally:
            monkey.undo()
            for store in (replica_a, replica_b):
                store.engine.dispose()
    assert stored == ["question 1", "réponse 1", "question 3", "réponse 3"]
    warnings = [r.getMessage() for r in caplog.records if "tracker_store_not_written_back" in r.getMessage()]
    assert len(warnings) == 1 and '"events": 2' in warnings[0], warnings
