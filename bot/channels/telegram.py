"""`telegram`: the Telegram connector (a thin layer over Rasa's, which is not usable as is).

Rasa 3.6's own `telegram` channel hard-codes api.telegram.org, calls `getMe` on every
update instead of authenticating it, re-processes Telegram's redeliveries, answers only
after full processing (Telegram then redelivers), sends callback payloads longer than
64 bytes (rejected), never answers callback queries and calls `setWebhook` through
`asyncio.run` inside the running server. This one:

- authenticates every webhook with the secret Telegram echoes in
  `X-Telegram-Bot-Api-Secret-Token` (403 otherwise, and 403 while it is unset);
- acknowledges at once and processes in the background, in order per chat, ignoring
  redeliveries of an `update_id`; every citizen message goes through the safety net;
- sends plain text (no parse mode: nothing a citizen or an answer writes is markup),
  split under 4096 characters, buttons as an inline keyboard, and retries `429`
  (after `retry_after`) and `5xx` before logging the message as lost;
- registers its webhook (with the secret) when the server starts.

Environment: GUICHET_TELEGRAM_TOKEN, GUICHET_TELEGRAM_WEBHOOK_SECRET,
GUICHET_TELEGRAM_WEBHOOK_URL, GUICHET_TELEGRAM_API_URL (see `.env.example`).

POST /webhooks/telegram/webhook   (Telegram's Update objects)
GET  /webhooks/telegram/          health
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, TypeVar

from aiogram import Bot
from aiogram.bot.api import TelegramAPIServer
from aiogram.utils import exceptions as tg
from rasa.core.channels.channel import InputChannel, UserMessage
from rasa.core.channels.telegram import TelegramInput, TelegramOutput
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.channels.inbox import inbox_for
from bot.channels.safety import handle_with_safety_net, prepare_text
from bot.channels.telegram_updates import (
    BUTTON,
    IGNORED,
    MEDIA,
    CallbackPayloads,
    Inbound,
    NotAnUpdate,
    chat_id_of,
    inline_keyboard,
    parse_update,
    split_text,
)
from bot.channels.webhook_tools import SeenIds, SenderRateLimit
from bot.settings import Settings, get_settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# Telegram's rule for `secret_token` (setWebhook).
SECRET_FORMAT = re.compile(r"[A-Za-z0-9_-]{1,256}")
ALLOWED_UPDATES = ["message", "edited_message", "callback_query"]
MAX_ATTEMPTS = 4
# A longer flood wait is not waited for: the message is logged as lost.
MAX_RETRY_AFTER = 60.0

MEDIA_REPLY = (
    "Je ne peux lire que les messages écrits. Posez votre question en quelques mots, "
    "ou écrivez « agent » pour parler à une personne."
)
EMPTY_REPLY = "Votre message est vide. Posez votre question en quelques mots."
STALE_BUTTON_REPLY = "Ce bouton n'est plus disponible. Posez votre question en quelques mots."
BUTTONS_TEXT = "Que souhaitez-vous faire ?"


class GuichetTelegramOutput(TelegramOutput):
    """Rasa's Telegram output on a configurable Bot API server, with retries."""

    @classmethod
    def name(cls) -> str:
        return "telegram"

    def __init__(self, access_token: str, api_url: str, payloads: CallbackPayloads | None = None) -> None:
        Bot.__init__(self, access_token, server=TelegramAPIServer.from_base(api_url), timeout=30)
        self.payloads = payloads or CallbackPayloads()

    async def _call(self, what: str, call: Callable[[], Awaitable[T]]) -> T | None:
        """Runs one Bot API call; retries flood waits and server errors; never raises."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return await call()
            except tg.RetryAfter as error:
                wait = float(error.timeout)
                if wait > MAX_RETRY_AFTER or attempt == MAX_ATTEMPTS:
                    logger.error("Telegram %s lost: flood control asks to wait %.0f s", what, wait)
                    return None
                logger.warning("Telegram %s: flood control, retrying in %.0f s", what, wait)
                await asyncio.sleep(wait)
            except (tg.NetworkError, tg.RestartingTelegram, asyncio.TimeoutError) as error:
                if not self._retry(what, error, attempt):
                    return None
                await asyncio.sleep(2 ** (attempt - 1))
            except tg.TelegramAPIError as error:
                # aiogram raises the bare class for 5xx; its subclasses mean 4xx, where
                # retrying cannot help (bad request, bot blocked by the citizen…).
                if type(error) is not tg.TelegramAPIError:
                    logger.error("Telegram %s refused: %s", what, error)
                    return None
                if not self._retry(what, error, attempt):
                    return None
                await asyncio.sleep(2 ** (attempt - 1))
            except Exception:  # noqa: BLE001 - a send failure must not break the conversation
                logger.exception("Telegram %s failed", what)
                return None
        return None

    @staticmethod
    def _retry(what: str, error: BaseException, attempt: int) -> bool:
        if attempt == MAX_ATTEMPTS:
            logger.error("Telegram %s lost after %d attempts: %s", what, attempt, error or type(error).__name__)
            return False
        logger.warning("Telegram %s failed (%s), retrying", what, error or type(error).__name__)
        return True

    async def _send(self, recipient_id: str, text: str, reply_markup: dict[str, Any] | None = None) -> None:
        chat_id = chat_id_of(recipient_id)
        await self._call(
            f"sendMessage to chat {chat_id}",
            lambda: self.send_message(
                chat_id, text, reply_markup=reply_markup, disable_web_page_preview=True
            ),
        )

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        for part in split_text(text):
            await self._send(recipient_id, part)

    async def send_text_with_buttons(
        self, recipient_id: str, text: str, buttons: list[dict[str, Any]], **kwargs: Any
    ) -> None:
        parts = split_text(text) or [BUTTONS_TEXT]
        for part in parts[:-1]:
            await self._send(recipient_id, part)
        await self._send(recipient_id, parts[-1], inline_keyboard(buttons, self.payloads))

    async def send_quick_replies(
        self, recipient_id: str, text: str, quick_replies: list[dict[str, Any]], **kwargs: Any
    ) -> None:
        await self.send_text_with_buttons(recipient_id, text, quick_replies, **kwargs)

    async def send_image_url(self, recipient_id: str, image: str, **kwargs: Any) -> None:
        chat_id = chat_id_of(recipient_id)
        await self._call(f"sendPhoto to chat {chat_id}", lambda: self.send_photo(chat_id, image))

    async def send_custom_json(self, recipient_id: str, json_message: dict[str, Any], **kwargs: Any) -> None:
        await self._call(
            "custom message", lambda: TelegramOutput.send_custom_json(self, chat_id_of(recipient_id), json_message)
        )

    async def answer_callback(self, callback_query_id: str) -> None:
        if callback_query_id:
            await self._call("answerCallbackQuery", lambda: self.answer_callback_query(callback_query_id))

    async def typing(self, recipient_id: str) -> None:
        """Shows "typing…" while Rasa works (best effort, no retry)."""
        try:
            await self.send_chat_action(chat_id_of(recipient_id), "typing")
        except Exception as error:  # noqa: BLE001 - cosmetic only
            logger.debug("sendChatAction failed: %s", error)

    async def close_session(self) -> None:
        # Not `Bot.close()`: aiogram deprecates it, the name being a Bot API method.
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def register_webhook(self, url: str, secret: str) -> bool:
        """`setWebhook` with the secret token (aiogram 2.15 predates that parameter)."""
        payload = {"url": url, "secret_token": secret, "allowed_updates": json.dumps(ALLOWED_UPDATES)}
        result = await self._call("setWebhook", lambda: self.request("setWebhook", payload))
        return result is True


class GuichetTelegramInput(TelegramInput):
    """Telegram webhook; configured from the environment only (no secret in YAML)."""

    @classmethod
    def name(cls) -> str:
        return "telegram"

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> InputChannel:
        if credentials:
            logger.warning("telegram: credentials.yml values are ignored; use GUICHET_TELEGRAM_* variables")
        return cls()

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        super().__init__(self.settings.telegram_token, None, self.settings.telegram_webhook_url, debug_mode=False)
        self.payloads = CallbackPayloads()
        self.seen = SeenIds(redis_url=self.settings.redis_url, namespace="telegram")
        self.inbox = inbox_for("telegram", self.settings)
        self._app: Any = None
        self.limit = SenderRateLimit(self.settings.sender_burst, self.settings.sender_per_minute, "telegram")
        self._output: GuichetTelegramOutput | None = None
        self._problem = self._configuration_problem()
        if self._problem:
            logger.warning("telegram channel disabled: %s; its webhook answers 403", self._problem)

    def _configuration_problem(self) -> str:
        if not self.settings.telegram_token:
            return "GUICHET_TELEGRAM_TOKEN is not set"
        if not self.settings.telegram_webhook_secret:
            return "GUICHET_TELEGRAM_WEBHOOK_SECRET is not set"
        if not SECRET_FORMAT.fullmatch(self.settings.telegram_webhook_secret):
            return "GUICHET_TELEGRAM_WEBHOOK_SECRET must be 1-256 characters among A-Z a-z 0-9 _ -"
        try:
            self._output = GuichetTelegramOutput(
                self.settings.telegram_token, self.settings.telegram_api_url, self.payloads
            )
        except tg.ValidationError:
            return "GUICHET_TELEGRAM_TOKEN is not a bot token (expected '<digits>:<secret>')"
        return ""

    def get_output_channel(self) -> GuichetTelegramOutput | None:  # type: ignore[override]
        """The output used by Rasa's HTTP API (`output_channel=telegram`), e.g. for agents."""
        return self._output

    def _authentic(self, request: Request) -> bool:
        header = request.headers.get(SECRET_HEADER, "")
        return hmac.compare_digest(header.encode(), self.settings.telegram_webhook_secret.encode())

    async def _process(
        self, inbound: Inbound, on_new_message: Callable[[UserMessage], Awaitable[Any]], agent: Any
    ) -> None:
        out = self._output
        assert out is not None
        if inbound.kind == BUTTON:
            await out.answer_callback(inbound.callback_query_id)
        if inbound.kind == MEDIA:
            await out.send_text_message(inbound.sender_id, MEDIA_REPLY)
            return
        metadata = dict(inbound.metadata)
        text = prepare_text(inbound.text, metadata)
        if not text:
            reply = STALE_BUTTON_REPLY if inbound.kind == BUTTON else EMPTY_REPLY
            await out.send_text_message(inbound.sender_id, reply)
            return
        await out.typing(inbound.sender_id)
        message = UserMessage(text, out, inbound.sender_id, input_channel=self.name(), metadata=metadata)
        await handle_with_safety_net(on_new_message, message, agent)

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        webhook = Blueprint("guichet_telegram_webhook", __name__)
        self.inbox.on("update", lambda data: self._process(
            Inbound(**data), on_new_message, getattr(getattr(self._app, "ctx", None), "agent", None)))

        @webhook.listener("after_server_start")
        async def register(app: Any, loop: Any) -> None:
            self._app = app
            if not self._problem:
                self.inbox.start()
            if self._output and self.settings.telegram_webhook_url:
                loop.create_task(self._register_webhook())

        @webhook.listener("before_server_stop")
        async def close(app: Any, loop: Any) -> None:
            await self.inbox.stop(timeout=10)
            if self._output:
                await self._output.close_session()

        @webhook.route("/", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            return response.json({"status": "ok" if not self._problem else "disabled"})

        @webhook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            if self._problem:
                logger.error("telegram: update refused, the channel is not configured (%s)", self._problem)
                return response.json({"error": "channel not configured"}, status=403)
            if not self._authentic(request):
                logger.warning("telegram: update refused (missing or wrong %s header)", SECRET_HEADER)
                return response.json({"error": "forbidden"}, status=403)
            try:
                inbound = parse_update(json.loads(request.body or b"null"), self.payloads)
            except (ValueError, NotAnUpdate) as error:
                logger.warning("telegram: malformed update refused: %s", error)
                return response.json({"error": f"not a Telegram update: {error}"}, status=400)
            if await self.seen.seen_before(str(inbound.update_id)):
                logger.info("telegram: update %s delivered again, ignored", inbound.update_id)
                return response.json({"status": "duplicate"})
            if inbound.kind == IGNORED:
                logger.info("telegram: update %s ignored (%s)", inbound.update_id, inbound.reason)
                return response.json({"status": "ignored"})
            if not self.limit.allow(inbound.sender_id):
                logger.warning("telegram: update %s dropped (over the per-sender limit)", inbound.update_id)
                return response.json({"status": "rate_limited"})
            self._app = self._app or request.app
            await self.inbox.submit(inbound.sender_id, "update", asdict(inbound))
            return response.json({"status": "accepted"})

        return webhook

    async def _register_webhook(self) -> None:
        assert self._output is not None
        url = self.settings.telegram_webhook_url
        if await self._output.register_webhook(url, self.settings.telegram_webhook_secret):
            logger.info("telegram: webhook registered at %s", url)
        else:
            logger.error("telegram: could not register the webhook at %s (see the errors above)", url)
