"""The privacy notice shown at a citizen's first contact, and the facts it quotes.

commune.yml, key `confidentialite`: `page` (the commune's personal data page) and
`contact` (the data protection officer's address); the site and the town hall's e-mail
are used when they are missing. "First contact" means no earlier message of this
conversation in Rasa's tracker store (so it is shown again after an erasure).
"""

from __future__ import annotations

import logging

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from bot.commune import Commune
from bot.db import get_engine
from bot.handoff.tracker_feed import EVENTS
from bot.privacy import messages

logger = logging.getLogger(__name__)


def _privacy_facts(commune: Commune) -> dict:
    facts = commune.facts.get("confidentialite")
    return facts if isinstance(facts, dict) else {}


def privacy_link(commune: Commune) -> str:
    mairie = commune.facts.get("mairie") or {}
    return str(_privacy_facts(commune).get("page") or mairie.get("site_web") or commune.phone)


def dpo_contact(commune: Commune) -> str:
    mairie = commune.facts.get("mairie") or {}
    return str(_privacy_facts(commune).get("contact") or mairie.get("courriel") or commune.phone)


def retention_text(days: float) -> str:
    if days >= 365 and days % 365 == 0:
        years = int(days // 365)
        return "un an" if years == 1 else f"{years} ans"
    if days >= 30 and days % 30 == 0:
        return f"{int(days // 30)} mois"
    return "1 jour" if days == 1 else f"{days:g} jours"


def notice(commune: Commune, retention_days: float) -> str:
    return messages.NOTICE.format(retention=retention_text(retention_days), privacy=privacy_link(commune))


def is_first_contact(url: str, conversation_id: str) -> bool:
    """No earlier citizen message of this conversation is stored (unknown: not first)."""
    try:
        with get_engine(url).connect() as connection:
            count = connection.execute(
                select(func.count(EVENTS.c.id)).where(
                    EVENTS.c.sender_id == conversation_id, EVENTS.c.type_name == "user")
            ).scalar_one()
    except SQLAlchemyError as exc:
        if "events" in str(exc):
            return True  # Rasa has not stored any conversation in this database yet
        logger.warning("Tracker store unreadable for the privacy notice: %s", exc)
        return False
    return count == 0


def validity_text(hours: float) -> str:
    """ "24 heures", "2 jours", "30 minutes"."""
    if hours >= 48 and hours % 24 == 0:
        return f"{int(hours // 24)} jours"
    if hours >= 1:
        return f"{hours:g} heure" + ("s" if hours >= 2 else "")
    return f"{round(hours * 60)} minutes"
