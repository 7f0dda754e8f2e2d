"""A citizen's personal data across the database: export, erasure, retention purge.

What is personal, per conversation id (the sender id of a channel: PSID, wa_id…):
- Rasa's tracker store (table `events`): every message and its metadata. Erasure and the
  retention purge delete the conversation's rows (Rasa offers no API for that). Rows are
  deleted only once Rasa has stored the turn in which the citizen asked (see
  `request_erasure`): Rasa appends what it has in memory after each turn, so deleting
  earlier would be undone by its next save.
- Reports and complaints (bot/db/tickets.py): anonymised, not deleted: contact, consent,
  photos and conversation id removed, phone numbers and e-mails masked in the text; the
  commune keeps the category, place, description and status.
- Handoff (bot/db/models.py): callback requests deleted; tickets and escalations kept
  for the statistics but without the citizen's words or conversation id; agents' notes
  and messages about the conversation deleted.
- Any other project table with a `conversation_id`, `psid` or `recipient` column (alert
  subscriptions, Messenger opt-ins, broadcast deliveries, answer ratings…): rows deleted.

Functions are synchronous (SQLAlchemy); async callers run them in a thread.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from typing import Any

from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.exc import OperationalError, ProgrammingError

from bot.db import (
    AgentMessage,
    Base,
    CallbackRequest,
    Escalation,
    Note,
    Ticket,
    get_engine,
    session_scope,
    utcnow,
)
from bot.db.models import ACTIVE_STATUSES
from bot.db.outreach_models import Vote
from bot.db.tickets import CitizenRequest, ErasureRequest, RequestEvent, RequestNotification
from bot.handoff.tracker_feed import EVENTS, TrackerFeed
from bot.outreach.polls import voter_id
from bot.privacy.masking import mask
from bot.reports import catalog
from bot.reports.service import photos_of

logger = logging.getLogger(__name__)

ERASED_OUTCOME = "donnees_effacees"
# Tables handled one by one below; every other `guichet_` table is handled generically.
HANDLED_TABLES = {
    "guichet_requests", "guichet_request_events", "guichet_request_notifications", "guichet_erasure_requests",
    "guichet_escalations", "guichet_tickets", "guichet_callback_requests", "guichet_notes",
    "guichet_agent_messages", "guichet_transfers",
}
PERSONAL_COLUMNS = ("conversation_id", "psid", "recipient")
# Erased with the conversation, but not data about the citizen: left out of exports.
NOT_EXPORTED = {"guichet_data_export_links"}


def conversation_key(conversation_id: str) -> str:
    """What is kept of an erased conversation's id: proof of processing, not the id."""
    return "sha256:" + hashlib.sha256(conversation_id.encode()).hexdigest()


def _epoch(moment: dt.datetime) -> float:
    return moment.replace(tzinfo=dt.timezone.utc).timestamp()


def _iso(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.timezone.utc).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _other_tables() -> list[tuple[Table, list[str]]]:
    """Project tables not handled explicitly that hold a conversation id (children first)."""
    found = []
    for table in reversed(Base.metadata.sorted_tables):
        if not table.name.startswith("guichet_") or table.name in HANDLED_TABLES:
            continue
        columns = [c for c in PERSONAL_COLUMNS if c in table.c]
        if columns:
            found.append((table, columns))
    return found


def _tolerant(function: Any, default: Any) -> Any:
    """Rasa's `events` table may not exist yet (Rasa never started on this database)."""
    try:
        return function()
    except (OperationalError, ProgrammingError) as exc:
        if "events" in str(exc):
            logger.debug("No tracker store table: %s", exc)
            return default
        raise


# Export ---------------------------------------------------------------------------------------
def export_conversation(url: str, conversation_id: str) -> dict[str, Any]:
    """Everything the project keeps about one conversation, as JSON-ready data."""
    feed = TrackerFeed(url)
    messages = [
        {"at": _iso(dt.datetime.fromtimestamp(e.timestamp, dt.timezone.utc).replace(tzinfo=None)),
         "from": {"citizen": "usager", "bot": "assistant", "agent": "agent"}[e.author or "bot"],
         "text": e.text, "channel": e.data.get("input_channel") or None}
        for e in _tolerant(lambda: feed.conversation(conversation_id, limit=100_000), [])
        if e.author and e.text
    ]
    with session_scope(url) as s:
        requests = s.execute(
            select(CitizenRequest).where(CitizenRequest.conversation_id == conversation_id).order_by(CitizenRequest.id)
        ).scalars().all()
        escalations = s.execute(
            select(Escalation).where(Escalation.conversation_id == conversation_id).order_by(Escalation.id)
        ).scalars().all()
        tickets = s.execute(
            select(Ticket).where(Ticket.conversation_id == conversation_id).order_by(Ticket.id)
        ).scalars().all()
        callbacks = s.execute(
            select(CallbackRequest).where(CallbackRequest.ticket_id.in_([t.id for t in tickets]))
        ).scalars().all() if tickets else []
        notes = s.execute(
            select(Note).where(Note.escalation_id.in_([e.id for e in escalations]))
        ).scalars().all() if escalations else []
        other: dict[str, list[dict[str, Any]]] = {}
        for table, columns in _other_tables():
            if table.name in NOT_EXPORTED:
                continue
            for column in columns:
                rows = s.execute(select(table).where(table.c[column] == conversation_id)).mappings().all()
                if rows:
                    other.setdefault(table.name, []).extend({k: _iso(v) for k, v in row.items()} for row in rows)
    return {
        "conversation_id": conversation_id,
        "exported_at": _iso(utcnow()),
        "messages": messages,
        "requests": [
            {"reference": r.reference, "type": catalog.KIND_LABELS.get(r.kind, r.kind),
             "category": catalog.category_label(r.kind, r.category),
             "status": catalog.STATUS_LABELS.get(r.status, r.status), "place": r.place,
             "latitude": r.latitude, "longitude": r.longitude, "description": r.description,
             "photos": photos_of(r), "contact": r.contact, "consent_at": _iso(r.consent_at),
             "channel": r.channel, "created_at": _iso(r.created_at), "updated_at": _iso(r.updated_at)}
            for r in requests
        ],
        "handoff": {
            "escalations": [
                {"created_at": _iso(e.created_at), "channel": e.channel, "reason": e.reason,
                 "detail": e.reason_detail, "status": e.status, "outcome": e.outcome,
                 "comment": e.outcome_comment} for e in escalations
            ],
            "tickets": [
                {"reference": t.reference, "created_at": _iso(t.created_at), "reason": t.reason,
                 "summary": t.summary, "status": t.status} for t in tickets
            ],
            "callbacks": [
                {"contact_kind": c.contact_kind, "contact": c.contact, "consent_at": _iso(c.consent_at)}
                for c in callbacks
            ],
            "agent_notes": [{"at": _iso(n.created_at), "text": n.text} for n in notes],
        },
        "other": other,
    }


# Erasure --------------------------------------------------------------------------------------
def erase_project_data(url: str, conversation_id: str) -> dict[str, int]:
    """Anonymises or deletes the project's data about a conversation (not Rasa's events)."""
    now = utcnow()
    counts = {"requests": 0, "tickets": 0, "callbacks": 0, "escalations": 0, "notes": 0, "votes": 0, "other": 0}
    with session_scope(url) as s:
        requests = s.execute(
            select(CitizenRequest).where(CitizenRequest.conversation_id == conversation_id)
        ).scalars().all()
        for request in requests:
            request.description = mask(request.description or "")
            request.place = mask(request.place or "")
            request.contact = request.contact_kind = request.consent_at = request.conversation_id = None
            request.photos = "[]"
            request.anonymised_at = now
            s.add(RequestEvent(request_id=request.id, at=now, kind="anonymised"))
        counts["requests"] = len(requests)
        s.execute(
            update(RequestNotification).where(
                RequestNotification.conversation_id == conversation_id,
                RequestNotification.status.in_(("pending", "failed", "sending")),
            ).values(status="not_delivered", reason="anonymised").execution_options(synchronize_session=False)
        )
        s.execute(
            update(RequestNotification).where(RequestNotification.conversation_id == conversation_id)
            .values(conversation_id=None).execution_options(synchronize_session=False)
        )

        tickets = s.execute(select(Ticket).where(Ticket.conversation_id == conversation_id)).scalars().all()
        if tickets:
            counts["callbacks"] = s.execute(
                delete(CallbackRequest).where(CallbackRequest.ticket_id.in_([t.id for t in tickets]))
                .execution_options(synchronize_session=False)
            ).rowcount
        for ticket in tickets:
            ticket.summary = ""
            ticket.conversation_id = _placeholder()
        counts["tickets"] = len(tickets)

        escalations = s.execute(
            select(Escalation).where(Escalation.conversation_id == conversation_id)
        ).scalars().all()
        ids = [e.id for e in escalations]
        if ids:
            counts["notes"] = s.execute(
                delete(Note).where(Note.escalation_id.in_(ids)).execution_options(synchronize_session=False)
            ).rowcount
            s.execute(delete(AgentMessage).where(AgentMessage.escalation_id.in_(ids))
                      .execution_options(synchronize_session=False))
        for escalation in escalations:
            if escalation.status in ACTIVE_STATUSES:
                # Nobody must resume or answer a conversation that no longer exists.
                escalation.status, escalation.outcome = "closed", ERASED_OUTCOME
                escalation.ended_at = escalation.resumed_at = now
            escalation.reason_detail = ""
            escalation.outcome_comment = None
            escalation.conversation_id = _placeholder()
            escalation.updated_at = now
        counts["escalations"] = len(escalations)
        s.execute(delete(AgentMessage).where(AgentMessage.conversation_id == conversation_id)
                  .execution_options(synchronize_session=False))

        # Votes stay counted in the results, but their pseudonym (a hash of the channel the
        # vote came from and the conversation id) no longer leads to anyone.
        channels = s.execute(select(Vote.channel).distinct()).scalars().all()
        voters = [voter_id(channel, conversation_id) for channel in channels]
        for vote in s.execute(select(Vote).where(Vote.voter.in_(voters))).scalars():
            vote.voter = _placeholder()
            counts["votes"] += 1

        for table, columns in _other_tables():
            for column in columns:
                counts["other"] += s.execute(delete(table).where(table.c[column] == conversation_id)).rowcount
    return counts


def _placeholder() -> str:
    return "efface-" + secrets.token_hex(8)


def delete_conversation_events(url: str, conversation_id: str, until: float | None = None) -> int:
    """Deletes the conversation's tracker events (those stamped up to `until` if given)."""
    statement = delete(EVENTS).where(EVENTS.c.sender_id == conversation_id)
    if until is not None:
        statement = statement.where(EVENTS.c.timestamp <= until)

    def run() -> int:
        with get_engine(url).begin() as connection:
            return connection.execute(statement).rowcount

    return _tolerant(run, 0)


def request_erasure(url: str, conversation_id: str, channel: str, grace_seconds: float,
                    origin: str = "citizen") -> dict[str, int]:
    """Erases the project's data now; the tracker events once Rasa has stored this turn."""
    counts = erase_project_data(url, conversation_id)
    now = utcnow()
    with session_scope(url) as s:
        s.add(ErasureRequest(
            conversation_key=conversation_id, channel=channel[:64], origin=origin, status="pending",
            requested_at=now, due_at=now + dt.timedelta(seconds=max(0.0, grace_seconds)),
        ))
    logger.info("Erasure requested (%s) for a %s conversation: %s", origin, channel, counts)
    return counts


def process_due_erasures(url: str, now: dt.datetime | None = None) -> int:
    """Deletes the tracker events of the erasure requests whose grace period is over."""
    now = now or utcnow()
    with session_scope(url) as s:
        due = s.execute(
            select(ErasureRequest).where(ErasureRequest.status == "pending", ErasureRequest.due_at <= now)
            .order_by(ErasureRequest.id).limit(100)
        ).scalars().all()
    done = 0
    for erasure in due:
        conversation_id = erasure.conversation_key
        deleted = delete_conversation_events(url, conversation_id, until=_epoch(erasure.due_at))
        erase_project_data(url, conversation_id)  # anything created during the grace period
        with session_scope(url) as s:
            changed = s.execute(
                update(ErasureRequest).where(ErasureRequest.id == erasure.id, ErasureRequest.status == "pending")
                .values(status="done", done_at=utcnow(), events_deleted=deleted,
                        conversation_key=conversation_key(conversation_id))
                .execution_options(synchronize_session=False)
            ).rowcount
        if changed:
            done += 1
            logger.info("Erasure %s done: %d tracker events deleted", erasure.id, deleted)
    return done


# Retention ------------------------------------------------------------------------------------
def expired_conversations(url: str, retention_days: float, now: dt.datetime | None = None,
                          limit: int = 1000) -> list[str]:
    """Conversations whose last event is older than the retention period."""
    cutoff = _epoch((now or utcnow()) - dt.timedelta(days=retention_days))

    def run() -> list[str]:
        with get_engine(url).connect() as connection:
            return [row[0] for row in connection.execute(
                select(EVENTS.c.sender_id).group_by(EVENTS.c.sender_id)
                .having(func.max(EVENTS.c.timestamp) < cutoff).limit(limit)
            )]

    return _tolerant(run, [])


def purge_expired(url: str, retention_days: float, now: dt.datetime | None = None,
                  dry_run: bool = False) -> dict[str, int]:
    """The retention job: conversations silent for `retention_days` are deleted (their
    project data anonymised), requests untouched that long are anonymised, and finished
    erasure records that old are dropped."""
    now = now or utcnow()
    cutoff = now - dt.timedelta(days=retention_days)
    counts = {"conversations": 0, "events": 0, "requests": 0, "erasure_records": 0}
    while True:
        expired = expired_conversations(url, retention_days, now)
        if dry_run:
            counts["conversations"] = len(expired)
            break
        for conversation_id in expired:
            erase_project_data(url, conversation_id)
            counts["events"] += delete_conversation_events(url, conversation_id)
        counts["conversations"] += len(expired)
        if len(expired) < 1000:
            break
    with session_scope(url) as s:
        stale = s.execute(
            select(CitizenRequest.conversation_id).where(
                CitizenRequest.anonymised_at.is_(None), CitizenRequest.updated_at < cutoff)
        ).scalars().all()
        if not dry_run:
            old = s.execute(
                select(CitizenRequest).where(CitizenRequest.anonymised_at.is_(None),
                                             CitizenRequest.updated_at < cutoff)
            ).scalars().all()
            for request in old:
                request.contact = request.contact_kind = request.consent_at = request.conversation_id = None
                request.photos = "[]"
                request.description = mask(request.description or "")
                request.anonymised_at = now
                s.add(RequestEvent(request_id=request.id, at=now, kind="anonymised", comment="durée de conservation"))
            counts["erasure_records"] = s.execute(
                delete(ErasureRequest).where(ErasureRequest.status == "done", ErasureRequest.done_at < cutoff)
                .execution_options(synchronize_session=False)
            ).rowcount
        counts["requests"] = len(stale)
    logger.info("Retention purge (%s days%s): %s", retention_days, ", dry run" if dry_run else "", counts)
    return counts


def summary(url: str, conversation_id: str) -> dict[str, Any]:
    """What the citizen is told in the chat about the data kept on them."""
    data = export_conversation(url, conversation_id)
    with session_scope(url) as s:
        requests = s.execute(
            select(CitizenRequest).where(CitizenRequest.conversation_id == conversation_id)
            .order_by(CitizenRequest.id)
        ).scalars().all()
    return {
        "messages": len(data["messages"]),
        "first": data["messages"][0]["at"] if data["messages"] else None,
        "requests": requests,
        "escalations": len(data["handoff"]["escalations"]),
        "callbacks": len(data["handoff"]["callbacks"]),
        "other": sum(len(rows) for rows in data["other"].values()),
    }
