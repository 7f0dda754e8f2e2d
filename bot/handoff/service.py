"""Escalations, their queue, tickets and callback requests: the handoff's state in the DB.

Every state change is one conditional UPDATE (`... WHERE status = 'queued'`), so that two
agents, two consoles or an agent and the expiry job can never both win: the caller learns
from the row count whether it did. Methods are synchronous (SQLAlchemy); async callers
run them in a thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass
from statistics import mean

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from bot.commune import load_commune
from bot.db import (
    Agent,
    AgentMessage,
    CallbackRequest,
    Escalation,
    Note,
    Ticket,
    Transfer,
    WatchState,
    session_scope,
    utcnow,
)
from bot.db.migrate import ensure_upgraded
from bot.db.models import ACTIVE_STATUSES
from bot.handoff.availability import OpeningCalendar, describe_opening
from bot.handoff.clock import local_now
from bot.handoff.references import new_reference
from bot.settings import Settings, get_settings

logger = logging.getLogger(__name__)

OUTCOMES = {
    "resolu": "Question résolue",
    "reoriente": "Réorienté vers un service ou un partenaire",
    "rappel": "Rappel ou rendez-vous prévu",
    "sans_reponse": "Le citoyen ne répond plus",
    "autre": "Autre",
}
# Outcomes set by the system rather than by an agent.
CANCELLED_BY_CITIZEN = "annule_par_usager"
HANDED_BACK = "rendu_au_robot"
EXPIRED = "non_pris_en_charge"
RESTARTED = "conversation_redemarree"


class HandoffError(Exception):
    """A state change that is not possible (already claimed, not yours…)."""


@dataclass(frozen=True)
class Availability:
    is_open: bool
    agents_online: int
    closed_reason: str | None
    next_opening: str  # French, e.g. "demain, vendredi 27 novembre, à 8 h 30"

    @property
    def live(self) -> bool:
        """A person can answer now: the town hall is open and an agent is online."""
        return self.is_open and self.agents_online > 0


@dataclass(frozen=True)
class QueueInfo:
    escalation_id: int
    position: int  # 1 = next to be taken; 0 = an agent already has it
    expected_wait_minutes: int
    created: bool  # False when the conversation was already escalated


class HandoffService:
    def __init__(self, url: str, settings: Settings | None = None) -> None:
        self.url = url
        self._settings = settings

    @property
    def settings(self) -> Settings:
        # Read every time unless fixed: tests change the environment between calls.
        return self._settings or get_settings()

    def session(self):  # noqa: ANN201 - a context manager of Session
        return session_scope(self.url)

    # Availability -----------------------------------------------------------------------
    def agents_online(self) -> int:
        cutoff = utcnow() - dt.timedelta(seconds=self.settings.agent_presence_timeout)
        with self.session() as s:
            return s.execute(
                select(func.count(Agent.id)).where(
                    Agent.active.is_(True),
                    Agent.presence == "online",
                    Agent.role.in_(("agent", "admin")),
                    Agent.last_seen_at >= cutoff,
                )
            ).scalar_one()

    def availability(self) -> Availability:
        settings = self.settings
        calendar = OpeningCalendar(load_commune(), settings.holidays_subdivision)
        now = local_now(settings)
        is_open = calendar.is_open(now)
        return Availability(
            is_open=is_open,
            agents_online=self.agents_online() if is_open else 0,
            closed_reason=None if is_open else calendar.closed_reason(now.date()),
            next_opening=describe_opening(calendar.next_opening(now), now),
        )

    # Escalations ------------------------------------------------------------------------
    def escalate(self, conversation_id: str, channel: str, reason: str, detail: str = "") -> QueueInfo:
        """Queues the conversation (or returns its current escalation)."""
        existing = self.active_escalation(conversation_id)
        if existing is None:
            try:
                with self.session() as s:
                    now = utcnow()
                    escalation = Escalation(
                        conversation_id=conversation_id, channel=channel, reason=reason,
                        reason_detail=detail[:2000], status="queued", created_at=now, updated_at=now,
                    )
                    s.add(escalation)
                    s.flush()
                    escalation_id = escalation.id
                created = True
            except IntegrityError:  # escalated at the same moment by another request
                existing = self.active_escalation(conversation_id)
                if existing is None:
                    raise
        if existing is not None:
            escalation_id, created = existing.id, False
        escalation = self.get(escalation_id)
        position = self.position(escalation)
        return QueueInfo(escalation_id, position, self.expected_wait_minutes(position), created)

    def get(self, escalation_id: int) -> Escalation:
        with self.session() as s:
            escalation = s.get(Escalation, escalation_id)
            if escalation is None:
                raise HandoffError(f"no escalation {escalation_id}")
            return escalation

    def active_escalation(self, conversation_id: str) -> Escalation | None:
        with self.session() as s:
            return s.execute(
                select(Escalation).where(
                    Escalation.conversation_id == conversation_id,
                    Escalation.status.in_(ACTIVE_STATUSES),
                )
            ).scalar_one_or_none()

    def active_by_conversation(self) -> dict[str, Escalation]:
        with self.session() as s:
            rows = s.execute(select(Escalation).where(Escalation.status.in_(ACTIVE_STATUSES))).scalars()
            return {e.conversation_id: e for e in rows}

    def position(self, escalation: Escalation) -> int:
        if escalation.status != "queued":
            return 0
        with self.session() as s:
            ahead = s.execute(
                select(func.count(Escalation.id)).where(
                    Escalation.status == "queued",
                    or_(
                        Escalation.created_at < escalation.created_at,
                        and_(Escalation.created_at == escalation.created_at, Escalation.id < escalation.id),
                    ),
                )
            ).scalar_one()
        return ahead + 1

    def handling_minutes(self) -> float:
        """Mean time agents spent on the last closed conversations (default from settings)."""
        since = utcnow() - dt.timedelta(days=14)
        with self.session() as s:
            rows = s.execute(
                select(Escalation.claimed_at, Escalation.ended_at)
                .where(Escalation.claimed_at.is_not(None), Escalation.ended_at.is_not(None),
                       Escalation.created_at >= since)
                .order_by(Escalation.id.desc())
                .limit(20)
            ).all()
        durations = [(end - start).total_seconds() / 60 for start, end in rows if end >= start]
        if len(durations) < 3:
            return self.settings.handoff_minutes_per_conversation
        return max(1.0, mean(durations))

    def expected_wait_minutes(self, position: int) -> int:
        if position <= 0:
            return 0
        agents = max(1, self.agents_online())
        return max(1, math.ceil(position * self.handling_minutes() / agents))

    def queue(self) -> list[Escalation]:
        with self.session() as s:
            return list(
                s.execute(
                    select(Escalation).where(Escalation.status.in_(ACTIVE_STATUSES))
                    .order_by(Escalation.created_at, Escalation.id)
                ).scalars()
            )

    def recent(self, limit: int = 20) -> list[Escalation]:
        with self.session() as s:
            return list(
                s.execute(
                    select(Escalation).where(Escalation.status.not_in(ACTIVE_STATUSES))
                    .order_by(Escalation.ended_at.desc(), Escalation.id.desc()).limit(limit)
                ).scalars()
            )

    def queue_version(self) -> tuple:
        """Changes whenever any escalation or ticket changes (cheap to poll)."""
        with self.session() as s:
            escalations = s.execute(
                select(func.count(Escalation.id), func.max(Escalation.updated_at))
            ).one()
            tickets = s.execute(select(func.count(Ticket.id), func.max(Ticket.closed_at))).one()
            return (*escalations, *tickets)

    def _change(self, escalation_id: int, conditions: list, **values) -> bool:  # noqa: ANN003
        values.setdefault("updated_at", utcnow())
        with self.session() as s:
            result = s.execute(
                update(Escalation)
                .where(Escalation.id == escalation_id, *conditions)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            return result.rowcount == 1

    def claim(self, escalation_id: int, agent_id: int) -> bool:
        """Atomic: True for exactly one agent, whatever the concurrency."""
        now = utcnow()
        return self._change(
            escalation_id, [Escalation.status == "queued"],
            status="claimed", claimed_by=agent_id, claimed_at=now, updated_at=now,
        )

    def transfer(self, escalation_id: int, from_agent_id: int, to_agent_id: int | None) -> bool:
        """To another agent, or back to the queue (`to_agent_id=None`)."""
        conditions = [Escalation.status == "claimed", Escalation.claimed_by == from_agent_id]
        if to_agent_id is None:
            changed = self._change(escalation_id, conditions, status="queued", claimed_by=None, claimed_at=None)
        else:
            changed = self._change(escalation_id, conditions, claimed_by=to_agent_id, claimed_at=utcnow())
        if changed:
            with self.session() as s:
                s.add(Transfer(escalation_id=escalation_id, from_agent_id=from_agent_id, to_agent_id=to_agent_id))
        return changed

    def end(
        self, escalation_id: int, agent_id: int, status: str, outcome: str, comment: str = ""
    ) -> bool:
        """The agent who has the conversation closes it or hands it back to the bot."""
        if status not in ("closed", "returned"):
            raise ValueError(status)
        return self._change(
            escalation_id, [Escalation.status == "claimed", Escalation.claimed_by == agent_id],
            status=status, outcome=outcome, outcome_comment=comment[:2000] or None, ended_at=utcnow(),
        )

    def cancel_by_citizen(self, conversation_id: str) -> Escalation | None:
        escalation = self.active_escalation(conversation_id)
        if escalation and self._change(
            escalation.id, [Escalation.status.in_(ACTIVE_STATUSES)],
            status="returned", outcome=CANCELLED_BY_CITIZEN, ended_at=utcnow(),
        ):
            return self.get(escalation.id)
        return None

    def end_silently(self, escalation_id: int, outcome: str) -> bool:
        """The conversation was restarted or resumed outside the console: nothing to send."""
        now = utcnow()
        return self._change(
            escalation_id, [Escalation.status.in_(ACTIVE_STATUSES)],
            status="returned", outcome=outcome, ended_at=now, resumed_at=now,
        )

    def expire_due(self) -> list[Escalation]:
        """Queued escalations older than the timeout become `expired` (each returned once)."""
        cutoff = utcnow() - dt.timedelta(seconds=self.settings.handoff_queue_timeout)
        with self.session() as s:
            due = s.execute(
                select(Escalation.id).where(Escalation.status == "queued", Escalation.created_at <= cutoff)
            ).scalars().all()
        return [
            self.get(i) for i in due
            if self._change(i, [Escalation.status == "queued"], status="expired", outcome=EXPIRED, ended_at=utcnow())
        ]

    # The bot is given back the conversation by whoever takes this job first.
    def pending_resumes(self) -> list[Escalation]:
        with self.session() as s:
            return list(
                s.execute(
                    select(Escalation).where(
                        Escalation.status.not_in(ACTIVE_STATUSES), Escalation.resumed_at.is_(None)
                    ).order_by(Escalation.id)
                ).scalars()
            )

    def take_resume(self, escalation_id: int) -> bool:
        return self._change(
            escalation_id, [Escalation.resumed_at.is_(None), Escalation.status.not_in(ACTIVE_STATUSES)],
            resumed_at=utcnow(),
        )

    def release_resume(self, escalation_id: int) -> None:
        self._change(escalation_id, [], resumed_at=None)

    # Tickets and callbacks --------------------------------------------------------------
    def open_ticket(
        self, conversation_id: str, channel: str, reason: str, summary: str = "",
        escalation_id: int | None = None,
    ) -> Ticket:
        for _ in range(20):
            try:
                with self.session() as s:
                    ticket = Ticket(
                        reference=new_reference(), conversation_id=conversation_id, channel=channel,
                        reason=reason, summary=summary[:4000], escalation_id=escalation_id,
                    )
                    s.add(ticket)
                return ticket
            except IntegrityError:  # reference already taken: draw another one
                continue
        raise HandoffError("could not draw a free ticket reference")

    def ticket(self, reference: str) -> Ticket | None:
        with self.session() as s:
            return s.execute(select(Ticket).where(Ticket.reference == reference)).scalar_one_or_none()

    def ticket_for_escalation(self, escalation_id: int) -> Ticket | None:
        with self.session() as s:
            return s.execute(
                select(Ticket).where(Ticket.escalation_id == escalation_id).order_by(Ticket.id).limit(1)
            ).scalar_one_or_none()

    def add_callback(self, ticket: Ticket, contact_kind: str, contact: str) -> CallbackRequest:
        """Stores a callback request; only called once the citizen has consented."""
        with self.session() as s:
            request = CallbackRequest(
                ticket_id=ticket.id, contact_kind=contact_kind, contact=contact, consent=True,
                consent_at=utcnow(),
            )
            s.add(request)
            s.flush()
            s.refresh(request)
            return request

    def open_tickets(self) -> list[tuple[Ticket, list[CallbackRequest]]]:
        with self.session() as s:
            tickets = s.execute(
                select(Ticket).where(Ticket.status == "open").order_by(Ticket.created_at)
            ).scalars().all()
            callbacks = s.execute(
                select(CallbackRequest).where(CallbackRequest.ticket_id.in_([t.id for t in tickets]))
            ).scalars().all()
        by_ticket: dict[int, list[CallbackRequest]] = {}
        for callback in callbacks:
            by_ticket.setdefault(callback.ticket_id, []).append(callback)
        return [(t, by_ticket.get(t.id, [])) for t in tickets]

    def close_ticket(self, ticket_id: int, agent_id: int) -> bool:
        """Closes the ticket and erases the contact details (kept only until processed)."""
        now = utcnow()
        with self.session() as s:
            result = s.execute(
                update(Ticket).where(Ticket.id == ticket_id, Ticket.status == "open")
                .values(status="closed", closed_at=now, closed_by=agent_id)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:
                return False
            s.execute(
                update(CallbackRequest).where(CallbackRequest.ticket_id == ticket_id)
                .values(contact="(effacé)", done_at=now, done_by=agent_id)
                .execution_options(synchronize_session=False)
            )
            return True

    # Notes and agent messages -----------------------------------------------------------
    def add_note(self, escalation_id: int, agent_id: int, text: str) -> None:
        with self.session() as s:
            s.add(Note(escalation_id=escalation_id, agent_id=agent_id, text=text))
            s.execute(
                update(Escalation).where(Escalation.id == escalation_id).values(updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )

    def notes(self, conversation_id: str) -> list[Note]:
        with self.session() as s:
            return list(
                s.execute(
                    select(Note).join(Escalation, Note.escalation_id == Escalation.id)
                    .where(Escalation.conversation_id == conversation_id).order_by(Note.id)
                ).scalars()
            )

    def record_agent_message(
        self, escalation: Escalation, agent_id: int, text: str, error: str | None = None
    ) -> int:
        """Audit of a message an agent sent (or tried to: `error`)."""
        with self.session() as s:
            message = AgentMessage(
                escalation_id=escalation.id, conversation_id=escalation.conversation_id, agent_id=agent_id,
                text=text, status="failed" if error else "sent", error=error,
                sent_at=None if error else utcnow(),
            )
            s.add(message)
            s.flush()
            return message.id

    # A small persistent cursor (the console's position in the tracker store) ------------
    def read_counter(self, key: str) -> int | None:
        with self.session() as s:
            row = s.execute(select(WatchState).where(WatchState.key == key)).scalar_one_or_none()
            return row.value if row else None

    def write_counter(self, key: str, value: int) -> None:
        with self.session() as s:
            changed = s.execute(
                update(WatchState).where(WatchState.key == key).values(value=value)
                .execution_options(synchronize_session=False)
            ).rowcount
            if not changed:
                s.add(WatchState(key=key, value=value))


def get_service(settings: Settings | None = None) -> HandoffService:
    """The service for the configured database, its schema brought up to date once."""
    url = (settings or get_settings()).database_url
    ensure_upgraded(url)  # thread-safe: the action server runs actions in threads
    return HandoffService(url, settings)
