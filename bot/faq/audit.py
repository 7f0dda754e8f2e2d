"""The FAQ audit log: who changed what, and when (table `guichet_faq_changes`)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.db import session_scope
from bot.db.faq_models import FaqChange

ACTION_LABELS = {
    "edit": "Modification",
    "add_topic": "Nouveau sujet",
    "remove_topic": "Sujet supprimé",
    "add_examples": "Exemples ajoutés",
    "import": "Import de tableur",
    "dismiss": "Questions écartées",
    "publish": "Publication",
    "rollback": "Retour à un modèle précédent",
}


@dataclass(frozen=True)
class Change:
    id: int
    at: dt.datetime
    actor: str
    action: str
    topic_id: str | None
    summary: str
    before: Any
    after: Any

    @property
    def action_label(self) -> str:
        return ACTION_LABELS.get(self.action, self.action)


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _change(row: FaqChange) -> Change:
    def load(text: str | None) -> Any:
        return json.loads(text) if text else None

    return Change(row.id, row.at, row.actor, row.action, row.topic_id, row.summary, load(row.before), load(row.after))


def record(
    session: Session, actor: str, action: str, summary: str,
    topic_id: str | None = None, before: Any = None, after: Any = None,
) -> FaqChange:
    """Adds one entry in `session` (committed with the change it describes)."""
    row = FaqChange(actor=actor, action=action, topic_id=topic_id, summary=summary,
                    before=_json(before), after=_json(after))
    session.add(row)
    session.flush()
    return row


def history(url: str, topic_id: str | None = None, limit: int = 100, offset: int = 0) -> list[Change]:
    """Latest changes first, of one topic or of everything."""
    statement = select(FaqChange).order_by(FaqChange.id.desc()).limit(limit).offset(offset)
    if topic_id:
        statement = statement.where(FaqChange.topic_id == topic_id)
    with session_scope(url) as session:
        return [_change(row) for row in session.execute(statement).scalars()]


def last_changes(url: str) -> dict[str, Change]:
    """The latest change of each topic (for "modifié le … par …")."""
    latest = (
        select(func.max(FaqChange.id).label("id")).where(FaqChange.topic_id.is_not(None))
        .group_by(FaqChange.topic_id).subquery()
    )
    with session_scope(url) as session:
        rows = session.execute(select(FaqChange).join(latest, FaqChange.id == latest.c.id)).scalars()
        return {row.topic_id: _change(row) for row in rows}


def last_change(url: str, topic_id: str) -> Change | None:
    changes = history(url, topic_id, limit=1)
    return changes[0] if changes else None
