"""Broadcast drafts, queueing and delivery reports (synchronous; callers use threads).

Queueing writes one `pending` delivery per recipient in one transaction; the unique
(broadcast, channel, recipient) constraint and the conditional `draft -> queued` update
make a double click, two consoles or a retried request queue a broadcast only once.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import func, insert, select, update

from bot.db import session_scope, utcnow
from bot.db.outreach_models import TOPICS, Broadcast, Delivery
from bot.outreach.subscriptions import Subscriptions, clean_topics, migrated

MAX_TITLE = 120
MAX_BODY = 640
MAX_LINK = 500


class BroadcastError(ValueError):
    """Invalid broadcast or state change (the text is French, for the console)."""


@dataclass(frozen=True)
class BroadcastInfo:
    id: int
    title: str
    body: str
    link: str
    topics: tuple[str, ...]
    poll_id: int | None
    status: str
    created_at: dt.datetime
    queued_at: dt.datetime | None
    finished_at: dt.datetime | None


@dataclass
class Report:
    """Where the deliveries of a broadcast stand, and why some were not sent."""

    broadcast: BroadcastInfo
    total: int = 0
    by_status: Counter = field(default_factory=Counter)
    reasons: dict[str, Counter] = field(default_factory=dict)  # status -> reason -> count
    by_channel: dict[str, Counter] = field(default_factory=dict)  # channel -> status -> count
    routes: Counter = field(default_factory=Counter)  # how the sent ones went out

    @property
    def done(self) -> bool:
        return self.total > 0 and self.by_status["pending"] + self.by_status["sending"] == 0

    def count(self, status: str) -> int:
        return int(self.by_status.get(status, 0))

    def as_dict(self) -> dict:
        return {
            "broadcast_id": self.broadcast.id, "status": self.broadcast.status, "total": self.total,
            "sent": self.count("sent"), "failed": self.count("failed"), "skipped": self.count("skipped"),
            "pending": self.count("pending"), "sending": self.count("sending"),
            "reasons": {status: dict(reasons) for status, reasons in self.reasons.items()},
            "by_channel": {channel: dict(counts) for channel, counts in self.by_channel.items()},
            "routes": dict(self.routes),
        }


def _info(row: Broadcast) -> BroadcastInfo:
    return BroadcastInfo(row.id, row.title, row.body, row.link, tuple(row.topic_list), row.poll_id, row.status,
                         row.created_at, row.queued_at, row.finished_at)


def check_link(link: str) -> str:
    link = link.strip()
    if link and (not link.startswith(("https://", "http://")) or " " in link or len(link) > MAX_LINK):
        raise BroadcastError("Le lien doit être une adresse web complète (https://…).")
    return link


class Broadcasts:
    def __init__(self, url: str) -> None:
        self.url = url
        migrated(url)

    def create(self, title: str, body: str, topics: list[str], link: str = "", poll_id: int | None = None,
               author: int | None = None) -> BroadcastInfo:
        title, body = " ".join(title.split()), body.strip().replace("\r\n", "\n")
        wanted = clean_topics(topics)
        if not title or len(title) > MAX_TITLE:
            raise BroadcastError(f"Le titre est obligatoire ({MAX_TITLE} caractères au plus).")
        if not body or len(body) > MAX_BODY:
            raise BroadcastError(f"Le message est obligatoire ({MAX_BODY} caractères au plus).")
        if not wanted:
            raise BroadcastError("Choisissez au moins un sujet : " + ", ".join(TOPICS) + ".")
        with session_scope(self.url) as s:
            row = Broadcast(title=title, body=body, link=check_link(link), topics=",".join(wanted), poll_id=poll_id,
                            created_by=author)
            s.add(row)
            s.flush()
            return _info(row)

    def get(self, broadcast_id: int) -> BroadcastInfo | None:
        with session_scope(self.url) as s:
            row = s.get(Broadcast, broadcast_id)
            return _info(row) if row else None

    def recent(self, limit: int = 50) -> list[BroadcastInfo]:
        with session_scope(self.url) as s:
            rows = s.execute(select(Broadcast).order_by(Broadcast.id.desc()).limit(limit)).scalars().all()
            return [_info(r) for r in rows]

    def audience(self, topics: list[str] | tuple[str, ...]) -> Counter:
        """Recipients per channel for these topics (the preview's numbers)."""
        return Counter(r.channel for r in Subscriptions(self.url).recipients(list(topics)))

    def queue(self, broadcast_id: int, by: int | None = None) -> int:
        """Writes the deliveries of a draft and hands it to the worker; returns how many."""
        recipients = Subscriptions(self.url).recipients(self._topics(broadcast_id))
        now = utcnow()
        with session_scope(self.url) as s:
            changed = s.execute(
                update(Broadcast).where(Broadcast.id == broadcast_id, Broadcast.status == "draft")
                .values(status="queued", queued_at=now, queued_by=by).execution_options(synchronize_session=False)
            ).rowcount
            if not changed:
                raise BroadcastError("Ce message a déjà été envoyé (ou annulé).")
            if recipients:
                s.execute(insert(Delivery), [
                    {"broadcast_id": broadcast_id, "channel": r.channel, "recipient": r.conversation_id,
                     "status": "pending", "attempts": 0, "next_attempt_at": now, "updated_at": now}
                    for r in recipients
                ])
            else:
                s.execute(update(Broadcast).where(Broadcast.id == broadcast_id)
                          .values(status="done", finished_at=now).execution_options(synchronize_session=False))
        return len(recipients)

    def _topics(self, broadcast_id: int) -> list[str]:
        info = self.get(broadcast_id)
        if info is None:
            raise BroadcastError("Message introuvable.")
        return list(info.topics)

    def cancel(self, broadcast_id: int) -> int:
        """Stops a queued broadcast: deliveries not yet sent are skipped (reason `cancelled`)."""
        now = utcnow()
        with session_scope(self.url) as s:
            changed = s.execute(
                update(Broadcast).where(Broadcast.id == broadcast_id, Broadcast.status.in_(("draft", "queued")))
                .values(status="cancelled", finished_at=now).execution_options(synchronize_session=False)
            ).rowcount
            if not changed:
                raise BroadcastError("Ce message ne peut plus être annulé.")
            return s.execute(
                update(Delivery).where(Delivery.broadcast_id == broadcast_id, Delivery.status == "pending")
                .values(status="skipped", reason="cancelled", updated_at=now)
                .execution_options(synchronize_session=False)
            ).rowcount

    def report(self, broadcast_id: int) -> Report | None:
        info = self.get(broadcast_id)
        if info is None:
            return None
        report = Report(info)
        with session_scope(self.url) as s:
            rows = s.execute(
                select(Delivery.channel, Delivery.status, Delivery.reason, Delivery.route, func.count())
                .where(Delivery.broadcast_id == broadcast_id)
                .group_by(Delivery.channel, Delivery.status, Delivery.reason, Delivery.route)
            ).all()
        for channel, status, reason, route, count in rows:
            report.total += count
            report.by_status[status] += count
            report.by_channel.setdefault(channel, Counter())[status] += count
            if status in ("failed", "skipped"):
                report.reasons.setdefault(status, Counter())[reason or "unknown"] += count
            if status == "sent":
                report.routes[route or "standard"] += count
        return report

    def deliveries(self, broadcast_id: int, status: str | None = None, limit: int = 200) -> list[Delivery]:
        with session_scope(self.url) as s:
            query = select(Delivery).where(Delivery.broadcast_id == broadcast_id)
            if status:
                query = query.where(Delivery.status == status)
            return list(s.execute(query.order_by(Delivery.id).limit(limit)).scalars().all())

    def finish_done(self) -> list[int]:
        """Marks `done` the queued broadcasts with nothing left to send; returns their ids."""
        now = utcnow()
        with session_scope(self.url) as s:
            queued = s.execute(select(Broadcast.id).where(Broadcast.status == "queued")).scalars().all()
            finished = []
            for broadcast_id in queued:
                left = s.execute(
                    select(func.count()).select_from(Delivery)
                    .where(Delivery.broadcast_id == broadcast_id, Delivery.status.in_(("pending", "sending")))
                ).scalar_one()
                if not left:
                    s.execute(update(Broadcast).where(Broadcast.id == broadcast_id, Broadcast.status == "queued")
                              .values(status="done", finished_at=now).execution_options(synchronize_session=False))
                    finished.append(broadcast_id)
            return finished
