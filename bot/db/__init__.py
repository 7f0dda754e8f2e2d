"""The project's database: models, engine and sessions, migrations (Alembic).

The same database holds Rasa's tracker store (table `events`); every table of ours is
prefixed `guichet_` so that nothing clashes with Rasa's. This package imports no other
project module: callers pass the database URL (see `bot.settings.Settings.database_url`).

    python -m bot.db upgrade        # apply the migrations (done by `make run` at start)
"""

from bot.db import (
    faq_models,  # noqa: F401 - FAQ editor: audit, reviews, publications, ratings
    outreach_models,  # noqa: F401 - alerts, crisis, rumours, polls (Base's metadata)
    tickets,  # noqa: F401 - reports, complaints, their notifications, erasure requests
)
from bot.db.engine import get_engine, session_scope, sessionmaker_for, utcnow
from bot.db.models import (
    Agent,
    AgentMessage,
    AgentSession,
    Base,
    CallbackRequest,
    Escalation,
    LoginAttempt,
    Note,
    Ticket,
    Transfer,
    WatchState,
)

__all__ = [
    "Agent", "AgentMessage", "AgentSession", "Base", "CallbackRequest", "Escalation",
    "LoginAttempt", "Note", "Ticket", "Transfer", "WatchState",
    "get_engine", "session_scope", "sessionmaker_for", "utcnow",
]
