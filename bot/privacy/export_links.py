"""Download links for a citizen's own data ("mes données").

The chat answers "mes données" with a link `{public_url}/webhooks/donnees/{token}`:
`token` is 32 random bytes, of which only a SHA-256 is stored with the conversation id
and an expiry. Whoever holds the link sees that conversation's data until it expires, so
it is short-lived (`GUICHET_EXPORT_LINK_HOURS`, 24 h), never logged, and erased with the
conversation (the table has a `conversation_id` column: bot/privacy/data.py deletes it).

Functions are synchronous (SQLAlchemy); async callers run them in a thread.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets

from sqlalchemy import delete, select

from bot.db import session_scope, utcnow
from bot.db.migrate import ensure_upgraded
from bot.db.tickets import DataExportLink

TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{43}$")  # secrets.token_urlsafe(32)
PATH = "/webhooks/donnees"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def link_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}{PATH}/{token}"


def create_link(url: str, conversation_id: str, hours: float, now: dt.datetime | None = None) -> str:
    """A new token for the conversation's data; expired links are dropped on the way."""
    ensure_upgraded(url)
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    with session_scope(url) as s:
        s.execute(delete(DataExportLink).where(DataExportLink.expires_at < now)
                  .execution_options(synchronize_session=False))
        s.add(DataExportLink(token_hash=_hash(token), conversation_id=conversation_id, created_at=now,
                             expires_at=now + dt.timedelta(hours=hours)))
    return token


def conversation_for(url: str, token: str, now: dt.datetime | None = None,
                     count: bool = False) -> tuple[str, dt.datetime] | None:
    """The conversation a valid, unexpired token opens and the link's expiry (None if
    unknown or expired); `count` records a download."""
    if not TOKEN_PATTERN.match(token or ""):
        return None
    ensure_upgraded(url)
    with session_scope(url) as s:
        link = s.execute(select(DataExportLink).where(DataExportLink.token_hash == _hash(token))).scalar_one_or_none()
        if link is None or link.expires_at <= (now or utcnow()):
            return None
        if count:
            link.downloads += 1
        return link.conversation_id, link.expires_at
