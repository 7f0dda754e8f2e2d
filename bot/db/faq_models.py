"""Tables of the FAQ editor (bot/faq): audit log, unanswered-question reviews, model
publications and citizens' ratings. The FAQ itself lives in `data/faq/*.yml`, not here.

Timestamps are naive UTC (`utcnow()`); who did something is kept by username (an account
may be deleted later, the log stays readable).
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, Float, Index, Integer, String, Text, UniqueConstraint

from bot.db.engine import utcnow
from bot.db.models import Base

# Publications: queued -> running -> published | refused | failed
PUBLICATION_STATUSES = ("queued", "running", "published", "refused", "failed")
# publish: a model trained from the FAQ · rollback: back to an earlier model ·
# baseline: the model that was live before the first publication, measured for comparison
PUBLICATION_KINDS = ("publish", "rollback", "baseline")
REVIEW_STATUSES = ("dismissed", "example", "new_topic")


class FaqChange(Base):
    """Audit log: one row per change to the FAQ, its publication or its review."""

    __tablename__ = "guichet_faq_changes"
    __table_args__ = (Index("ix_guichet_faq_changes_topic_at", "topic_id", "at"),)

    id = Column(Integer, primary_key=True)
    at = Column(DateTime, nullable=False, default=utcnow, index=True)
    actor = Column(String(64), nullable=False)
    # edit · add_topic · remove_topic · add_examples · import · dismiss · publish · rollback
    action = Column(String(32), nullable=False)
    topic_id = Column(String(64))
    summary = Column(Text, nullable=False, default="")
    # JSON of the changed parts before and after (None for creations / removals).
    before = Column(Text)
    after = Column(Text)


class UnansweredReview(Base):
    """An editor's decision on an unanswered question (normalised text), covering the
    occurrences up to `up_to_event_id`: a later occurrence shows again."""

    __tablename__ = "guichet_unanswered_reviews"
    __table_args__ = (Index("ix_guichet_unanswered_reviews_key", "text_key"),)

    id = Column(Integer, primary_key=True)
    text_key = Column(String(255), nullable=False)
    text = Column(Text, nullable=False, default="")
    up_to_event_id = Column(Integer, nullable=False)
    status = Column(String(16), nullable=False)
    topic_id = Column(String(64))
    actor = Column(String(64), nullable=False)
    at = Column(DateTime, nullable=False, default=utcnow)


class ModelPublication(Base):
    """A publication job and, once done, the history of live models with their scores."""

    __tablename__ = "guichet_model_publications"
    __table_args__ = (
        # At most one job queued or running: `running_slot` is 1 then, NULL afterwards.
        UniqueConstraint("running_slot", name="uq_guichet_model_publications_running"),
        Index("ix_guichet_model_publications_status", "status", "id"),
    )

    id = Column(Integer, primary_key=True)
    kind = Column(String(16), nullable=False, default="publish")
    status = Column(String(16), nullable=False, default="queued")
    running_slot = Column(Integer)
    actor = Column(String(64), nullable=False)
    created_at = Column(DateTime, nullable=False, default=utcnow)
    started_at = Column(DateTime)
    finished_at = Column(DateTime)
    heartbeat_at = Column(DateTime)
    # What the job runs on (JSON: config, domain, data and models paths, options).
    request = Column(Text, nullable=False, default="{}")
    phase = Column(String(32), nullable=False, default="queued")
    progress = Column(Float, nullable=False, default=0.0)
    message = Column(Text, nullable=False, default="")
    fingerprint = Column(String(32))
    model_file = Column(String(1024))
    # For a rollback: the publication whose model came back.
    rollback_of = Column(Integer)
    train_seconds = Column(Float)
    total_seconds = Column(Float)
    # JSON: {"public": {...}, "held_out": {...}} for the candidate and the live model.
    scores = Column(Text)
    baseline_scores = Column(Text)
    # Whether this publication's model is the one the Rasa server runs now.
    live = Column(Boolean, nullable=False, default=False)


class AnswerRating(Base):
    """A citizen's "utile / pas utile" on an answer: one per conversation and topic (the last)."""

    __tablename__ = "guichet_answer_ratings"
    __table_args__ = (
        UniqueConstraint("conversation_id", "topic_id", name="uq_guichet_answer_ratings_conversation_topic"),
        Index("ix_guichet_answer_ratings_topic", "topic_id"),
    )

    id = Column(Integer, primary_key=True)
    conversation_id = Column(String(255), nullable=False)
    channel = Column(String(64), nullable=False, default="")
    topic_id = Column(String(64), nullable=False)
    useful = Column(Boolean, nullable=False)
    comment = Column(Text)
    at = Column(DateTime, nullable=False, default=utcnow)
