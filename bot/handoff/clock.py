"""The local time of the commune, used for opening-hours decisions.

`GUICHET_NOW` (tests only) fixes that local time; database timestamps always use the real
UTC clock (`bot.db.utcnow`).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from bot.settings import Settings


def local_now(settings: Settings) -> dt.datetime:
    """Aware local datetime in the commune's time zone."""
    zone = ZoneInfo(settings.timezone)
    if settings.now_override:
        fixed = dt.datetime.fromisoformat(settings.now_override)
        return fixed.replace(tzinfo=zone) if fixed.tzinfo is None else fixed.astimezone(zone)
    return dt.datetime.now(zone)
