"""Rasa's SQL tracker store, with connections checked before use and queries off the loop.

Two changes to Rasa's `SQLTrackerStore`, which is otherwise used unchanged:
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

endpoints.yml: `tracker_store: {type: bot.tracker_store.ResilientSQLTrackerStore,
dialect: postgresql, url: <host>, port: …, db: …, username: …, password: …}` (the
options of Rasa's `SQL` type; `dialect: sqlite, db: <file>` for the embedded default).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import sqlalchemy as sa
from rasa.core.tracker_store import SQLTrackerStore, create_engine_kwargs
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.nlu.constants import INTENT_NAME_KEY

T = TypeVar("T")
POSTGRESQL_THREADS = 4


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
        self.engine = sa.create_engine(url, pool_pre_ping=True, **create_engine_kwargs(url))
        self.sessionmaker = sa.orm.session.sessionmaker(bind=self.engine)
        threads = 1 if url.get_backend_name() == "sqlite" else POSTGRESQL_THREADS
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="guichet-tracker-store")

    async def _in_thread(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    async def _retrieve(self, sender_id: str, fetch_events_from_all_sessions: bool) -> DialogueStateTracker | None:
        parent = super()._retrieve
        return await self._in_thread(lambda: run_without_loop(parent(sender_id, fetch_events_from_all_sessions)))

    async def save(self, tracker: DialogueStateTracker) -> None:
        """Rasa's `save`: events to the event broker if any, then the new ones to the table."""
        await self.stream_events(tracker)
        await self._in_thread(self._insert_new_events, tracker)

    def _insert_new_events(self, tracker: DialogueStateTracker) -> None:
        # The body of Rasa 3.6's `SQLTrackerStore.save`, unchanged.
        with self.session_scope() as session:
            for event in self._additional_events(session, tracker):
                data = event.as_dict()
                session.add(self.SQLEvent(
                    sender_id=tracker.sender_id,
                    type_name=event.type_name,
                    timestamp=data.get("timestamp"),
                    intent_name=data.get("parse_data", {}).get("intent", {}).get(INTENT_NAME_KEY),
                    action_name=data.get("name"),
                    data=json.dumps(data),
                ))
            session.commit()
