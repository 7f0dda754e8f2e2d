"""The crisis message: set by an admin with an end date; while active the bot mentions it
at greeting and answers questions about it first, with the official link."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import or_, select, update

from bot.db import session_scope, utcnow
from bot.db.outreach_models import CrisisMessage
from bot.outreach.matching import best_match, mentions, normalise
from bot.outreach.subscriptions import migrated

MAX_TITLE = 120
MAX_MESSAGE = 1000
MAX_KEYWORDS = 500
# A question this similar to the crisis title and message is about it (keywords aside).
MIN_SIMILARITY = 0.3


class CrisisError(ValueError):
    """Invalid crisis message (the text is French, for the console)."""


@dataclass(frozen=True)
class Crisis:
    id: int
    title: str
    message: str
    link: str
    keywords: tuple[str, ...]
    starts_at: dt.datetime
    ends_at: dt.datetime
    ended_at: dt.datetime | None

    def active(self, now: dt.datetime) -> bool:
        return self.ended_at is None and self.starts_at <= now < self.ends_at

    def concerns(self, question: str) -> bool:
        """Whether a citizen's question is about this crisis."""
        if mentions(question, self.keywords):
            return True
        return best_match(question, [f"{self.title}. {self.message}"], MIN_SIMILARITY) is not None


def _crisis(row: CrisisMessage) -> Crisis:
    keywords = tuple(k.strip() for k in row.keywords.replace(";", ",").split(",") if k.strip())
    title_words = tuple(w for w in normalise(row.title).split() if len(w) >= 5)
    return Crisis(row.id, row.title, row.message, row.link, keywords + title_words, row.starts_at, row.ends_at,
                  row.ended_at)


def valid_link(link: str) -> bool:
    return link.startswith(("https://", "http://")) and len(link) <= 500 and " " not in link


class CrisisService:
    def __init__(self, url: str) -> None:
        self.url = url
        migrated(url)

    def active(self, now: dt.datetime | None = None) -> Crisis | None:
        """The crisis in force now (the latest one if several overlap)."""
        now = now or utcnow()
        with session_scope(self.url) as s:
            row = s.execute(
                select(CrisisMessage)
                .where(CrisisMessage.ended_at.is_(None), CrisisMessage.starts_at <= now, CrisisMessage.ends_at > now)
                .order_by(CrisisMessage.starts_at.desc(), CrisisMessage.id.desc()).limit(1)
            ).scalar_one_or_none()
            return _crisis(row) if row else None

    def recent(self, limit: int = 20) -> list[Crisis]:
        with session_scope(self.url) as s:
            rows = s.execute(select(CrisisMessage).order_by(CrisisMessage.id.desc()).limit(limit)).scalars().all()
            return [_crisis(r) for r in rows]

    def create(self, title: str, message: str, link: str, ends_at: dt.datetime, keywords: str = "",
               created_by: int | None = None, now: dt.datetime | None = None) -> Crisis:
        """Publishes a crisis message now, until `ends_at` (naive UTC)."""
        now = now or utcnow()
        title, message, link, keywords = title.strip(), message.strip(), link.strip(), keywords.strip()
        if not title or len(title) > MAX_TITLE:
            raise CrisisError(f"Le titre est obligatoire ({MAX_TITLE} caractères au plus).")
        if not message or len(message) > MAX_MESSAGE:
            raise CrisisError(f"Le message est obligatoire ({MAX_MESSAGE} caractères au plus).")
        if not valid_link(link):
            raise CrisisError("Le lien officiel doit être une adresse web complète (https://…).")
        if len(keywords) > MAX_KEYWORDS:
            raise CrisisError(f"Les mots-clés dépassent {MAX_KEYWORDS} caractères.")
        if ends_at <= now:
            raise CrisisError("La date de fin doit être dans le futur.")
        with session_scope(self.url) as s:
            row = CrisisMessage(title=title, message=message, link=link, keywords=keywords, starts_at=now,
                                ends_at=ends_at, created_by=created_by)
            s.add(row)
            s.flush()
            return _crisis(row)

    def end(self, crisis_id: int, now: dt.datetime | None = None) -> bool:
        """Ends a crisis early; False if it was not in force."""
        now = now or utcnow()
        with session_scope(self.url) as s:
            return bool(s.execute(
                update(CrisisMessage)
                .where(CrisisMessage.id == crisis_id, CrisisMessage.ended_at.is_(None),
                       or_(CrisisMessage.ends_at > now))
                .values(ended_at=now).execution_options(synchronize_session=False)
            ).rowcount)
