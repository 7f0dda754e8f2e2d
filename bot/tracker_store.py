"""Rasa's SQL tracker store, with connections checked before use and queries off the loop.

Changes to Rasa's `SQLTrackerStore`, which is otherwise used unchanged:
- Rasa keeps a pool of PostgreSQL connections without testing them: after PostgreSQL
  restarts, each replica failed the next message on a dead connection (the citizen got the
  safety net's contact details instead of the answer). This store pings a connection when
  it leaves the pool (SQLAlchemy's `pool_pre_ping`) and reconnects.
- Rasa's `save` and `retrieve` are coroutines whose SQL runs synchronously inside the
  event loop: profiled under load, the tracker store was 40% of the Rasa server's
  event-loop time, during which no webhook could be acknowledged. Here the SQL runs in
  worker threads (one for SQLite, whose writers must take turns; several for PostgreSQL).
  Each conversation is still handled by one turn at a time (Rasa's lock store), so the
  order of its events is unchanged.
- On SQLite (the embedded default), SQLAlchemy 1.4 opened a new connection for every
  session; they are kept open here, in WAL mode (bot/db/engine.py).
- A save counts the session's stored events and inserts the new ones with two statements
  built once (SQLAlchemy Core), where Rasa builds an ORM query and flushes ORM objects at
  every save: the same rows, with less of the Rasa server's CPU (README: Benchmarks).
- While the database is unreachable, Rasa would write a turn to its in-memory fail-safe
  store and never to the database: the turns of an outage were missing from the
  transcripts agents read and citizens export. Here a conversation that cannot be saved
  is kept in the replica's memory (its next turns continue from it) and written back,
  every event once, as soon as the database answers again: at the conversation's next
  turn or by a background retry every few seconds. What a replica kept is lost if that
  replica dies before the database comes back (logged, with the count).

endpoints.yml: `tracker_store: {type: bot.tracker_store.ResilientSQLTrackerStore,
dialect: postgresql, url: <host>, port: …, db: …, username: …, password: …}` (the
options of Rasa's `SQL` type; `dialect: sqlite, db: <file>` for the embedded default).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections import Counter
from collections.abc import Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import sqlalchemy as sa
from rasa.core.tracker_store import SQLTrackerStore, create_engine_kwargs
from rasa.shared.core.events import Event, SessionStarted
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.nlu.constants import INTENT_NAME_KEY

from bot.db.engine import SQLITE_CONNECT_ARGS, sqlite_pragmas

T = TypeVar("T")
POSTGRESQL_THREADS = 4
# Errors that mean "the database cannot be reached now" (server down, restarting,
# connection lost, SQLite locked), not "this write is wrong".
UNREACHABLE = (sa.exc.OperationalError, sa.exc.InterfaceError)
RETRY_SECONDS = 2.0
MAX_KEPT = 10_000  # conversations kept in memory at most; beyond, Rasa's fail-safe store

EVENTS = SQLTrackerStore.SQLEvent.__table__
_SESSION_START = (sa.select(sa.func.max(EVENTS.c.timestamp))
                  .where(EVENTS.c.sender_id == sa.bindparam("sender_id"),
                         EVENTS.c.type_name == SessionStarted.type_name)
                  .scalar_subquery())
# Rasa 3.6's `_additional_events` count: the sender's events since its latest session
# start (all of them if it has none), as one statement built once.
STORED_IN_SESSION = (sa.select(sa.func.count()).select_from(EVENTS)
                     .where(EVENTS.c.sender_id == sa.bindparam("sender_id"),
                            sa.or_(EVENTS.c.timestamp >= _SESSION_START, _SESSION_START.is_(None))))
INSERT_EVENTS = EVENTS.insert()

logger = logging.getLogger(__name__)


def run_without_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Runs a coroutine that never awaits (Rasa's SQL store methods) to its end."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("the coroutine awaited: it needs an event loop")


class ResilientSQLTrackerStore(SQLTrackerStore):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        url = self.engine.url
        self.engine.dispose()
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            # SQLAlchemy 1.4 opens a new SQLite connection for every session of a file
            # database (NullPool): a fifth of the store's time under load. Kept open here,
            # in WAL mode like the project's database (bot/db/engine.py).
            self.engine = sa.create_engine(url, poolclass=sa.pool.QueuePool, pool_size=2,
                                           connect_args=SQLITE_CONNECT_ARGS)
            sa.event.listen(self.engine, "connect", sqlite_pragmas)
        else:
            self.engine = sa.create_engine(url, pool_pre_ping=True, **create_engine_kwargs(url))
        self.sessionmaker = sa.orm.session.sessionmaker(bind=self.engine)
        threads = 1 if url.get_backend_name() == "sqlite" else POSTGRESQL_THREADS
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="guichet-tracker-store")
        # Conversations that could not be saved, by sender id (see the module's docstring).
        self.kept: dict[str, DialogueStateTracker] = {}
        self._writing_back = asyncio.Lock()
        self._retrying: asyncio.Task[None] | None = None

    async def _in_thread(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    async def _retrieve(self, sender_id: str, fetch_events_from_all_sessions: bool) -> DialogueStateTracker | None:
        if sender_id in self.kept and not await self.write_back(sender_id):
            return self.kept[sender_id]  # the database is still away: go on from memory
        parent = super()._retrieve
        return await self._in_thread(lambda: run_without_loop(parent(sender_id, fetch_events_from_all_sessions)))

    async def save(self, tracker: DialogueStateTracker) -> None:
        """Rasa's `save`: events to the event broker if any, then the new ones to the table."""
        await self.stream_events(tracker)
        if tracker.sender_id in self.kept:
            self.kept[tracker.sender_id] = tracker
            await self.write_back(tracker.sender_id)
            return
        try:
            await self._in_thread(self._insert_new_events, tracker)
        except UNREACHABLE as error:
            if len(self.kept) >= MAX_KEPT:
                raise
            self.kept[tracker.sender_id] = tracker
            logger.warning("tracker_store_unreachable %s", json.dumps({
                "kept_in_memory": len(self.kept), "error": type(error.orig or error).__name__}))
            if self._retrying is None or self._retrying.done():
                self._retrying = asyncio.create_task(self._retry_kept())

    async def write_back(self, sender_id: str) -> bool:
        """Writes a kept conversation's unsaved events; False if the database is still away."""
        async with self._writing_back:
            tracker = self.kept.get(sender_id)
            if tracker is None:
                return True
            try:
                written = await self._in_thread(self._insert_events_after_stored, tracker)
            except UNREACHABLE:
                return False
            if self.kept.get(sender_id) is tracker:
                del self.kept[sender_id]
            logger.info("tracker_store_written_back %s", json.dumps({"events": written, "still_kept": len(self.kept)}))
            return True

    async def _retry_kept(self) -> None:
        while self.kept:
            await asyncio.sleep(RETRY_SECONDS)
            for sender_id in list(self.kept):
                if not await self.write_back(sender_id):
                    break  # still away: try again later

    def _insert_new_events(self, tracker: DialogueStateTracker) -> None:
        # Rasa 3.6's `SQLTrackerStore.save`: the events beyond those stored in this session.
        with self.session_scope() as session:
            stored = session.execute(STORED_IN_SESSION, {"sender_id": tracker.sender_id}).scalar_one()
            self._add(session, tracker.sender_id, itertools.islice(tracker.events, stored, None))
            session.commit()

    def _insert_events_after_stored(self, tracker: DialogueStateTracker) -> int:
        """A kept tracker may have started afresh during the outage (Rasa found no
        conversation to continue): its unsaved events are those after the last stored one.
        Unsaved events older than the last stored one mean the conversation went on
        elsewhere meanwhile (another replica, while the inbox was degraded too): appending
        them would put the conversation out of order for Rasa, so they are not written,
        and counted in a warning."""
        with self.session_scope() as session:
            stored = Counter(session.execute(sa.select(self.SQLEvent.timestamp).where(
                self.SQLEvent.sender_id == tracker.sender_id, self.SQLEvent.timestamp.is_not(None))).scalars())
            last = max(stored, default=None)
            events, older = [], 0
            for event in tracker.events:
                timestamp = event.timestamp or 0
                if stored[timestamp] > 0:
                    stored[timestamp] -= 1  # this very event is stored
                elif last is None or timestamp > last:
                    events.append(event)
                else:
                    older += 1
            self._add(session, tracker.sender_id, events)
            session.commit()
        if older:
            logger.warning("tracker_store_not_written_back %s", json.dumps({
                "events": older, "reason": "the conversation went on without them (another replica)"}))
        return len(events)

    @staticmethod
    def _add(session: Any, sender_id: str, events: Iterable[Event]) -> None:
        """Inserts `events` in their order (ids ascending), with Rasa's columns."""
        rows = []
        for event in events:
            data = event.as_dict()
            rows.append({
                "sender_id": sender_id,
                "type_name": event.type_name,
                "timestamp": data.get("timestamp"),
                "intent_name": data.get("parse_data", {}).get("intent", {}).get(INTENT_NAME_KEY),
                "action_name": data.get("name"),
                "data": json.dumps(data),
            })
        if rows:
            session.execute(INSERT_EVENTS, rows)
