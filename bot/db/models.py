"""Tables of the handoff and the agent console (all prefixed `guichet_`).

Timestamps are naive UTC (`utcnow()`). Statuses are plain strings checked by the code
(`bot.handoff`), listed here as constants.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import declarative_base, relationship

from bot.db.engine import utcnow

Base = declarative_base()

ROLES = ("agent", "editor", "admin")
PRESENCES = ("online", "away", "offline")
# queued: waiting for an agent · claimed: an agent has it · closed: finished with an outcome
# returned: handed back to the bot (by the agent, or the citizen wrote "annuler")
# expired: nobody claimed it in time (the citizen got the callback offer)
ESCALATION_STATUSES = ("queued", "claimed", "closed", "returned", "expired")
ACTIVE_STATUSES = ("queued", "claimed")


class Agent(Base):
    __tablename__ = "guichet_agents"

    id = Column(Integer, primary_key=True)
    username = Column(String(64), nullable=False, unique=True)
    display_name = Column(String(120), nullable=False)
    password_hash = Column(String(255), nullable=False)
    role = Column(String(16), nullable=False, default="agent")
    presence = Column(String(16), nullable=False, default="offline")
    last_seen_at = Column(DateTime)
    active = Column(Boolean, nullable=False, default=True)
    created_at = Column(DateTime, nullable=False, default=utcnow)


class AgentSession(Base):
    """A console login: the cookie holds a random token, the table its SHA-256."""

    __tablename__ = "guichet_agent_sessions"

    id = Column(Integer, primary_key=True)
    token_hash = Column(String(64), nullable=False, unique=True)
    agent_id = Column(Integer, ForeignKey("guichet_agents.id", ondelete="CASCADE"), nullable=False)
    csrf_token = Column(String(64), nullable=False)
    created_at = Column(DateTime, nullable=False, default=utcnow)
    expires_at = Column(DateTime, nullable=False)

    agent = relationship(Agent, lazy="joined")


class LoginAttempt(Base):
    __tablename__ = "guichet_login_attempts"
    __table_args__ = (
        Index("ix_guichet_login_attempts_ip_at", "ip", "at"),
        Index("ix_guichet_login_attempts_username_at", "username", "at"),
    )

    id = Column(Integer, primary_key=True)
    username = Column(String(64), nullable=False)
    ip = Column(String(64), nullable=False)
    success = Column(Boolean, nullable=False)
    at = Column(DateTime, nullable=False, default=utcnow)


class Escalation(Base):
    """A conversation handed to a person. At most one active (queued/claimed) per conversation."""

    __tablename__ = "guichet_escalations"
    __table_args__ = (
        Index(
            "uq_guichet_escalations_active_conversation",
            "conversation_id",
            unique=True,
            sqlite_where=text("status IN ('queued', 'claimed')"),
            postgresql_where=text("status IN ('queued', 'claimed')"),
        ),
        Index("ix_guichet_escalations_status_created", "status", "created_at"),
    )

    id = Column(Integer, primary_key=True)
    conversation_id = Column(String(255), nullable=False, index=True)
    channel = Column(String(64), nullable=False)
    # request · misunderstanding · topic (an always-human FAQ topic, in reason_detail)
    reason = Column(String(32), nullable=False)
    reason_detail = Column(Text, nullable=False, default="")
    status = Column(String(16), nullable=False, default="queued")
    created_at = Column(DateTime, nullable=False, default=utcnow)
    updated_at = Column(DateTime, nullable=False, default=utcnow)
    claimed_by = Column(Integer, ForeignKey("guichet_agents.id"))
    claimed_at = Column(DateTime)
    ended_at = Column(DateTime)
    # When the bot was given the conversation back (resume sent to Rasa); None = to do.
    resumed_at = Column(DateTime)
    outcome = Column(String(32))
    outcome_comment = Column(Text)

    agent = relationship(Agent, lazy="joined")


class Ticket(Base):
    """A request kept for later, with a reference the citizen can quote (`RAP-7K2P`)."""

    __tablename__ = "guichet_tickets"

    id = Column(Integer, primary_key=True)
    reference = Column(String(16), nullable=False, unique=True)
    conversation_id = Column(String(255), nullable=False, index=True)
    channel = Column(String(64), nullable=False)
    reason = Column(String(32), nullable=False)
    summary = Column(Text, nullable=False, default="")
    escalation_id = Column(Integer, ForeignKey("guichet_escalations.id"))
    status = Column(String(16), nullable=False, default="open")  # open · closed
    created_at = Column(DateTime, nullable=False, default=utcnow)
    closed_at = Column(DateTime)
    closed_by = Column(Integer, ForeignKey("guichet_agents.id"))


class CallbackRequest(Base):
    """The citizen's phone or e-mail to be called back, kept only with explicit consent."""

    __tablename__ = "guichet_callback_requests"

    id = Column(Integer, primary_key=True)
    ticket_id = Column(Integer, ForeignKey("guichet_tickets.id"), nullable=False, index=True)
    contact_kind = Column(String(8), nullable=False)  # phone · email
    contact = Column(String(255), nullable=False)
    consent = Column(Boolean, nullable=False)
    consent_at = Column(DateTime, nullable=False, default=utcnow)
    created_at = Column(DateTime, nullable=False, default=utcnow)
    done_at = Column(DateTime)
    done_by = Column(Integer, ForeignKey("guichet_agents.id"))

    ticket = relationship(Ticket, lazy="joined")


class Note(Base):
    """An internal note on an escalation: seen by agents only, never sent."""

    __tablename__ = "guichet_notes"

    id = Column(Integer, primary_key=True)
    escalation_id = Column(Integer, ForeignKey("guichet_escalations.id"), nullable=False, index=True)
    agent_id = Column(Integer, ForeignKey("guichet_agents.id"), nullable=False)
    text = Column(Text, nullable=False)
    created_at = Column(DateTime, nullable=False, default=utcnow)

    agent = relationship(Agent, lazy="joined")


class Transfer(Base):
    __tablename__ = "guichet_transfers"

    id = Column(Integer, primary_key=True)
    escalation_id = Column(Integer, ForeignKey("guichet_escalations.id"), nullable=False, index=True)
    from_agent_id = Column(Integer, ForeignKey("guichet_agents.id"))
    # None: back to the queue
    to_agent_id = Column(Integer, ForeignKey("guichet_agents.id"))
    at = Column(DateTime, nullable=False, default=utcnow)


class AgentMessage(Base):
    """Audit of what agents sent: written before sending, then marked sent or failed."""

    __tablename__ = "guichet_agent_messages"

    id = Column(Integer, primary_key=True)
    escalation_id = Column(Integer, ForeignKey("guichet_escalations.id"), nullable=False, index=True)
    conversation_id = Column(String(255), nullable=False)
    agent_id = Column(Integer, ForeignKey("guichet_agents.id"), nullable=False)
    text = Column(Text, nullable=False)
    status = Column(String(16), nullable=False, default="pending")  # pending · sent · failed
    error = Column(Text)
    created_at = Column(DateTime, nullable=False, default=utcnow)
    sent_at = Column(DateTime)


class WatchState(Base):
    """Small persistent counters, e.g. the last tracker event the console has processed."""

    __tablename__ = "guichet_watch_state"
    __table_args__ = (UniqueConstraint("key", name="uq_guichet_watch_state_key"),)

    id = Column(Integer, primary_key=True)
    key = Column(String(64), nullable=False)
    value = Column(Integer, nullable=False, default=0)
