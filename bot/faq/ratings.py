"""Citizens' ratings of answers ("utile" / "pas utile"), and their totals per topic.

One rating per conversation and topic: rating the same answer again replaces the first.
The citizen-side quick replies call `rate()` (from the action server).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import case, func, select

from bot.db import session_scope, utcnow
from bot.db.faq_models import AnswerRating

MAX_COMMENT_CHARS = 1000


@dataclass(frozen=True)
class TopicRatings:
    topic_id: str
    useful: int
    not_useful: int

    @property
    def total(self) -> int:
        return self.useful + self.not_useful

    @property
    def useful_rate(self) -> float | None:
        return round(self.useful / self.total, 3) if self.total else None


def rate(url: str, conversation_id: str, topic_id: str, useful: bool, channel: str = "",
         comment: str | None = None) -> None:
    conversation_id, topic_id = str(conversation_id)[:255], str(topic_id)[:64]
    comment = (comment or "").strip()[:MAX_COMMENT_CHARS] or None
    with session_scope(url) as session:
        row = session.execute(
            select(AnswerRating).where(AnswerRating.conversation_id == conversation_id,
                                       AnswerRating.topic_id == topic_id)
        ).scalar_one_or_none()
        if row is None:
            session.add(AnswerRating(conversation_id=conversation_id, topic_id=topic_id, useful=useful,
                                     channel=str(channel)[:64], comment=comment))
        else:
            row.useful, row.at = useful, utcnow()
            row.comment = comment or row.comment


def by_topic(url: str, since: dt.datetime | None = None) -> dict[str, TopicRatings]:
    """Ratings per topic (all time, or since a date), most rated first."""
    statement = select(
        AnswerRating.topic_id,
        func.sum(case((AnswerRating.useful.is_(True), 1), else_=0)),
        func.sum(case((AnswerRating.useful.is_(False), 1), else_=0)),
    ).group_by(AnswerRating.topic_id)
    if since is not None:
        statement = statement.where(AnswerRating.at >= since)
    with session_scope(url) as session:
        rows = [TopicRatings(t, int(u or 0), int(n or 0)) for t, u, n in session.execute(statement)]
    return {r.topic_id: r for r in sorted(rows, key=lambda r: -r.total)}


def comments(url: str, topic_id: str, limit: int = 50) -> list[AnswerRating]:
    statement = (
        select(AnswerRating).where(AnswerRating.topic_id == topic_id, AnswerRating.comment.is_not(None))
        .order_by(AnswerRating.at.desc()).limit(limit)
    )
    with session_scope(url) as session:
        return list(session.execute(statement).scalars())
