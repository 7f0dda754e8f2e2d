"""Reports and complaints in the database: creation, lookup, the staff's table (filters,
CSV), assignment, status changes and the notifications they queue for the citizen.

Methods are synchronous (SQLAlchemy); async callers run them in a thread. A status change
is one conditional UPDATE (`... WHERE status = <the status the agent saw>`): two agents
changing the same request at once cannot both win, and the loser is told.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError

from bot.db import session_scope, utcnow
from bot.db.migrate import upgrade
from bot.db.tickets import (
    KINDS,
    REQUEST_STATUSES,
    CitizenRequest,
    RequestEvent,
    RequestNotification,
)
from bot.reports import catalog
from bot.reports.references import new_reference
from bot.settings import get_settings

logger = logging.getLogger(__name__)

MAX_DESCRIPTION_CHARS = 4000
MAX_PLACE_CHARS = 500
# Failed notifications (Rasa unreachable) are retried with a growing delay, this many times.
MAX_NOTIFICATION_ATTEMPTS = 8
# A notification claimed for sending longer than this is taken again (its sender died).
SENDING_TIMEOUT = 120
CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class RequestError(ValueError):
    """A change that is not possible (unknown status, changed meanwhile…)."""


@dataclass(frozen=True)
class NewRequest:
    kind: str
    category: str
    description: str
    conversation_id: str | None
    channel: str
    place: str = ""
    latitude: float | None = None
    longitude: float | None = None
    photos: tuple[dict[str, Any], ...] = ()
    contact_kind: str | None = None
    contact: str | None = None
    consent: bool = False
    due_days: int | None = None


@dataclass
class Filters:
    """The staff table's filters (all optional)."""

    status: str = ""
    kind: str = ""
    category: str = ""
    since: dt.date | None = None
    until: dt.date | None = None
    assigned: str = ""  # "" any · "none" nobody · "<agent id>"
    reference: str = ""
    errors: list[str] = field(default_factory=list)

    @classmethod
    def from_query(cls, query: Any) -> Filters:
        filters = cls()
        status, kind = str(query.get("status", "")), str(query.get("kind", ""))
        filters.status = status if status in REQUEST_STATUSES else ""
        filters.kind = kind if kind in KINDS else ""
        category = str(query.get("category", ""))
        known = set(catalog.REPORT_CATEGORIES) | set(catalog.COMPLAINT_SUBJECTS)
        filters.category = category if category in known else ""
        for name in ("since", "until"):
            value = str(query.get(name, "")).strip()
            if value:
                try:
                    setattr(filters, name, dt.date.fromisoformat(value))
                except ValueError:
                    filters.errors.append(f"Date invalide : {value[:20]} (format attendu : AAAA-MM-JJ)")
        assigned = str(query.get("assigned", ""))
        filters.assigned = assigned if assigned == "none" or assigned.isdigit() else ""
        filters.reference = str(query.get("reference", "")).strip().upper()[:16]
        return filters

    def as_query(self) -> dict[str, str]:
        values = {
            "status": self.status, "kind": self.kind, "category": self.category,
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
            "assigned": self.assigned, "reference": self.reference,
        }
        return {k: v for k, v in values.items() if v}


def photos_of(request: CitizenRequest) -> list[dict[str, Any]]:
    try:
        photos = json.loads(request.photos or "[]")
    except ValueError:
        return []
    return [p for p in photos if isinstance(p, dict)] if isinstance(photos, list) else []


class RequestService:
    def __init__(self, url: str) -> None:
        self.url = url

    def session(self):  # noqa: ANN201 - a context manager of Session
        return session_scope(self.url)

    # Citizens -------------------------------------------------------------------------
    def create(self, new: NewRequest) -> CitizenRequest:
        if new.kind not in KINDS:
            raise RequestError(f"unknown kind {new.kind!r}")
        prefix = catalog.KIND_PREFIXES[new.kind]
        now = utcnow()
        consented = bool(new.consent and new.contact and new.contact_kind)
        for _ in range(20):
            try:
                with self.session() as s:
                    request = CitizenRequest(
                        reference=new_reference(prefix), kind=new.kind, category=new.category[:32],
                        place=(new.place or "")[:MAX_PLACE_CHARS], latitude=new.latitude, longitude=new.longitude,
                        description=(new.description or "")[:MAX_DESCRIPTION_CHARS],
                        photos=json.dumps(list(new.photos), ensure_ascii=False),
                        contact_kind=new.contact_kind if consented else None,
                        contact=new.contact if consented else None,
                        consent_at=now if consented else None,
                        conversation_id=new.conversation_id, channel=new.channel[:64] or "inconnu",
                        status="new", created_at=now, updated_at=now,
                        due_at=now + dt.timedelta(days=new.due_days) if new.due_days else None,
                    )
                    s.add(request)
                    s.flush()
                    s.add(RequestEvent(request_id=request.id, at=now, kind="created", new_value="new"))
                return request
            except IntegrityError:  # reference already taken: draw another one
                continue
        raise RequestError("could not draw a free reference")

    def by_reference(self, reference: str) -> CitizenRequest | None:
        with self.session() as s:
            return s.execute(
                select(CitizenRequest).where(CitizenRequest.reference == reference.upper())
            ).scalar_one_or_none()

    def for_conversation(self, conversation_id: str, limit: int = 10) -> list[CitizenRequest]:
        with self.session() as s:
            return list(s.execute(
                select(CitizenRequest).where(CitizenRequest.conversation_id == conversation_id)
                .order_by(CitizenRequest.created_at.desc(), CitizenRequest.id.desc()).limit(limit)
            ).scalars())

    # Staff ----------------------------------------------------------------------------
    def get(self, request_id: int) -> CitizenRequest | None:
        with self.session() as s:
            return s.get(CitizenRequest, request_id)

    def search(self, filters: Filters, limit: int = 500) -> list[CitizenRequest]:
        query = select(CitizenRequest)
        conditions = []
        if filters.status:
            conditions.append(CitizenRequest.status == filters.status)
        if filters.kind:
            conditions.append(CitizenRequest.kind == filters.kind)
        if filters.category:
            conditions.append(CitizenRequest.category == filters.category)
        if filters.since:
            conditions.append(CitizenRequest.created_at >= dt.datetime.combine(filters.since, dt.time()))
        if filters.until:
            conditions.append(CitizenRequest.created_at < dt.datetime.combine(filters.until + dt.timedelta(days=1), dt.time()))
        if filters.assigned == "none":
            conditions.append(CitizenRequest.assigned_to.is_(None))
        elif filters.assigned.isdigit():
            conditions.append(CitizenRequest.assigned_to == int(filters.assigned))
        if filters.reference:
            conditions.append(CitizenRequest.reference.contains(filters.reference, autoescape=True))
        if conditions:
            query = query.where(and_(*conditions))
        with self.session() as s:
            return list(s.execute(
                query.order_by(CitizenRequest.created_at.desc(), CitizenRequest.id.desc()).limit(limit)
            ).scalars())

    def assign(self, request_id: int, agent_id: int | None, by_agent: int) -> bool:
        now = utcnow()
        with self.session() as s:
            request = s.get(CitizenRequest, request_id)
            if request is None:
                return False
            old = request.assigned_to
            if old == agent_id:
                return True
            changed = s.execute(
                update(CitizenRequest).where(
                    CitizenRequest.id == request_id,
                    CitizenRequest.assigned_to.is_(None) if old is None else CitizenRequest.assigned_to == old,
                ).values(assigned_to=agent_id, updated_at=now).execution_options(synchronize_session=False)
            ).rowcount
            if changed != 1:
                return False
            s.add(RequestEvent(request_id=request_id, at=now, agent_id=by_agent, kind="assigned",
                               old_value=str(old) if old else None, new_value=str(agent_id) if agent_id else None))
            return True

    def change_status(
        self, request_id: int, expected: str, status: str, by_agent: int, message: str, citizen_text: str,
    ) -> RequestNotification | None:
        """Moves the request from `expected` to `status`; queues `citizen_text` for the
        citizen if the request still has a conversation. Raises RequestError if the
        request changed meanwhile or `status` is unknown."""
        if status not in REQUEST_STATUSES:
            raise RequestError("Statut inconnu.")
        if status == expected:
            raise RequestError("La demande a déjà ce statut.")
        now = utcnow()
        with self.session() as s:
            changed = s.execute(
                update(CitizenRequest).where(CitizenRequest.id == request_id, CitizenRequest.status == expected)
                .values(status=status, updated_at=now).execution_options(synchronize_session=False)
            ).rowcount
            if changed != 1:
                raise RequestError("Le statut de cette demande a changé entre-temps : rechargez la page.")
            request = s.get(CitizenRequest, request_id)
            event = RequestEvent(request_id=request_id, at=now, agent_id=by_agent, kind="status",
                                 old_value=expected, new_value=status, comment=message[:2000] or None)
            s.add(event)
            s.flush()
            notification = RequestNotification(
                request_id=request_id, event_id=event.id, conversation_id=request.conversation_id,
                channel=request.channel, text=citizen_text, created_at=now, attempts=0,
                status="pending" if request.conversation_id else "not_delivered",
                reason=None if request.conversation_id else
                ("anonymised" if request.anonymised_at else "no_conversation"),
                next_try_at=now,
            )
            s.add(notification)
            s.flush()
            return notification

    def history(self, request_id: int) -> list[RequestEvent]:
        with self.session() as s:
            return list(s.execute(
                select(RequestEvent).where(RequestEvent.request_id == request_id).order_by(RequestEvent.id)
            ).scalars())

    def notifications(self, request_id: int) -> list[RequestNotification]:
        with self.session() as s:
            return list(s.execute(
                select(RequestNotification).where(RequestNotification.request_id == request_id)
                .order_by(RequestNotification.id)
            ).scalars())

    def last_notifications(self, request_ids: Iterable[int]) -> dict[int, RequestNotification]:
        ids = list(request_ids)
        if not ids:
            return {}
        with self.session() as s:
            rows = s.execute(
                select(RequestNotification).where(RequestNotification.request_id.in_(ids))
                .order_by(RequestNotification.id)
            ).scalars().all()
        return {n.request_id: n for n in rows}

    # Notifications ----------------------------------------------------------------------
    def notification(self, notification_id: int) -> RequestNotification | None:
        with self.session() as s:
            return s.get(RequestNotification, notification_id)

    def due_notifications(self, limit: int = 50) -> list[RequestNotification]:
        """Pending ones, and failed ones whose next try has come."""
        now = utcnow()
        with self.session() as s:
            return list(s.execute(
                select(RequestNotification).where(
                    or_(RequestNotification.status == "pending",
                        # failed: time to retry · sending: a console died while sending it
                        and_(RequestNotification.status.in_(("failed", "sending")),
                             RequestNotification.next_try_at <= now)),
                    RequestNotification.conversation_id.is_not(None),
                ).order_by(RequestNotification.id).limit(limit)
            ).scalars())

    def take_notification(self, notification: RequestNotification) -> bool:
        """Claims a due notification for one sender (another console may try at once)."""
        with self.session() as s:
            return s.execute(
                update(RequestNotification).where(
                    RequestNotification.id == notification.id,
                    RequestNotification.status == notification.status,
                    RequestNotification.attempts == notification.attempts,
                ).values(status="sending", attempts=notification.attempts + 1,
                         next_try_at=utcnow() + dt.timedelta(seconds=SENDING_TIMEOUT))
                .execution_options(synchronize_session=False)
            ).rowcount == 1

    def record_delivery(self, notification_id: int, status: str, reason: str | None = None,
                        detail: str | None = None) -> None:
        now = utcnow()
        values: dict[str, Any] = {"status": status, "reason": reason, "detail": (detail or "")[:1000] or None}
        if status == "sent":
            values["sent_at"] = now
        with self.session() as s:
            notification = s.get(RequestNotification, notification_id)
            if notification is None:
                return
            if status == "failed":
                if notification.attempts >= MAX_NOTIFICATION_ATTEMPTS:
                    values["status"] = "not_delivered"
                else:
                    values["next_try_at"] = now + dt.timedelta(seconds=min(3600, 5 * 2 ** notification.attempts))
            s.execute(
                update(RequestNotification).where(RequestNotification.id == notification_id).values(**values)
                .execution_options(synchronize_session=False)
            )

    # CSV ----------------------------------------------------------------------------------
    def csv_export(self, requests: list[CitizenRequest], agent_names: dict[int, str], local: Any) -> str:
        """Semicolon-separated UTF-8 with a BOM (opens as is in French spreadsheet software);
        cells that a spreadsheet would run as formulas are prefixed with a quote."""
        out = io.StringIO()
        out.write("\ufeff")
        writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
        writer.writerow([
            "Référence", "Type", "Catégorie", "Statut", "Déposée le", "Mise à jour", "Échéance", "Lieu",
            "Latitude", "Longitude", "Description", "Photos", "Canal", "Assignée à", "Contact", "Anonymisée",
        ])
        for r in requests:
            writer.writerow([_cell(v) for v in (
                r.reference, catalog.KIND_LABELS.get(r.kind, r.kind), catalog.category_label(r.kind, r.category),
                catalog.STATUS_LABELS.get(r.status, r.status), local(r.created_at), local(r.updated_at),
                local(r.due_at) if r.due_at else "", r.place, "" if r.latitude is None else f"{r.latitude:.6f}",
                "" if r.longitude is None else f"{r.longitude:.6f}", r.description, len(photos_of(r)), r.channel,
                agent_names.get(r.assigned_to, "") if r.assigned_to else "", r.contact or "",
                "oui" if r.anonymised_at else "non",
            )])
        return out.getvalue()


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(CSV_FORMULA_START) else text


@lru_cache(maxsize=8)
def _migrated(url: str) -> bool:
    upgrade(url)
    return True


def get_request_service(url: str | None = None) -> RequestService:
    """The service for the configured database, its schema brought up to date once."""
    url = url or get_settings().database_url
    _migrated(url)
    return RequestService(url)
