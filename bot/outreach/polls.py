"""Consultations: a question, 2 to 5 choices, an end date; one vote per citizen.

A citizen is known by a pseudonym (`voter_id`: SHA-256 of channel and conversation id), so
the votes table holds no conversation id; the unique (poll, voter) constraint makes a
second vote impossible even when two messages race.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from bot.db import session_scope, utcnow
from bot.db.outreach_models import Poll, PollChoice, Vote
from bot.outreach.matching import normalise
from bot.outreach.subscriptions import migrated

MIN_CHOICES, MAX_CHOICES = 2, 5
MAX_QUESTION = 300
MAX_CHOICE = 60
ORDINALS = {
    1: ("1", "premier", "premiere", "a"), 2: ("2", "deux", "deuxieme", "second", "seconde", "b"),
    3: ("3", "trois", "troisieme", "c"), 4: ("4", "quatre", "quatrieme", "d"), 5: ("5", "cinq", "cinquieme", "e"),
}


class PollError(ValueError):
    """Invalid consultation (the text is French, for the console)."""


def voter_id(channel: str, conversation_id: str) -> str:
    return hashlib.sha256(f"{channel}:{conversation_id}".encode()).hexdigest()


@dataclass(frozen=True)
class Choice:
    id: int
    position: int
    label: str


@dataclass(frozen=True)
class PollInfo:
    id: int
    question: str
    status: str
    ends_at: dt.datetime
    offer_at_end: bool
    choices: tuple[Choice, ...]
    created_at: dt.datetime

    def is_open(self, now: dt.datetime) -> bool:
        return self.status == "open" and now < self.ends_at

    def choice(self, position: int) -> Choice | None:
        return next((c for c in self.choices if c.position == position), None)


@dataclass(frozen=True)
class Results:
    poll: PollInfo
    counts: tuple[tuple[Choice, int], ...]

    @property
    def total(self) -> int:
        return sum(n for _, n in self.counts)

    def percent(self, count: int) -> int:
        return round(100 * count / self.total) if self.total else 0


# Vote outcomes
RECORDED, ALREADY_VOTED, CLOSED, UNKNOWN = "recorded", "already_voted", "closed", "unknown"


def _info(row: Poll) -> PollInfo:
    return PollInfo(row.id, row.question, row.status, row.ends_at, bool(row.offer_at_end),
                    tuple(Choice(c.id, c.position, c.label) for c in row.choices), row.created_at)


def choice_in_text(poll: PollInfo, text: str) -> Choice | None:
    """The choice a typed answer names: its label, or its number ("la 2", "option deux")."""
    words = normalise(text).split()
    joined = " ".join(words)
    for choice in poll.choices:
        label = normalise(choice.label)
        if label and f" {label} " in f" {joined} ":
            return choice
    named = [p for p, names in ORDINALS.items() if p <= len(poll.choices) and any(n in words for n in names[:-1])]
    if len(named) == 1:
        return poll.choice(named[0])
    if len(words) == 1 and len(words[0]) == 1:  # "a", "b"…
        letters = {names[-1]: p for p, names in ORDINALS.items()}
        if words[0] in letters:
            return poll.choice(letters[words[0]])
    return None


class Polls:
    def __init__(self, url: str) -> None:
        self.url = url
        migrated(url)

    def create(self, question: str, choices: list[str], ends_at: dt.datetime, offer_at_end: bool = True,
               created_by: int | None = None, now: dt.datetime | None = None) -> PollInfo:
        question = " ".join(question.split())
        labels = [" ".join(c.split()) for c in choices if c and c.strip()]
        if not question or len(question) > MAX_QUESTION:
            raise PollError(f"La question est obligatoire ({MAX_QUESTION} caractères au plus).")
        if not MIN_CHOICES <= len(labels) <= MAX_CHOICES:
            raise PollError(f"Proposez de {MIN_CHOICES} à {MAX_CHOICES} choix.")
        if any(len(label) > MAX_CHOICE for label in labels):
            raise PollError(f"Chaque choix fait {MAX_CHOICE} caractères au plus.")
        if len({normalise(label) for label in labels}) != len(labels):
            raise PollError("Deux choix sont identiques.")
        if ends_at <= (now or utcnow()):
            raise PollError("La date de fin doit être dans le futur.")
        with session_scope(self.url) as s:
            poll = Poll(question=question, ends_at=ends_at, offer_at_end=offer_at_end, created_by=created_by,
                        choices=[PollChoice(position=i + 1, label=label) for i, label in enumerate(labels)])
            s.add(poll)
            s.flush()
            return _info(poll)

    def get(self, poll_id: int) -> PollInfo | None:
        with session_scope(self.url) as s:
            row = s.get(Poll, poll_id)
            return _info(row) if row else None

    def all(self) -> list[PollInfo]:
        with session_scope(self.url) as s:
            return [_info(r) for r in s.execute(select(Poll).order_by(Poll.id.desc())).scalars().all()]

    def open(self, poll_id: int) -> bool:
        with session_scope(self.url) as s:
            return bool(s.execute(
                update(Poll).where(Poll.id == poll_id, Poll.status == "draft")
                .values(status="open", opened_at=utcnow()).execution_options(synchronize_session=False)
            ).rowcount)

    def close(self, poll_id: int) -> bool:
        with session_scope(self.url) as s:
            return bool(s.execute(
                update(Poll).where(Poll.id == poll_id, Poll.status == "open")
                .values(status="closed", closed_at=utcnow()).execution_options(synchronize_session=False)
            ).rowcount)

    def open_polls(self, now: dt.datetime | None = None) -> list[PollInfo]:
        now = now or utcnow()
        with session_scope(self.url) as s:
            rows = s.execute(
                select(Poll).where(Poll.status == "open", Poll.ends_at > now).order_by(Poll.id.desc())
            ).scalars().all()
            return [_info(r) for r in rows]

    def has_voted(self, poll_id: int, channel: str, conversation_id: str) -> bool:
        with session_scope(self.url) as s:
            return s.execute(
                select(Vote.id).where(Vote.poll_id == poll_id, Vote.voter == voter_id(channel, conversation_id))
            ).first() is not None

    def to_offer(self, channel: str, conversation_id: str, now: dt.datetime | None = None,
                 at_end: bool = False) -> PollInfo | None:
        """The newest open consultation this citizen has not answered yet."""
        for poll in self.open_polls(now):
            if at_end and not poll.offer_at_end:
                continue
            if not self.has_voted(poll.id, channel, conversation_id):
                return poll
        return None

    def vote(self, poll_id: int, position: int, channel: str, conversation_id: str,
             now: dt.datetime | None = None) -> tuple[str, PollInfo | None, Choice | None]:
        """Records one vote; returns (outcome, poll, choice)."""
        poll = self.get(poll_id)
        if poll is None:
            return UNKNOWN, None, None
        choice = poll.choice(position)
        if not poll.is_open(now or utcnow()):
            return CLOSED, poll, choice
        if choice is None:
            return UNKNOWN, poll, None
        try:
            with session_scope(self.url) as s:
                s.add(Vote(poll_id=poll.id, choice_id=choice.id, voter=voter_id(channel, conversation_id),
                           channel=channel))
        except IntegrityError:
            return ALREADY_VOTED, poll, choice
        return RECORDED, poll, choice

    def results(self, poll_id: int) -> Results | None:
        poll = self.get(poll_id)
        if poll is None:
            return None
        with session_scope(self.url) as s:
            rows = dict(s.execute(
                select(Vote.choice_id, func.count()).where(Vote.poll_id == poll_id).group_by(Vote.choice_id)
            ).all())
        return Results(poll, tuple((c, int(rows.get(c.id, 0))) for c in poll.choices))


def vote_payload(poll_id: int, position: int) -> str:
    """The quick-reply payload of a choice: `/vote{"poll_id":"3","poll_choice":"2"}`."""
    return "/vote" + json.dumps({"poll_id": str(poll_id), "poll_choice": str(position)}, separators=(",", ":"))


def vote_buttons(poll: PollInfo) -> list[dict[str, str]]:
    return [{"title": c.label, "payload": vote_payload(poll.id, c.position)} for c in poll.choices]


def parse_position(value: object) -> int | None:
    text = str(value or "").strip()
    return int(text) if re.fullmatch(r"[1-9]", text) else None
