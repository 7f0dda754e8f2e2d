"""Citizens' turns read from Rasa's tracker store (the SQL table `events`).

Rasa's `SQLTrackerStore` writes one row per event; this module reads them (never writes:
writes go through Rasa) and cuts each conversation into turns: a citizen's message and
what the assistant did until the next one (actions run, slots set, pause). The editor's
"unanswered questions" and the dashboard are computed from these turns. Same database as
the project's tables (SQLite file by default, PostgreSQL by URL).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text, func, select
from sqlalchemy.exc import OperationalError, ProgrammingError

from bot.db import get_engine
from bot.faq.store import RETRIEVAL_INTENT

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
TURN_EVENTS = ("user", "action", "slot", "pause", "resume", "restart", "active_loop", "session_started")

# Names used by the assistant (actions/, domain.yml).
FALLBACK_ACTION = "action_guichet_fallback"
FAQ_ACTION = "action_faq"
HANDOFF_ACTION = "action_human_handoff"
TOPIC_SLOT = "last_faq_topic"
FALLBACK_SLOT = "fallback_count"
TICKET_SLOT = "handoff_reference"
NLU_FALLBACK = "nlu_fallback"
# Messages that are not questions: asking for a person, yes/no, greetings, form answers.
NOT_QUESTIONS = {"human_handoff", "affirm", "deny", "greet", "goodbye", "thank", "cancel",
                 "request_callback", "bot_challenge"}


@dataclass
class Turn:
    event_id: int
    conversation_id: str
    timestamp: float
    text: str
    channel: str
    intent: str
    confidence: float
    candidates: list[tuple[str, float]]
    actions: list[str] = field(default_factory=list)
    slots: dict[str, Any] = field(default_factory=dict)
    paused: bool = False  # the conversation was paused (with an agent) when the citizen wrote
    in_form: bool = False  # a form (callback contact) was asking something
    pause_after: bool = False  # the assistant paused the conversation in this turn

    @property
    def is_payload(self) -> bool:
        return self.text.startswith("/")

    @property
    def answered_topic(self) -> str | None:
        value = self.slots.get(TOPIC_SLOT)
        return str(value) if value else None

    @property
    def fallback(self) -> bool:
        """The assistant did not understand (suggestions offered, or a person after two misses)."""
        if FALLBACK_ACTION in self.actions or self.intent == NLU_FALLBACK:
            return True
        if float(self.slots.get(FALLBACK_SLOT) or 0) > 0:
            return True
        return FAQ_ACTION in self.actions and not self.answered_topic

    @property
    def handoff(self) -> bool:
        """Handed to a person now (pause) or later (ticket / callback)."""
        return self.pause_after or HANDOFF_ACTION in self.actions or bool(self.slots.get(TICKET_SLOT))

    @property
    def question(self) -> bool:
        return not (self.is_payload or self.paused or self.in_form or self.intent in NOT_QUESTIONS)

    @property
    def when(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.timestamp, dt.timezone.utc)


def _data(raw: str | None) -> dict[str, Any]:
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _candidates(parse: dict[str, Any]) -> list[tuple[str, float]]:
    selector = (parse.get("response_selector") or {}).get(RETRIEVAL_INTENT) or {}
    ranking = []
    for item in selector.get("ranking") or []:
        key = str(item.get("intent_response_key") or "")
        if key.startswith(RETRIEVAL_INTENT + "/"):
            ranking.append((key.split("/", 1)[1], float(item.get("confidence") or 0.0)))
    return ranking[:3]


class TrackerReader:
    """Reads the `events` table of the database at `url` (empty if Rasa has not created it)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _rows(self, statement: Any) -> list[Any]:
        try:
            with get_engine(self.url).connect() as connection:
                return connection.execute(statement).all()
        except (OperationalError, ProgrammingError) as exc:
            if "events" in str(exc):
                logger.debug("No tracker store table yet: %s", exc)
                return []
            raise

    def last_event_id(self) -> int:
        rows = self._rows(select(func.max(EVENTS.c.id)))
        return int(rows[0][0] or 0) if rows else 0

    def turns(self, since: dt.datetime | None = None, until: dt.datetime | None = None,
              after_id: int = 0) -> list[Turn]:
        """Citizens' turns of every conversation in the period, oldest first."""
        statement = select(EVENTS).where(EVENTS.c.type_name.in_(TURN_EVENTS), EVENTS.c.id > after_id)
        if since is not None:
            statement = statement.where(EVENTS.c.timestamp >= _epoch(since))
        if until is not None:
            statement = statement.where(EVENTS.c.timestamp < _epoch(until))
        return build_turns(self._rows(statement.order_by(EVENTS.c.id)))


def _epoch(value: dt.datetime) -> float:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.timestamp()


def build_turns(rows: Iterable[Any]) -> list[Turn]:
    """Cuts rows (ordered by id) into turns, following pauses and forms per conversation."""
    turns: list[Turn] = []
    current: dict[str, Turn] = {}
    paused: dict[str, bool] = {}
    in_form: dict[str, bool] = {}
    for row in rows:
        sender, kind = row.sender_id, row.type_name
        data = _data(row.data)
        if kind == "user":
            parse = data.get("parse_data") or {}
            intent = parse.get("intent") or {}
            metadata = data.get("metadata") or {}
            turn = Turn(
                event_id=row.id, conversation_id=sender, timestamp=float(row.timestamp or 0.0),
                text=str(metadata.get("full_text") or data.get("text") or ""),
                channel=str(data.get("input_channel") or ""),
                intent=str(intent.get("name") or row.intent_name or ""),
                confidence=float(intent.get("confidence") or 0.0),
                candidates=_candidates(parse),
                paused=paused.get(sender, False), in_form=in_form.get(sender, False),
            )
            current[sender] = turn
            turns.append(turn)
            continue
        turn = current.get(sender)
        if kind == "pause":
            paused[sender] = True
            if turn is not None:
                turn.pause_after = True
        elif kind in ("resume", "restart", "session_started"):
            paused[sender] = False
            in_form[sender] = False
        elif kind == "active_loop":
            in_form[sender] = bool(data.get("name"))
        elif turn is not None and kind == "action":
            turn.actions.append(str(data.get("name") or row.action_name or ""))
        elif turn is not None and kind == "slot":
            turn.slots[str(data.get("name"))] = data.get("value")
    return turns
