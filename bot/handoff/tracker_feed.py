"""Reads Rasa's tracker store (table `events`) in the project's database.

Why read the tracker store rather than an event broker: it is the one record Rasa keeps
of every conversation, in the database the console already uses; one indexed query per
poll (`id > cursor`) serves any number of conversations, needs no extra service, and a
console that restarts picks up exactly where it stopped (its cursor is stored). Rasa's
`SQLEventBroker` would write a second table also named `events`, so it could not share
this database anyway. Only read here: writes always go through Rasa's HTTP API.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text, func, select
from sqlalchemy.exc import OperationalError, ProgrammingError

from bot.db import get_engine

logger = logging.getLogger(__name__)

# Rasa 3.6's SQLTrackerStore schema (rasa/core/tracker_store.py, class SQLEvent).
_metadata = MetaData()
EVENTS = Table(
    "events", _metadata,
    Column("id", Integer, primary_key=True),
    Column("sender_id", String(255)),
    Column("type_name", String(255)),
    Column("timestamp", Float),
    Column("intent_name", String(255)),
    Column("action_name", String(255)),
    Column("data", Text),
)
AGENT_KEY = "human_agent"


@dataclass(frozen=True)
class TrackerEvent:
    id: int
    conversation_id: str
    type: str  # user · bot · action · pause · resume · restart · slot …
    timestamp: float
    data: dict[str, Any]

    @property
    def text(self) -> str:
        metadata = self.data.get("metadata") or {}
        return str(metadata.get("full_text") or self.data.get("text") or "")

    @property
    def intent(self) -> str | None:
        return ((self.data.get("parse_data") or {}).get("intent") or {}).get("name")

    @property
    def intent_confidence(self) -> float:
        return float(((self.data.get("parse_data") or {}).get("intent") or {}).get("confidence") or 0)

    @property
    def author(self) -> str | None:
        """citizen · bot · agent for messages, None for other events."""
        if self.type == "user":
            return "citizen"
        if self.type == "bot":
            return "agent" if (self.data.get("metadata") or {}).get(AGENT_KEY) else "bot"
        return None

    @property
    def agent_name(self) -> str:
        return str((self.data.get("metadata") or {}).get("agent_name") or "")

    @property
    def buttons(self) -> list[str]:
        buttons = (self.data.get("data") or {}).get("buttons") or []
        return [str(b.get("title", "")) for b in buttons if isinstance(b, dict)]

    def as_message(self) -> dict[str, Any]:
        return {
            "id": self.id, "conversation_id": self.conversation_id, "author": self.author,
            "text": self.text, "buttons": self.buttons, "timestamp": self.timestamp,
            "agent_name": self.agent_name,
        }


def _row(row: Any) -> TrackerEvent:
    try:
        data = json.loads(row.data or "{}")
    except ValueError:
        data = {}
    return TrackerEvent(row.id, row.sender_id, row.type_name, row.timestamp or 0.0, data)


class TrackerFeed:
    def __init__(self, url: str) -> None:
        self.url = url

    def _query(self, statement) -> list:  # noqa: ANN001
        try:
            with get_engine(self.url).connect() as connection:
                return connection.execute(statement).all()
        except (OperationalError, ProgrammingError) as exc:
            if "events" in str(exc):  # Rasa has not created its table yet
                logger.debug("No tracker store table yet: %s", exc)
                return []
            raise

    def last_id(self) -> int:
        rows = self._query(select(func.max(EVENTS.c.id)))
        return int(rows[0][0] or 0) if rows else 0

    def events_after(self, cursor: int, limit: int = 1000) -> list[TrackerEvent]:
        rows = self._query(select(EVENTS).where(EVENTS.c.id > cursor).order_by(EVENTS.c.id).limit(limit))
        return [_row(r) for r in rows]

    def paused_after(self, conversation_id: str, event_id: int) -> bool:
        """Whether the conversation was paused after event `event_id`."""
        rows = self._query(
            select(EVENTS.c.id).where(
                EVENTS.c.sender_id == conversation_id, EVENTS.c.type_name == "pause", EVENTS.c.id > event_id
            ).limit(1)
        )
        return bool(rows)

    def conversation(self, conversation_id: str, limit: int = 2000) -> list[TrackerEvent]:
        rows = self._query(
            select(EVENTS).where(EVENTS.c.sender_id == conversation_id).order_by(EVENTS.c.id.desc()).limit(limit)
        )
        return [_row(r) for r in reversed(rows)]

    def messages(self, conversation_id: str) -> list[TrackerEvent]:
        """The conversation's messages (citizen, bot, agent), oldest first."""
        return [e for e in self.conversation(conversation_id) if e.author and (e.text or e.buttons)]
