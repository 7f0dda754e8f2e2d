"""Tells citizens that their request changed, on the channel they wrote from.

The message is a `bot` event appended through Rasa's HTTP API with the request's channel
as `output_channel` (bot/handoff/rasa_api.py): Rasa logs it in the conversation and the
channel sends it, within the platform's rules. The channels do not send what the rules
forbid (Messenger/Instagram outside the 24-hour window, WhatsApp outside its customer
service window…): they record why, readable at `GET /webhooks/<channel>/deliveries`. The
notifier reads that record right after the send and keeps the reason on the request, so
staff see it. Rasa unreachable: the notification is retried later (bot/reports/service.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import quote

import aiohttp

from bot.db.tickets import RequestNotification
from bot.handoff.rasa_api import RasaApi, RasaUnavailable
from bot.reports.service import RequestService

logger = logging.getLogger(__name__)

# Channels whose output can send a message the citizen did not just ask for.
PUSH_CHANNELS = ("messenger", "instagram", "whatsapp", "telegram", "webchat")
# Channels that record undelivered messages (GET /webhooks/<channel>/deliveries).
DELIVERY_LOGS = ("messenger", "instagram", "whatsapp")
NOTIFICATION_KEY = "guichet_notification"


class Notifier:
    def __init__(self, service: RequestService, rasa: RasaApi, timeout: float = 10) -> None:
        self.service = service
        self.rasa = rasa
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def send_due(self) -> int:
        """Sends every due notification (pending, or failed and due for a retry)."""
        due = await asyncio.to_thread(self.service.due_notifications)
        for notification in due:
            await self.deliver(notification)
        return len(due)

    async def deliver(self, notification: RequestNotification) -> str:
        """Sends one notification; returns its new status ("" if another sender took it)."""
        if not notification.conversation_id:
            return notification.status
        if not await asyncio.to_thread(self.service.take_notification, notification):
            return ""
        status, reason, detail = await self._send(notification)
        await asyncio.to_thread(self.service.record_delivery, notification.id, status, reason, detail)
        log = logger.info if status == "sent" else logger.warning
        log("Request notification %s (request %s, %s): %s %s", notification.id, notification.request_id,
            notification.channel, status, reason or "")
        return status

    async def _send(self, notification: RequestNotification) -> tuple[str, str | None, str | None]:
        channel, conversation = notification.channel, str(notification.conversation_id)
        if channel not in PUSH_CHANNELS:
            return "not_delivered", "channel_cannot_push", f"canal {channel}"
        started = time.time()
        event = {
            "event": "bot", "text": notification.text,
            "metadata": {NOTIFICATION_KEY: True, "request_id": notification.request_id},
        }
        try:
            await self.rasa.append_events(conversation, [event], channel)
        except RasaUnavailable as exc:
            return "failed", "rasa_unreachable", str(exc)[:500]
        if channel in DELIVERY_LOGS:
            problem = await self._delivery_problem(channel, conversation, started)
            if problem is not None:
                return "not_delivered", str(problem.get("reason") or "failed")[:64], _detail(problem)
        return "sent", None, None

    async def _delivery_problem(self, channel: str, recipient: str, since: float) -> dict[str, Any] | None:
        """The failure the channel recorded for this send, if any."""
        url = f"{self.rasa.base_url}/webhooks/{channel}/deliveries?recipient={quote(recipient, safe='')}"
        try:
            async with aiohttp.ClientSession(timeout=self.timeout) as client:
                async with client.get(url, headers={"Authorization": f"Bearer {self.rasa.token}"}) as response:
                    if response.status != 200:
                        logger.warning("%s deliveries unreadable (HTTP %s): delivery assumed", channel, response.status)
                        return None
                    body = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            logger.warning("%s deliveries unreadable (%s): delivery assumed", channel, exc)
            return None
        if not isinstance(body, dict):
            return None
        # Messenger and Instagram list `undelivered`, WhatsApp `failures`.
        items = body.get("undelivered") or body.get("failures") or []
        recent = [i for i in items if isinstance(i, dict) and float(i.get("at") or 0) >= since - 1]
        return recent[-1] if recent else None


def _detail(problem: dict[str, Any]) -> str:
    parts = [str(problem.get("detail") or "")]
    if problem.get("code") is not None:
        parts.append(f"code {problem['code']}")
    return " · ".join(p for p in parts if p)[:1000]
