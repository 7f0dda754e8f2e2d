"""`api`: a REST channel for trusted back ends and tests, behind a bearer token.

Rasa's own `rest` channel has no authentication and must never be exposed; this one
refuses every request unless `GUICHET_API_TOKEN` is set and presented.

POST /webhooks/api/webhook  {"sender": "<id>", "message": "<text>", "metadata": {...}}
Authorization: Bearer <GUICHET_API_TOKEN>  ->  200 [bot messages]
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.channels.safety import handle_with_safety_net, prepare_text
from bot.channels.webhook_tools import bearer_ok
from bot.settings import get_settings

logger = logging.getLogger(__name__)

MAX_SENDER_CHARS = 128


def _error(status: int, message: str) -> HTTPResponse:
    return response.json({"error": message}, status=status)


class ApiInput(InputChannel):
    @classmethod
    def name(cls) -> str:
        return "api"

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> InputChannel:
        return cls()

    def _authorized(self, request: Request) -> bool:
        return bearer_ok(request.headers.get("Authorization"), get_settings().api_token)

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        webhook = Blueprint("guichet_api_webhook", __name__)

        @webhook.route("/", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @webhook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            if not self._authorized(request):
                logger.warning("api channel: request refused (missing or wrong bearer token)")
                return _error(401, "missing or invalid bearer token")
            try:
                body = request.json
            except Exception:  # noqa: BLE001 - sanic raises its own error type
                body = None
            if not isinstance(body, dict):
                return _error(400, "body must be a JSON object")
            sender, text = body.get("sender"), body.get("message")
            metadata = body.get("metadata") or {}
            if not isinstance(sender, str) or not 0 < len(sender) <= MAX_SENDER_CHARS:
                return _error(400, f"'sender' must be a string of 1 to {MAX_SENDER_CHARS} characters")
            if not isinstance(text, str) or not isinstance(metadata, dict):
                return _error(400, "'message' must be a string and 'metadata' an object")
            text = prepare_text(text, metadata)
            if not text:
                return _error(400, "'message' is empty")
            collector = CollectingOutputChannel()
            message = UserMessage(
                text, collector, sender, input_channel=self.name(), metadata=metadata
            )
            await handle_with_safety_net(
                on_new_message, message, getattr(request.app.ctx, "agent", None)
            )
            return response.json(collector.messages)

        return webhook
