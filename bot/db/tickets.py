"""Citizens' reports (signalements) and complaints (réclamations), their history, the
notifications sent about them, and erasure requests (RGPD). All tables prefixed `guichet_`.

A request keeps personal data (contact, conversation id, photo references) only until it
is anonymised: on the citizen's erasure request or at the end of the retention period.
The request itself (category, place, description, status) is kept for the commune's
records. Timestamps are naive UTC (`utcnow()`); statuses are plain strings listed here.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Float, ForeignKey, Index, Integer, String, Text

from bot.db.engine import utcnow
from bot.db.models import Base

KINDS = ("report", "complaint")
# new: received · in_progress: being handled · resolved: done · rejected: not for the
# commune or not founded (the citizen is told why in the status message)
REQUEST_STATUSES = ("new", "in_progress", "resolved", "rejected")
# pending: to send · sent: the channel accepted it · not_delivered: the channel refused it
# (reason: window_closed, no_user_message…) · failed: Rasa unreachable, retried
NOTIFICATION_STATUSES = ("pending", "sent", "not_delivered", "failed")
ERASURE_STATUSES = ("pending", "done")


class CitizenRequest(Base):
    """A report or a complaint, with the short reference the citizen quotes (`SIG-7K2P`)."""

    __tablename__ = "guichet_requests"
    __table_args__ = (
        Index("ix_guichet_requests_status_created", "status", "created_at"),
        Index("ix_guichet_requests_kind_created", "kind", "created_at"),
    )

    id = Column(Integer, primary_key=True)
    reference = Column(String(16), nullable=False, unique=True)
    kind = Column(String(16), nullable=False)
    # Report category (voirie, eclairage…) or complaint subject (accueil, urbanisme…).
    category = Column(String(32), nullable=False)
    place = Column(String(500), nullable=False, default="")
    latitude = Column(Float)
    longitude = Column(Float)
    description = Column(Text, nullable=False, default="")
    # JSON list of the photos' references: {"type": "image", "url": …} (Messenger) or
    # {"type": "image", "media_id": …} (WhatsApp). Emptied when anonymised.
    photos = Column(Text, nullable=False, default="[]")
    contact_kind = Column(String(8))  # phone · email · None
    contact = Column(String(255))
    consent_at = Column(DateTime)
    conversation_id = Column(String(255), index=True)  # None once anonymised
    channel = Column(String(64), nullable=False)
    status = Column(String(16), nullable=False, default="new")
    assigned_to = Column(Integer, ForeignKey("guichet_agents.id"))
    due_at = Column(DateTime)  # the response deadline promised to the citizen
    created_at = Column(DateTime, nullable=False, default=utcnow)
    updated_at = Column(DateTime, nullable=False, default=utcnow)
    anonymised_at = Column(DateTime)


class RequestEvent(Base):
    """The history of a request: created, assigned, status changed (with the message)."""

    __tablename__ = "guichet_request_events"

    id = Column(Integer, primary_key=True)
    request_id = Column(Integer, ForeignKey("guichet_requests.id", ondelete="CASCADE"), nullable=False, index=True)
    at = Column(DateTime, nullable=False, default=utcnow)
    agent_id = Column(Integer, ForeignKey("guichet_agents.id"))
    kind = Column(String(16), nullable=False)  # created · assigned · status · anonymised
    old_value = Column(String(64))
    new_value = Column(String(64))
    comment = Column(Text)


class RequestNotification(Base):
    """A message to the citizen about their request, and what became of it."""

    __tablename__ = "guichet_request_notifications"
    __table_args__ = (Index("ix_guichet_request_notifications_status", "status", "next_try_at"),)

    id = Column(Integer, primary_key=True)
    request_id = Column(Integer, ForeignKey("guichet_requests.id", ondelete="CASCADE"), nullable=False, index=True)
    event_id = Column(Integer, ForeignKey("guichet_request_events.id", ondelete="SET NULL"))
    conversation_id = Column(String(255))  # None once anonymised
    channel = Column(String(64), nullable=False)
    text = Column(Text, nullable=False)
    status = Column(String(16), nullable=False, default="pending")
    # Why it was not delivered: window_closed, human_agent_window_closed, no_user_message,
    # token_invalid, graph_error, undeliverable, channel_cannot_push, rasa_unreachable…
    reason = Column(String(64))
    detail = Column(Text)
    attempts = Column(Integer, nullable=False, default=0)
    next_try_at = Column(DateTime)
    created_at = Column(DateTime, nullable=False, default=utcnow)
    sent_at = Column(DateTime)


class ErasureRequest(Base):
    """A citizen's "supprimer mes données": the project's data is anonymised at once; the
    conversation's tracker events are deleted once Rasa has stored the last turn (`due_at`).
    Once done, `conversation_key` holds a SHA-256 of the conversation id, not the id."""

    __tablename__ = "guichet_erasure_requests"
    __table_args__ = (Index("ix_guichet_erasure_requests_status_due", "status", "due_at"),)

    id = Column(Integer, primary_key=True)
    conversation_key = Column(String(255), nullable=False)
    channel = Column(String(64), nullable=False, default="")
    origin = Column(String(16), nullable=False, default="citizen")  # citizen · staff
    status = Column(String(16), nullable=False, default="pending")
    requested_at = Column(DateTime, nullable=False, default=utcnow)
    due_at = Column(DateTime, nullable=False)
    done_at = Column(DateTime)
    events_deleted = Column(Integer, nullable=False, default=0)


class DataExportLink(Base):
    """A citizen's download link for their data ("mes données"): only a SHA-256 of the
    random token is stored; the link works until `expires_at` (bot/privacy/export_links.py)."""

    __tablename__ = "guichet_data_export_links"

    id = Column(Integer, primary_key=True)
    token_hash = Column(String(64), nullable=False, unique=True)
    conversation_id = Column(String(255), nullable=False, index=True)
    created_at = Column(DateTime, nullable=False, default=utcnow)
    expires_at = Column(DateTime, nullable=False)
    downloads = Column(Integer, nullable=False, default=0)
