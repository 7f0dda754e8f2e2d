"""One broadcast message to one citizen, per platform, within the platform's rules.

Each sender uses the channel's own client and message builders, with a single attempt per
call (the worker keeps the retry state in the database, so that a crash loses nothing):

| platform  | inside the window        | outside                                        |
|-----------|--------------------------|------------------------------------------------|
| Messenger | `messaging_type: UPDATE` | the citizen's notification-messages token, if  |
|           |                          | they opted in (≤ 1 per 48 h), else skipped     |
| Instagram | `messaging_type: UPDATE` | skipped (only a human agent may write)         |
| WhatsApp  | text / buttons           | the approved alert template if configured,     |
|           |                          | else skipped ("template required")             |
| Telegram  | any time (until the citizen blocks the bot)                               |
| web chat  | skipped: no way to reach a visitor who left the page                      |

Every message carries the delivery's key (Messenger `metadata`, WhatsApp
`biz_opaque_callback_data`) so that the platform's echo/status webhooks prove it went out.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import func, select

from bot.broadcast.content import Content
from bot.broadcast.windows import last_user_message
from bot.channels import meta_send, meta_window, receipts
from bot.channels import whatsapp_format as fmt
from bot.channels.graph_client import GraphApiError, GraphClient
from bot.channels.whatsapp_delivery import WINDOW_MARGIN, WINDOW_SECONDS
from bot.channels.whatsapp_sender import RETRYABLE as WHATSAPP_RETRYABLE
from bot.channels.whatsapp_sender import SendFailed, WhatsAppSender
from bot.db import session_scope, utcnow
from bot.db.outreach_models import Delivery
from bot.settings import Settings

logger = logging.getLogger(__name__)

# Meta's notification messages: at most 1 per subscriber per 48 hours (since 2025-09-01).
NOTIFICATION_COOLDOWN = dt.timedelta(hours=48)
RATE_LIMIT_CODES = frozenset({4, 17, 613, 80006, 130429, 80007, 131056})


@dataclass(frozen=True)
class Job:
    delivery_id: int
    channel: str
    recipient: str
    content: Content

    @property
    def key(self) -> str:
        return receipts.delivery_key(self.delivery_id)


@dataclass(frozen=True)
class Outcome:
    status: str  # sent · failed · skipped · retry
    reason: str = ""
    detail: str = ""
    route: str = ""
    external_id: str = ""
    retry_after: float | None = None
    slow_down: bool = False  # a rate limit: the whole platform waits


def sent(route: str, external_id: str = "") -> Outcome:
    return Outcome("sent", route=route, external_id=external_id)


def skipped(reason: str, detail: str = "") -> Outcome:
    return Outcome("skipped", reason, detail)


def failed(reason: str, detail: str = "", route: str = "") -> Outcome:
    return Outcome("failed", reason, detail[:1000], route)


def retry(reason: str, detail: str = "", retry_after: float | None = None, slow_down: bool = False,
          route: str = "") -> Outcome:
    return Outcome("retry", reason, detail[:1000], route, retry_after=retry_after, slow_down=slow_down)


@dataclass(frozen=True)
class Plan:
    """How a delivery will go out (recorded before the call), and the call itself."""

    route: str
    run: Callable[[Any], Awaitable[Outcome]]  # takes the platform's rate gate


class Sender(Protocol):
    async def plan(self, job: Job) -> Plan | Outcome: ...

    async def close(self) -> None: ...


def _graph_failure(error: GraphApiError, route: str) -> Outcome:
    """Meta's Send API error codes (bot/channels/graph_client.py) as a delivery outcome."""
    if error.retryable:
        slow = error.code in RATE_LIMIT_CODES or error.status == 429
        return retry("rate_limited" if slow else "temporary_error", str(error), error.retry_after, slow, route)
    if error.is_window_closed:
        return failed("window_closed", str(error), route)
    if error.is_invalid_token:
        return failed("token_invalid", str(error), route)
    if error.code == 551:
        return failed("unavailable", str(error), route)
    if error.code is not None and (error.code == 230 or 200 <= error.code < 300):
        return failed("not_allowed", str(error), route)
    if route == "notification_token":
        return failed("notification_refused", str(error), route)
    return failed("rejected", str(error), route)


class MetaBroadcastSender:
    """Messenger and Instagram through the Send API (the channels' GraphClient)."""

    def __init__(self, settings: Settings, channel: str) -> None:
        self.settings = settings
        self.channel = channel
        token = settings.messenger_page_token if channel == "messenger" else settings.instagram_access_token
        self.limits = meta_send.MESSENGER if channel == "messenger" else meta_send.INSTAGRAM
        self.client = GraphClient(
            token, base_url=settings.graph_api_url, version=settings.graph_api_version,
            timeout=settings.graph_timeout, max_attempts=1, name=f"broadcast-{channel}",
        )

    def messages(self, job: Job) -> list[dict[str, Any]]:
        content = job.content
        buttons = [*content.buttons, *content.link_buttons]
        if buttons:
            messages = meta_send.button_messages(content.text, buttons, self.limits)
        else:
            messages = meta_send.text_messages(content.text, self.limits)
        return [{**message, "metadata": job.key} for message in messages]

    def _token_used_recently(self, psid: str) -> bool:
        since = utcnow() - NOTIFICATION_COOLDOWN
        with session_scope(self.settings.database_url) as s:
            return bool(s.execute(
                select(func.count()).select_from(Delivery).where(
                    Delivery.channel == self.channel, Delivery.recipient == psid,
                    Delivery.route == "notification_token", Delivery.status == "sent", Delivery.sent_at >= since)
            ).scalar_one())

    async def _route(self, job: Job) -> tuple[dict[str, Any], str, str] | Outcome:
        """(recipient, messaging type, route) allowed for this citizen now, or why not."""
        url = self.settings.database_url
        last = await asyncio.to_thread(last_user_message, url, self.channel, job.recipient)
        permission = meta_window.decide(last, time.time(), human_agent=False, proactive=True)
        if permission.allowed:
            return {"id": job.recipient}, permission.messaging_type or meta_window.UPDATE, "standard"
        if self.channel != "messenger":
            return skipped("window_closed", "Instagram: plus de 24 h depuis le dernier message de l'usager")
        token = (await asyncio.to_thread(receipts.active_tokens, url, [job.recipient])).get(job.recipient)
        if not token:
            return skipped("window_closed_no_optin",
                           "plus de 24 h depuis le dernier message, et pas d'accord pour les notifications")
        if await asyncio.to_thread(self._token_used_recently, job.recipient):
            return skipped("notification_cooldown", "Meta : une notification au plus par 48 h et par personne")
        return {"notification_messages_token": token}, "", "notification_token"

    async def plan(self, job: Job) -> Plan | Outcome:
        if not self.client.access_token:
            return skipped("channel_not_configured", f"{self.channel} : jeton de la Page absent")
        route = await self._route(job)
        if isinstance(route, Outcome):
            return route
        recipient, messaging_type, name = route

        async def run(rate: Any) -> Outcome:
            message_id = ""
            for message in self.messages(job):
                body: dict[str, Any] = {"recipient": recipient, "message": message}
                if messaging_type:
                    body["messaging_type"] = messaging_type
                await rate.wait()
                try:
                    answer = await self.client.post("me/messages", body,
                                                    context=f"broadcast delivery {job.delivery_id}")
                except GraphApiError as error:
                    return _graph_failure(error, name)
                message_id = message_id or str((answer or {}).get("message_id") or "")
            return sent(name, message_id)

        return Plan(name, run)

    async def close(self) -> None:
        await self.client.close()


class WhatsAppBroadcastSender:
    """WhatsApp Cloud API through the channel's WhatsAppSender and message builders."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sender = WhatsAppSender(
            settings.whatsapp_api_url, settings.whatsapp_api_version, settings.whatsapp_phone_number_id,
            settings.whatsapp_access_token, timeout=settings.whatsapp_api_timeout, max_attempts=1,
        )

    def template(self, to: str, job: Job) -> dict[str, Any]:
        return {
            "messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "template",
            "template": {
                "name": self.settings.whatsapp_alert_template,
                "language": {"code": self.settings.whatsapp_alert_template_language},
                "components": [{"type": "body", "parameters": [{"type": "text", "text": job.content.one_line()}]}],
            },
        }

    def messages(self, to: str, job: Job) -> list[dict[str, Any]]:
        content = job.content
        buttons = [*content.buttons, *content.link_buttons]
        if buttons:
            return fmt.buttons_messages(to, content.text, buttons)
        return fmt.text_messages(to, content.text)

    async def plan(self, job: Job) -> Plan | Outcome:
        if not (self.settings.whatsapp_access_token and self.settings.whatsapp_phone_number_id):
            return skipped("channel_not_configured", "WhatsApp : jeton ou numéro non configuré")
        to = job.recipient.removeprefix("whatsapp:")
        last = await asyncio.to_thread(last_user_message, self.settings.database_url, "whatsapp", job.recipient)
        if last is not None and time.time() - last < WINDOW_SECONDS - WINDOW_MARGIN:
            bodies, route = self.messages(to, job), "standard"
        elif self.settings.whatsapp_alert_template:
            bodies, route = [self.template(to, job)], "template"
        else:
            return skipped("template_required",
                           "plus de 24 h depuis le dernier message : WhatsApp n'accepte qu'un modèle approuvé")

        async def run(rate: Any) -> Outcome:
            wamid = ""
            for body in bodies:
                body["biz_opaque_callback_data"] = job.key
                await rate.wait()
                try:
                    wamid = wamid or await self.sender.send(body)
                except SendFailed as failure:
                    return self._failure(failure, route)
            return sent(route, wamid)

        return Plan(route, run)

    @staticmethod
    def _failure(failure: SendFailed, route: str) -> Outcome:
        detail = f"code {failure.code}: {failure.detail}"
        if failure.code in WHATSAPP_RETRYABLE or failure.reason == "unreachable":
            return retry("rate_limited" if failure.code in RATE_LIMIT_CODES else "temporary_error", detail,
                         slow_down=failure.code in RATE_LIMIT_CODES, route=route)
        if failure.reason == "not_configured":
            return skipped("channel_not_configured", failure.detail)
        if failure.code is not None and 132000 <= failure.code < 133000:
            return failed("template_rejected", detail, route)
        if failure.reason in ("window_closed", "undeliverable", "token_invalid"):
            return failed(failure.reason, detail, route)
        return failed("rejected", detail, route)

    async def close(self) -> None:
        await self.sender.close()


class TelegramBroadcastSender:
    """Telegram through the connector's aiogram output (no messaging window)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.output: Any = None
        if settings.telegram_token:
            from bot.channels.telegram import GuichetTelegramOutput

            try:
                self.output = GuichetTelegramOutput(settings.telegram_token, settings.telegram_api_url)
            except Exception:  # noqa: BLE001 - a malformed token: nothing can be sent
                logger.exception("telegram: invalid bot token, broadcasts skipped")

    async def plan(self, job: Job) -> Plan | Outcome:
        if self.output is None:
            return skipped("channel_not_configured", "Telegram : jeton du robot absent")
        return Plan("standard", lambda rate: self._send(job, rate))

    async def _send(self, job: Job, rate: Any) -> Outcome:
        from aiogram.utils import exceptions as tg

        from bot.channels.telegram_updates import CallbackPayloads, chat_id_of, inline_keyboard, split_text

        content = job.content
        parts = split_text(content.text)
        markup = inline_keyboard([*content.buttons, *content.link_buttons], CallbackPayloads())
        chat_id = chat_id_of(job.recipient)
        message_id = ""
        for index, part in enumerate(parts):
            await rate.wait()
            try:
                answer = await self.output.send_message(
                    chat_id, part, reply_markup=markup if index == len(parts) - 1 and markup["inline_keyboard"] else None,
                    disable_web_page_preview=True)
            except tg.RetryAfter as error:
                return retry("rate_limited", str(error), float(error.timeout), True, "standard")
            except (tg.BotBlocked, tg.UserDeactivated, tg.BotKicked) as error:
                return failed("blocked", str(error), "standard")
            except (tg.ChatNotFound, tg.Unauthorized) as error:
                return failed("unavailable", str(error), "standard")
            except (tg.NetworkError, tg.RestartingTelegram, asyncio.TimeoutError) as error:
                return retry("temporary_error", repr(error), route="standard")
            except tg.TelegramAPIError as error:
                if type(error) is tg.TelegramAPIError:  # 5xx
                    return retry("temporary_error", str(error), route="standard")
                return failed("rejected", str(error), "standard")
            message_id = message_id or str(getattr(answer, "message_id", "") or "")
        return sent("standard", message_id)

    async def close(self) -> None:
        if self.output is not None:
            await self.output.close_session()


class NoPush:
    """Channels where the commune cannot start a conversation (the website's chat, api)."""

    async def plan(self, job: Job) -> Plan | Outcome:
        return skipped("channel_cannot_push", f"{job.channel} : impossible d'écrire à l'usager en dehors d'une conversation")

    async def close(self) -> None:
        return None


# Channels whose platform sends us receipts of our messages (see bot/channels/receipts.py).
RECEIPT_CHANNELS = frozenset({"messenger", "instagram", "whatsapp"})


def senders_for(settings: Settings) -> dict[str, Sender]:
    return {
        "messenger": MetaBroadcastSender(settings, "messenger"),
        "instagram": MetaBroadcastSender(settings, "instagram"),
        "whatsapp": WhatsAppBroadcastSender(settings),
        "telegram": TelegramBroadcastSender(settings),
    }
