"""The editors' dashboard: questions per day and per channel, top topics, fallback and
handoff rates, ratings. Computed from the tracker store's events (bot.faq.conversations)
and the ratings table; days are local days of the commune's time zone."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from bot.db import utcnow
from bot.faq import ratings
from bot.faq.conversations import TrackerReader, Turn


@dataclass
class Dashboard:
    start: dt.date
    end: dt.date  # inclusive
    # [{"day": "2026-03-03", "total": 12, "channels": {"messenger": 7, "whatsapp": 5}}] every day
    per_day: list[dict[str, Any]]
    channels: dict[str, int]
    messages: int
    conversations: int
    top_topics: list[tuple[str, int]]
    fallback_rate: float | None
    handoff_rate: float | None  # conversations handed to a person / conversations
    fallbacks: int
    handoffs: int
    ratings: dict[str, ratings.TopicRatings] = field(default_factory=dict)

    @property
    def useful_rate(self) -> float | None:
        useful = sum(r.useful for r in self.ratings.values())
        total = sum(r.total for r in self.ratings.values())
        return round(useful / total, 3) if total else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(), "end": self.end.isoformat(), "per_day": self.per_day,
            "channels": self.channels, "messages": self.messages, "conversations": self.conversations,
            "top_topics": [{"topic": t, "count": c} for t, c in self.top_topics],
            "fallback_rate": self.fallback_rate, "handoff_rate": self.handoff_rate,
            "fallbacks": self.fallbacks, "handoffs": self.handoffs, "useful_rate": self.useful_rate,
            "ratings": {t: {"useful": r.useful, "not_useful": r.not_useful, "useful_rate": r.useful_rate}
                        for t, r in self.ratings.items()},
        }


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 3) if whole else None


def compute(turns: list[Turn], start: dt.date, end: dt.date, timezone: str = "Europe/Paris",
            top: int = 10) -> Dashboard:
    """The dashboard of `turns` (citizens' messages to the assistant, not to agents)."""
    zone = ZoneInfo(timezone)
    days = {start + dt.timedelta(days=i): Counter() for i in range((end - start).days + 1)}
    channels: Counter[str] = Counter()
    topics: Counter[str] = Counter()
    conversations: set[str] = set()
    handed: set[str] = set()
    bot_turns = fallbacks = 0
    for turn in turns:
        if turn.paused:
            continue  # the citizen is talking with an agent
        day = turn.when.astimezone(zone).date()
        if day not in days:
            continue
        channel = turn.channel or "inconnu"
        days[day][channel] += 1
        channels[channel] += 1
        conversations.add(turn.conversation_id)
        if turn.answered_topic:
            topics[turn.answered_topic] += 1
        if not turn.in_form:
            bot_turns += 1
            fallbacks += turn.fallback
        if turn.handoff:
            handed.add(turn.conversation_id)
    return Dashboard(
        start=start, end=end,
        per_day=[{"day": d.isoformat(), "total": sum(c.values()), "channels": dict(c)} for d, c in days.items()],
        channels=dict(channels.most_common()),
        messages=sum(channels.values()),
        conversations=len(conversations),
        top_topics=topics.most_common(top),
        fallback_rate=_rate(fallbacks, bot_turns),
        handoff_rate=_rate(len(handed), len(conversations)),
        fallbacks=fallbacks,
        handoffs=len(handed),
    )


def dashboard(url: str, days: int = 30, timezone: str = "Europe/Paris", now: dt.datetime | None = None) -> Dashboard:
    """The last `days` local days up to today, with the ratings of the same period."""
    zone = ZoneInfo(timezone)
    now = now or utcnow()
    end = now.replace(tzinfo=dt.timezone.utc).astimezone(zone).date()
    start = end - dt.timedelta(days=days - 1)
    since = dt.datetime.combine(start, dt.time(), zone).astimezone(dt.timezone.utc)
    turns = TrackerReader(url).turns(since=since)
    board = compute(turns, start, end, timezone)
    board.ratings = ratings.by_topic(url, since=since.replace(tzinfo=None))
    return board
