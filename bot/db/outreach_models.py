"""Tables of alerts and news, crisis mode, rumours and consultations (all `guichet_`).

- Subscribers and their topics (crise, travaux, evenements, ecoles), one row per channel
  conversation; Messenger notification tokens and delivery receipts seen by the channels.
- Broadcasts and their deliveries: one row per recipient per broadcast (unique), which
  the worker (bot/broadcast) moves from `pending` to `sent`, `failed` or `skipped`.
- The crisis message, rumours ("vrai / faux"), polls with their choices and votes.

Timestamps are naive UTC (`utcnow()`); statuses are plain strings listed here.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import relationship

from bot.db.engine import utcnow
from bot.db.models import Base

TOPICS = ("crise", "travaux", "evenements", "ecoles")
BROADCAST_STATUSES = ("draft", "queued", "done", "cancelled")
# pending: to send (maybe after `next_attempt_at`) · sending: claimed by a worker, the call
# may be under way · sent · failed (with a reason) · skipped (not allowed, with a reason)
DELIVERY_STATUSES = ("pending", "sending", "sent", "failed", "skipped")
RUMOUR_STATUSES = ("draft", "published", "archived")
VERDICTS = ("vrai", "faux", "trompeur")
POLL_STATUSES = ("draft", "open", "closed")


class Subscriber(Base):
    """A citizen who asked for alerts on one channel (the opt-in is the chat request)."""

    __tablename__ = "guichet_subscribers"
    __table_args__ = (UniqueConstraint("channel", "conversation_id", name="uq_guichet_subscribers_channel_conversation"),)

    id = Column(Integer, primary_key=True)
    channel = Column(String(64), nullable=False)
    # Rasa's sender id on that channel (PSID, wa_id, Telegram chat id…).
    conversation_id = Column(String(255), nullable=False)
    created_at = Column(DateTime, nullable=False, default=utcnow)
    updated_at = Column(DateTime, nullable=False, default=utcnow)

    subscriptions = relationship("Subscription", lazy="selectin", cascade="all, delete-orphan",
                                 back_populates="subscriber")

    @property
    def topics(self) -> list[str]:
        return sorted(s.topic for s in self.subscriptions)


class Subscription(Base):
    __tablename__ = "guichet_subscriptions"
    __table_args__ = (UniqueConstraint("subscriber_id", "topic", name="uq_guichet_subscriptions_subscriber_topic"),)

    id = Column(Integer, primary_key=True)
    subscriber_id = Column(Integer, ForeignKey("guichet_subscribers.id", ondelete="CASCADE"), nullable=False, index=True)
    topic = Column(String(32), nullable=False, index=True)
    created_at = Column(DateTime, nullable=False, default=utcnow)

    subscriber = relationship(Subscriber, back_populates="subscriptions")


class MessengerOptIn(Base):
    """A Messenger "notification messages" opt-in: the token that allows messages outside
    the 24-hour window (webhook `messaging_optins`, `optin.type: notification_messages`)."""

    __tablename__ = "guichet_messenger_optins"
    __table_args__ = (UniqueConstraint("page_id", "psid", "payload", name="uq_guichet_messenger_optins_page_psid_payload"),)

    id = Column(Integer, primary_key=True)
    page_id = Column(String(64), nullable=False)
    psid = Column(String(128), nullable=False, index=True)
    payload = Column(String(255), nullable=False, default="")
    # requested: the opt-in request was sent · active: token usable · stopped: the citizen
    # stopped notifications (Meta refuses sends until they resume)
    status = Column(String(16), nullable=False, default="requested")
    token = Column(String(512))
    title = Column(String(128), nullable=False, default="")
    requested_at = Column(DateTime)
    opted_in_at = Column(DateTime)
    expires_at = Column(DateTime)
    updated_at = Column(DateTime, nullable=False, default=utcnow)


class DeliveryReceipt(Base):
    """Proof from the platform that a message of ours went out: a Messenger echo carrying
    our `metadata`, a WhatsApp status carrying our `biz_opaque_callback_data`."""

    __tablename__ = "guichet_delivery_receipts"

    id = Column(Integer, primary_key=True)
    key = Column(String(128), nullable=False, index=True)
    channel = Column(String(32), nullable=False)
    event = Column(String(32), nullable=False)  # echo · sent · delivered · read · failed
    external_id = Column(String(255))
    error_code = Column(Integer)
    detail = Column(Text)
    at = Column(DateTime, nullable=False, default=utcnow)


class Broadcast(Base):
    """News or an alert written by staff for the subscribers of some topics."""

    __tablename__ = "guichet_broadcasts"

    id = Column(Integer, primary_key=True)
    title = Column(String(120), nullable=False)
    body = Column(Text, nullable=False)
    link = Column(String(500), nullable=False, default="")
    topics = Column(String(200), nullable=False)  # comma-separated TOPICS
    poll_id = Column(Integer, ForeignKey("guichet_polls.id"))
    status = Column(String(16), nullable=False, default="draft")
    created_by = Column(Integer, ForeignKey("guichet_agents.id"))
    created_at = Column(DateTime, nullable=False, default=utcnow)
    queued_at = Column(DateTime)
    queued_by = Column(Integer, ForeignKey("guichet_agents.id"))
    finished_at = Column(DateTime)

    @property
    def topic_list(self) -> list[str]:
        return [t for t in self.topics.split(",") if t]


class Delivery(Base):
    """One recipient of one broadcast: never two rows for the same pair."""

    __tablename__ = "guichet_deliveries"
    __table_args__ = (
        UniqueConstraint("broadcast_id", "channel", "recipient", name="uq_guichet_deliveries_broadcast_recipient"),
        Index("ix_guichet_deliveries_status_next", "status", "next_attempt_at"),
        Index("ix_guichet_deliveries_broadcast_status", "broadcast_id", "status"),
    )

    id = Column(Integer, primary_key=True)
    broadcast_id = Column(Integer, ForeignKey("guichet_broadcasts.id", ondelete="CASCADE"), nullable=False)
    channel = Column(String(64), nullable=False)
    recipient = Column(String(255), nullable=False)
    status = Column(String(16), nullable=False, default="pending")
    reason = Column(String(64))
    detail = Column(Text)
    # standard (inside the window) · notification_token (Messenger opt-in) · template (WhatsApp)
    route = Column(String(32))
    attempts = Column(Integer, nullable=False, default=0)
    next_attempt_at = Column(DateTime, nullable=False, default=utcnow)
    claimed_at = Column(DateTime)
    claimed_by = Column(String(64))
    sent_at = Column(DateTime)
    external_id = Column(String(255))
    updated_at = Column(DateTime, nullable=False, default=utcnow)


class CrisisMessage(Base):
    """An official crisis message (water cut, storm, road closed), active until `ends_at`."""

    __tablename__ = "guichet_crisis_messages"

    id = Column(Integer, primary_key=True)
    title = Column(String(120), nullable=False)
    message = Column(Text, nullable=False)
    link = Column(String(500), nullable=False)
    # Words citizens would use about it (besides those of the title and message).
    keywords = Column(String(500), nullable=False, default="")
    starts_at = Column(DateTime, nullable=False, default=utcnow)
    ends_at = Column(DateTime, nullable=False)
    ended_at = Column(DateTime)  # ended early by an admin
    created_by = Column(Integer, ForeignKey("guichet_agents.id"))
    created_at = Column(DateTime, nullable=False, default=utcnow)


class Rumour(Base):
    """A statement going around, and the commune's official answer."""

    __tablename__ = "guichet_rumours"

    id = Column(Integer, primary_key=True)
    statement = Column(Text, nullable=False)
    verdict = Column(String(16), nullable=False)
    answer = Column(Text, nullable=False)
    source = Column(String(500), nullable=False)
    source_date = Column(Date, nullable=False)
    status = Column(String(16), nullable=False, default="draft")
    created_by = Column(Integer, ForeignKey("guichet_agents.id"))
    created_at = Column(DateTime, nullable=False, default=utcnow)
    updated_at = Column(DateTime, nullable=False, default=utcnow)


class Poll(Base):
    """A short consultation: a question, 2 to 5 choices, an end date."""

    __tablename__ = "guichet_polls"

    id = Column(Integer, primary_key=True)
    question = Column(String(300), nullable=False)
    status = Column(String(16), nullable=False, default="draft")
    ends_at = Column(DateTime, nullable=False)
    # Offered at the end of conversations (after "au revoir") while open.
    offer_at_end = Column(Boolean, nullable=False, default=True)
    created_by = Column(Integer, ForeignKey("guichet_agents.id"))
    created_at = Column(DateTime, nullable=False, default=utcnow)
    opened_at = Column(DateTime)
    closed_at = Column(DateTime)

    choices = relationship("PollChoice", lazy="selectin", order_by="PollChoice.position",
                           cascade="all, delete-orphan")


class PollChoice(Base):
    __tablename__ = "guichet_poll_choices"
    __table_args__ = (UniqueConstraint("poll_id", "position", name="uq_guichet_poll_choices_position"),)

    id = Column(Integer, primary_key=True)
    poll_id = Column(Integer, ForeignKey("guichet_polls.id", ondelete="CASCADE"), nullable=False, index=True)
    position = Column(Integer, nullable=False)
    label = Column(String(60), nullable=False)


class Vote(Base):
    """One vote per citizen and poll; the voter is a pseudonym (hash of channel and id)."""

    __tablename__ = "guichet_votes"
    __table_args__ = (UniqueConstraint("poll_id", "voter", name="uq_guichet_votes_poll_voter"),)

    id = Column(Integer, primary_key=True)
    poll_id = Column(Integer, ForeignKey("guichet_polls.id", ondelete="CASCADE"), nullable=False)
    choice_id = Column(Integer, ForeignKey("guichet_poll_choices.id", ondelete="CASCADE"), nullable=False, index=True)
    voter = Column(String(64), nullable=False)
    channel = Column(String(64), nullable=False)
    created_at = Column(DateTime, nullable=False, default=utcnow)
