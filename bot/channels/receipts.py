"""What the Meta webhooks tell about messages the commune sent, kept for the broadcasts.

- Messenger notification-messages opt-ins (`messaging_optins`, `optin.type:
  "notification_messages"`): the citizen accepted to be written to outside the 24-hour
  window; the token (`notification_messages_token`) is what the Send API takes as
  `recipient` then. `notification_messages_status: "STOP NOTIFICATIONS"` / `"RESUME
  NOTIFICATIONS"` stop and resume it. Shape: Meta's messaging_optins webhook reference
  (copied in tests/simulators/graph_api.py).
- Delivery receipts: a broadcast message carries a key (`guichet:d<delivery id>`) in
  Messenger's `message.metadata` (echoed back in `message_echoes` webhooks) or WhatsApp's
  `biz_opaque_callback_data` (returned in status webhooks). A worker that crashed while
  a send was under way reads them to know whether it went out (bot/broadcast/worker.py).

Written by the channels in the Rasa server's process (these are transport facts, like a
PSID); read by bot.broadcast. Failures are logged, never raised to the webhook.
"""

from __future__ import annotations

import datetime as dt
import logging
from functools import lru_cache
from typing import Any

from sqlalchemy import select

from bot.db import session_scope, utcnow
from bot.db.migrate import upgrade
from bot.db.outreach_models import DeliveryReceipt, MessengerOptIn

logger = logging.getLogger(__name__)

KEY_PREFIX = "guichet:"
STOP = "STOP NOTIFICATIONS"
RESUME = "RESUME NOTIFICATIONS"


def delivery_key(delivery_id: int) -> str:
    return f"{KEY_PREFIX}d{delivery_id}"


def is_ours(key: Any) -> bool:
    return isinstance(key, str) and key.startswith(KEY_PREFIX) and len(key) <= 128


@lru_cache(maxsize=8)
def _migrated(url: str) -> bool:
    upgrade(url)
    return True


def _expiry(value: Any) -> dt.datetime | None:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        return None
    seconds = value / 1000 if value > 10**11 else value  # Meta's timestamps: ms or s
    try:
        return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).replace(tzinfo=None)
    except (OverflowError, OSError, ValueError):
        return None


def record_receipt(url: str, key: str, channel: str, event: str, external_id: str | None = None,
                   error_code: int | None = None, detail: str = "") -> None:
    if not is_ours(key):
        return
    try:
        _migrated(url)
        with session_scope(url) as s:
            s.add(DeliveryReceipt(key=key, channel=channel, event=event[:32], external_id=(external_id or "")[:255],
                                  error_code=error_code, detail=detail[:1000]))
    except Exception:  # noqa: BLE001 - a receipt lost only weakens the crash check
        logger.exception("%s: could not record the receipt %s (%s)", channel, key, event)


def receipts(url: str, keys: list[str]) -> dict[str, list[DeliveryReceipt]]:
    """The receipts of each key (oldest first)."""
    found: dict[str, list[DeliveryReceipt]] = {}
    if not keys:
        return found
    with session_scope(url) as s:
        rows = s.execute(
            select(DeliveryReceipt).where(DeliveryReceipt.key.in_(keys)).order_by(DeliveryReceipt.id)
        ).scalars().all()
    for row in rows:
        found.setdefault(row.key, []).append(row)
    return found


def record_optin(url: str, psid: str, details: dict[str, Any]) -> str | None:
    """Stores a notification-messages opt-in, stop or resume; returns what was done."""
    if details.get("type") != "notification_messages":
        logger.info("messenger: opt-in of type %r from %s ignored", details.get("type"), psid)
        return None
    page_id = str(details.get("page_id") or "")
    payload = str(details.get("payload") or "")
    token = str(details.get("notification_messages_token") or "")
    status = str(details.get("notification_messages_status") or "")
    try:
        _migrated(url)
        with session_scope(url) as s:
            row = s.execute(
                select(MessengerOptIn).where(MessengerOptIn.page_id == page_id, MessengerOptIn.psid == psid,
                                             MessengerOptIn.payload == payload)
            ).scalar_one_or_none()
            if row is None:
                row = MessengerOptIn(page_id=page_id, psid=psid, payload=payload)
                s.add(row)
            if token:
                row.token = token
            if status == STOP:
                row.status, done = "stopped", "stopped"
            elif token or status == RESUME:
                row.status, done = ("active", "resumed" if status == RESUME else "active")
                row.opted_in_at = row.opted_in_at if status == RESUME and row.opted_in_at else utcnow()
            else:
                logger.warning("messenger: opt-in from %s without token nor status ignored", psid)
                return None
            if details.get("title"):
                row.title = str(details["title"])[:128]
            row.expires_at = _expiry(details.get("token_expiry_timestamp")) or row.expires_at
            row.updated_at = utcnow()
    except Exception:  # noqa: BLE001 - never fail Meta's webhook
        logger.exception("messenger: could not record the notification opt-in of %s", psid)
        return None
    logger.info("messenger: notification messages %s for %s", done, psid)
    return done


def mark_optin_requested(url: str, page_id: str, psid: str, payload: str, title: str) -> None:
    _migrated(url)
    with session_scope(url) as s:
        row = s.execute(
            select(MessengerOptIn).where(MessengerOptIn.page_id == page_id, MessengerOptIn.psid == psid,
                                         MessengerOptIn.payload == payload)
        ).scalar_one_or_none()
        if row is None:
            s.add(MessengerOptIn(page_id=page_id, psid=psid, payload=payload, title=title, status="requested",
                                 requested_at=utcnow()))
        else:
            row.requested_at, row.updated_at = utcnow(), utcnow()


def optin_of(url: str, psid: str, payload: str | None = None) -> MessengerOptIn | None:
    """The citizen's opt-in (the active one first), or None."""
    _migrated(url)
    with session_scope(url) as s:
        query = select(MessengerOptIn).where(MessengerOptIn.psid == psid)
        if payload is not None:
            query = query.where(MessengerOptIn.payload == payload)
        rows = s.execute(query.order_by(MessengerOptIn.updated_at.desc())).scalars().all()
    rows.sort(key=lambda r: r.status != "active")
    return rows[0] if rows else None


def active_tokens(url: str, psids: list[str]) -> dict[str, str]:
    """psid -> an active notification token (not expired), for a batch of citizens."""
    if not psids:
        return {}
    now = utcnow()
    with session_scope(url) as s:
        rows = s.execute(
            select(MessengerOptIn.psid, MessengerOptIn.token, MessengerOptIn.expires_at)
            .where(MessengerOptIn.psid.in_(psids), MessengerOptIn.status == "active", MessengerOptIn.token.is_not(None))
        ).all()
    return {psid: token for psid, token, expires in rows if token and (expires is None or expires > now)}
