"""When a citizen last wrote, from Rasa's tracker store (table `events`, same database).

The channels' own readers decide (`meta_window.last_user_message_time`,
`whatsapp_delivery.last_user_message_time`): the platform's timestamp kept in the event's
metadata wins over the time Rasa processed it. Only read here.
"""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

from sqlalchemy import select
from sqlalchemy.exc import OperationalError, ProgrammingError

from bot.channels import meta_window, whatsapp_delivery
from bot.db import get_engine
from bot.handoff.tracker_feed import EVENTS

logger = logging.getLogger(__name__)

# The last user events looked at per citizen (enough to skip a few on another channel).
RECENT_EVENTS = 20


def _event(row) -> SimpleNamespace:  # noqa: ANN001 - a SQLAlchemy row
    try:
        data = json.loads(row.data or "{}")
    except ValueError:
        data = {}
    return SimpleNamespace(type_name="user", timestamp=float(row.timestamp or data.get("timestamp") or 0),
                           input_channel=data.get("input_channel"), metadata=data.get("metadata") or {})


def recent_user_events(url: str, conversation_id: str) -> list[SimpleNamespace]:
    """The citizen's last user events, oldest first."""
    statement = (
        select(EVENTS.c.id, EVENTS.c.timestamp, EVENTS.c.data)
        .where(EVENTS.c.sender_id == conversation_id, EVENTS.c.type_name == "user")
        .order_by(EVENTS.c.id.desc()).limit(RECENT_EVENTS)
    )
    try:
        with get_engine(url).connect() as connection:
            rows = connection.execute(statement).all()
    except (OperationalError, ProgrammingError) as exc:
        logger.warning("Tracker store unreadable (%s): windows taken as closed", str(exc).splitlines()[0][:200])
        return []
    return [_event(row) for row in reversed(rows)]


def last_user_message(url: str, channel: str, conversation_id: str) -> float | None:
    """Unix time of the citizen's last message on `channel`, None if never."""
    tracker = SimpleNamespace(events=recent_user_events(url, conversation_id))
    if channel == "whatsapp":
        return whatsapp_delivery.last_user_message_time(tracker)
    return meta_window.last_user_message_time(tracker, channel)
