"""The privacy background jobs, run by the console (any number of consoles may run them):
due erasures (tracker events of citizens who asked), and the retention purge every
`purge_interval_hours`. The purge's last run is stored in the database, so restarts and
several consoles never run it more often than asked."""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from bot.db import WatchState, session_scope
from bot.privacy.data import process_due_erasures, purge_expired
from bot.settings import Settings

logger = logging.getLogger(__name__)

LAST_PURGE_KEY = "privacy_last_purge"


def claim_purge(url: str, interval_seconds: float, now: float | None = None) -> bool:
    """True for exactly one caller once the interval since the last purge is over."""
    now = time.time() if now is None else now
    with session_scope(url) as s:
        row = s.execute(select(WatchState).where(WatchState.key == LAST_PURGE_KEY)).scalar_one_or_none()
        if row is None:
            try:
                with s.begin_nested():
                    s.add(WatchState(key=LAST_PURGE_KEY, value=int(now)))
                return True
            except IntegrityError:
                return False
        if now - row.value < interval_seconds:
            return False
        return s.execute(
            update(WatchState).where(WatchState.key == LAST_PURGE_KEY, WatchState.value == row.value)
            .values(value=int(now)).execution_options(synchronize_session=False)
        ).rowcount == 1


class PrivacyJobs:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def tick(self) -> None:
        url = self.settings.database_url
        await asyncio.to_thread(process_due_erasures, url)
        hours = self.settings.purge_interval_hours
        if hours > 0 and await asyncio.to_thread(claim_purge, url, hours * 3600):
            await asyncio.to_thread(purge_expired, url, self.settings.retention_days)
