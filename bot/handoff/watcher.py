"""The handoff's background job, run by the console (any number of consoles may run it).

Every `interval` seconds it:
- reads the tracker events written since its stored cursor and publishes the messages of
  conversations in handoff (the agent sees the citizen's words within a second); a
  citizen's "annuler" ends the escalation;
- notices escalations changed by others (the action server queued one, another console
  claimed one) and publishes a queue update;
- expires queued escalations nobody claimed in time;
- gives conversations back to the bot (resume + action_listen + a message) for every
  ended escalation that has not been resumed yet: this retries until Rasa answers, so a
  restart of Rasa or of the console loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bot import replies
from bot.commune import load_commune
from bot.db import Escalation
from bot.handoff import messages
from bot.handoff.commands import is_cancel
from bot.handoff.rasa_api import RasaApi, RasaUnavailable
from bot.handoff.service import (
    CANCELLED_BY_CITIZEN,
    EXPIRED,
    HANDED_BACK,
    RESTARTED,
    HandoffService,
)
from bot.handoff.tracker_feed import TrackerEvent, TrackerFeed

logger = logging.getLogger(__name__)

CURSOR_KEY = "tracker_cursor"
CURSOR_SAVE_INTERVAL = 2.0
Publish = Callable[[dict[str, Any]], Awaitable[None] | None]


def callback_button() -> dict[str, str]:
    return {"title": messages.CALLBACK_BUTTON, "payload": "/request_callback"}


class HandoffWatcher:
    def __init__(
        self, service: HandoffService, feed: TrackerFeed, rasa: RasaApi, publish: Publish,
        interval: float = 0.2, expiry_interval: float = 5.0,
    ) -> None:
        self.service = service
        self.feed = feed
        self.rasa = rasa
        self.publish = publish
        self.interval = interval
        self.expiry_interval = expiry_interval
        self.cursor: int | None = None
        self._version: tuple | None = None
        self._last_expiry = 0.0
        self._last_resume_try = 0.0
        self._saved_cursor: int | None = None
        self._last_save = 0.0

    async def _emit(self, payload: dict[str, Any]) -> None:
        result = self.publish(payload)
        if asyncio.iscoroutine(result):
            await result

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the job must survive a DB or Rasa hiccup
                logger.exception("Handoff watcher tick failed")
                await asyncio.sleep(1)
            await asyncio.sleep(self.interval)

    async def tick(self) -> None:
        if self.cursor is None:
            stored = await asyncio.to_thread(self.service.read_counter, CURSOR_KEY)
            # First start ever: begin at the end (older conversations were never escalated here).
            self.cursor = stored if stored is not None else await asyncio.to_thread(self.feed.last_id)
        events = await asyncio.to_thread(self.feed.events_after, self.cursor)
        queue_changed = False
        if events:
            active = await asyncio.to_thread(self.service.active_by_conversation)
            for event in events:
                escalation = active.get(event.conversation_id)
                if escalation is not None:
                    await self._on_event(escalation, event)
                    # The queue shows what waiting citizens wrote: refresh it.
                    queue_changed |= escalation.status == "queued" and event.author is not None
            self.cursor = events[-1].id
        now = time.monotonic()
        if self.cursor != self._saved_cursor and now - self._last_save >= CURSOR_SAVE_INTERVAL:
            # A restart hint only (events seen twice are harmless): saved at most every
            # CURSOR_SAVE_INTERVAL s, to keep writes off the tracker store's SQLite file.
            await asyncio.to_thread(self.service.write_counter, CURSOR_KEY, self.cursor)
            self._saved_cursor, self._last_save = self.cursor, now
        if now - self._last_expiry >= self.expiry_interval:
            self._last_expiry = now
            for escalation in await asyncio.to_thread(self.service.expire_due):
                logger.info("Escalation %s expired unclaimed", escalation.id)
        await self.resume_pending()
        version = await asyncio.to_thread(self.service.queue_version)
        if version != self._version or queue_changed:
            self._version = version
            await self._emit({"type": "queue"})

    async def _on_event(self, escalation: Escalation, event: TrackerEvent) -> None:
        if event.author is not None and (event.text or event.buttons):
            await self._emit({"type": "message", "escalation_id": escalation.id, **event.as_message()})
        if event.type in ("restart", "resume", "session_started") and not await asyncio.to_thread(
            self.feed.paused_after, event.conversation_id, event.id
        ):
            # Restarted, resumed outside the console, or a new session (which unpauses), after
            # the handoff paused the conversation (its first message starts a session too).
            if await asyncio.to_thread(self.service.end_silently, escalation.id, RESTARTED):
                await self._emit({"type": "escalation", "escalation_id": escalation.id, "status": "returned"})
        elif is_cancel(event):
            ended = await asyncio.to_thread(self.service.cancel_by_citizen, event.conversation_id)
            if ended is not None:
                logger.info("Citizen left escalation %s (annuler)", ended.id)
                await self._emit({"type": "escalation", "escalation_id": ended.id, "status": "returned",
                                  "outcome": CANCELLED_BY_CITIZEN})
                await self.resume_pending()

    def _resume_message(self, escalation: Escalation) -> tuple[str, list[dict[str, str]], list[dict]]:
        commune = load_commune()
        if escalation.outcome == EXPIRED:
            ticket = self.service.ticket_for_escalation(escalation.id) or self.service.open_ticket(
                escalation.conversation_id, escalation.channel, escalation.reason,
                escalation.reason_detail, escalation.id,
            )
            text = replies.render(messages.EXPIRED.replace("{reference}", ticket.reference), commune)
            slot = {"event": "slot", "name": "handoff_reference", "value": ticket.reference}
            return text, [callback_button()], [slot]
        if escalation.outcome == CANCELLED_BY_CITIZEN:
            return messages.CANCELLED, [], []
        if escalation.outcome == HANDED_BACK:
            return messages.HANDED_BACK, [], []
        return messages.CLOSED, [], []

    async def resume_pending(self, force: bool = False) -> None:
        """Gives the bot back every ended conversation not resumed yet (retried each second)."""
        now = time.monotonic()
        if not force and now - self._last_resume_try < 1.0:
            return
        self._last_resume_try = now
        for escalation in await asyncio.to_thread(self.service.pending_resumes):
            await self.resume(escalation)

    async def resume(self, escalation: Escalation) -> bool:
        if not await asyncio.to_thread(self.service.take_resume, escalation.id):
            return False  # another console (or an earlier call) did it
        try:
            text, buttons, extra = await asyncio.to_thread(self._resume_message, escalation)
            await self.rasa.append_events(
                escalation.conversation_id,
                [{"event": "resume"}, {"event": "action", "name": "action_listen"}, *extra,
                 {"event": "bot", "text": text, **({"data": {"buttons": buttons}} if buttons else {})}],
                escalation.channel,
            )
        except (RasaUnavailable, Exception) as exc:  # noqa: BLE001 - retried on the next tick
            logger.warning("Could not give conversation %s back to the bot: %s", escalation.conversation_id, exc)
            await asyncio.to_thread(self.service.release_resume, escalation.id)
            return False
        await self._emit({"type": "queue"})
        return True
