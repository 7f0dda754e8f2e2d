"""Alert topics per channel conversation: subscribe, unsubscribe, who gets a broadcast.

Subscribing by chat is the citizen's opt-in; only the channel, the conversation id and the
topics are kept, and unsubscribing from every topic deletes the subscriber.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from bot.db import session_scope, utcnow
from bot.db.migrate import upgrade
from bot.db.outreach_models import TOPICS, MessengerOptIn, Subscriber, Subscription, Vote
from bot.outreach.matching import mentions

# Words that name each topic in a citizen's message.
TOPIC_WORDS: dict[str, tuple[str, ...]] = {
    "crise": ("crise", "alerte meteo", "meteo", "tempete", "inondation", "canicule", "orage", "vigilance",
              "urgence", "coupure", "danger", "risque"),
    "travaux": ("travaux", "chantier", "route", "circulation", "voirie", "deviation", "rue barree", "stationnement"),
    "evenements": ("evenement", "evenements", "fete", "animation", "agenda", "concert", "sortie", "festival",
                   "manifestation", "culture", "actu", "actus", "actualite", "news"),
    "ecoles": ("ecole", "ecoles", "cantine", "scolaire", "periscolaire", "creche", "college", "enfants",
               "rentree", "classe"),
}
ALL = "tous"


@lru_cache(maxsize=8)
def migrated(url: str) -> bool:
    """Brings the schema up to date once per process and database."""
    upgrade(url)
    return True


def topics_in(text: str) -> list[str]:
    """The topics a message names ("je veux être prévenu des travaux" -> ["travaux"])."""
    return [topic for topic, words in TOPIC_WORDS.items() if mentions(text, words)]


def clean_topics(topics: Iterable[str]) -> list[str]:
    wanted = set(topics)
    if ALL in wanted:
        return list(TOPICS)
    return [t for t in TOPICS if t in wanted]


@dataclass(frozen=True)
class Recipient:
    channel: str
    conversation_id: str


class Subscriptions:
    def __init__(self, url: str) -> None:
        self.url = url
        migrated(url)

    def topics_of(self, channel: str, conversation_id: str) -> list[str]:
        with session_scope(self.url) as s:
            rows = s.execute(
                select(Subscription.topic).join(Subscriber)
                .where(Subscriber.channel == channel, Subscriber.conversation_id == conversation_id)
            ).scalars().all()
        return [t for t in TOPICS if t in set(rows)]

    def subscribe(self, channel: str, conversation_id: str, topics: Iterable[str]) -> list[str]:
        """Adds topics (idempotent); returns every topic the citizen now follows."""
        wanted = clean_topics(topics)
        for attempt in range(2):
            try:
                with session_scope(self.url) as s:
                    subscriber = s.execute(
                        select(Subscriber).where(Subscriber.channel == channel,
                                                 Subscriber.conversation_id == conversation_id)
                    ).scalar_one_or_none()
                    if subscriber is None:
                        subscriber = Subscriber(channel=channel, conversation_id=conversation_id)
                        s.add(subscriber)
                        s.flush()
                    have = {sub.topic for sub in subscriber.subscriptions}
                    for topic in wanted:
                        if topic not in have:
                            subscriber.subscriptions.append(Subscription(topic=topic))
                    subscriber.updated_at = utcnow()
                break
            except IntegrityError:
                if attempt:  # a concurrent subscription of the same citizen: read it again
                    raise
        return self.topics_of(channel, conversation_id)

    def unsubscribe(self, channel: str, conversation_id: str, topics: Iterable[str] | None = None) -> list[str]:
        """Removes topics (all when None); returns the remaining ones. No topic left: the
        subscriber is deleted."""
        with session_scope(self.url) as s:
            subscriber = s.execute(
                select(Subscriber).where(Subscriber.channel == channel, Subscriber.conversation_id == conversation_id)
            ).scalar_one_or_none()
            if subscriber is None:
                return []
            remove = set(TOPICS) if topics is None else set(clean_topics(topics))
            subscriber.subscriptions = [sub for sub in subscriber.subscriptions if sub.topic not in remove]
            if not subscriber.subscriptions:
                s.delete(subscriber)
                return []
            subscriber.updated_at = utcnow()
            return [t for t in TOPICS if t in {sub.topic for sub in subscriber.subscriptions}]

    def recipients(self, topics: Iterable[str]) -> list[Recipient]:
        """Every conversation following at least one of `topics`, once, oldest first."""
        wanted = clean_topics(topics)
        if not wanted:
            return []
        with session_scope(self.url) as s:
            rows = s.execute(
                select(Subscriber.channel, Subscriber.conversation_id, func.min(Subscriber.id))
                .join(Subscription).where(Subscription.topic.in_(wanted))
                .group_by(Subscriber.channel, Subscriber.conversation_id)
                .order_by(func.min(Subscriber.id))
            ).all()
        return [Recipient(channel, conversation) for channel, conversation, _ in rows]

    def counts(self) -> dict[str, int]:
        """Subscribers per topic (for the console)."""
        with session_scope(self.url) as s:
            rows = s.execute(select(Subscription.topic, func.count()).group_by(Subscription.topic)).all()
        found = dict(rows)
        return {topic: int(found.get(topic, 0)) for topic in TOPICS}

    def forget(self, conversation_id: str) -> int:
        """Deletes a citizen's subscriptions, Messenger opt-ins and votes (erasure request)."""
        from bot.outreach.polls import voter_id

        with session_scope(self.url) as s:
            subscribers = s.execute(
                select(Subscriber).where(Subscriber.conversation_id == conversation_id)
            ).scalars().all()
            channels = {sub.channel for sub in subscribers} | {"messenger", "whatsapp", "telegram", "instagram",
                                                               "webchat", "socketio", "api"}
            for subscriber in subscribers:
                s.delete(subscriber)
            s.execute(delete(MessengerOptIn).where(MessengerOptIn.psid == conversation_id))
            s.execute(delete(Vote).where(Vote.voter.in_([voter_id(c, conversation_id) for c in channels])))
            return len(subscribers)
