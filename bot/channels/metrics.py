"""`metrics`: Prometheus metrics of this Rasa server (bot/metrics.py).

GET /webhooks/metrics/  with `Authorization: Bearer <GUICHET_RASA_TOKEN>`  ->  text format

Refused (401) without the token, and when no token is set. The channel never hands a
message to Rasa.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from rasa.core.channels.channel import InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.channels.webhook_tools import bearer_ok
from bot.metrics import exposition
from bot.settings import get_settings


class MetricsInput(InputChannel):
    @classmethod
    def name(cls) -> str:
        return "metrics"

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> InputChannel:
        return cls()

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        metrics = Blueprint("guichet_metrics", __name__)

        @metrics.route("/", methods=["GET"])
        async def scrape(request: Request) -> HTTPResponse:
            if not bearer_ok(request.headers.get("Authorization"), get_settings().rasa_token):
                return response.json({"error": "missing or invalid bearer token"}, status=401)
            body, content_type = exposition()
            return response.raw(body, content_type=content_type)

        return metrics
