"""`donnees`: the page behind a citizen's "mes données" link, on the Rasa server's public
address (Rasa serves public HTTP only through its input channels' blueprints).

GET /webhooks/donnees/<token>               -> the citizen's data as a page (French)
GET /webhooks/donnees/<token>/fichier.json  -> the same data as a JSON file

The token is the only key (bot/privacy/export_links.py): an unknown or expired one gets
a 404 page saying how to ask for a new link; a database that is down, a 503 page. The
channel never hands a message to Rasa, and never logs a token.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from rasa.core.channels.channel import InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.commune import Commune, load_commune
from bot.privacy import export_page
from bot.privacy.data import export_conversation
from bot.privacy.export_links import conversation_for
from bot.privacy.notice import dpo_contact, privacy_link
from bot.settings import Settings, get_settings

logger = logging.getLogger(__name__)
JSON_FILE = "fichier.json"


def _page(body: str, status: int) -> HTTPResponse:
    return response.html(body, status=status, headers=export_page.HEADERS)


class DataExportInput(InputChannel):
    @classmethod
    def name(cls) -> str:
        return "donnees"

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> InputChannel:
        return cls()

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        pages = Blueprint("guichet_data_export", __name__)

        async def _export(token: str, count: bool, settings: Settings,
                          commune: Commune) -> tuple[dict[str, Any], dt.datetime] | HTTPResponse:
            """The conversation's data and the link's expiry, or the error page to send."""
            try:
                link = await asyncio.to_thread(conversation_for, settings.database_url, token, None, count)
                if link is None:
                    return _page(export_page.render_unavailable(commune, expired=True), 404)
                return await asyncio.to_thread(export_conversation, settings.database_url, link[0]), link[1]
            except Exception:  # noqa: BLE001 - the database down: a clear page, the link stays valid
                logger.exception("Data export unavailable")
                return _page(export_page.render_unavailable(commune, expired=False), 503)

        @pages.route("/<token>", methods=["GET"])
        async def page(request: Request, token: str) -> HTTPResponse:
            settings, commune = get_settings(), load_commune()
            found = await _export(token, False, settings, commune)
            if isinstance(found, HTTPResponse):
                return found
            data, expires_at = found
            return _page(export_page.render_page(
                data, commune, expires_at, settings.timezone, dpo_contact(commune), privacy_link(commune),
                data_file=f"{token}/{JSON_FILE}",
            ), 200)

        @pages.route(f"/<token>/{JSON_FILE}", methods=["GET"])
        async def data_file(request: Request, token: str) -> HTTPResponse:
            found = await _export(token, True, get_settings(), load_commune())
            if isinstance(found, HTTPResponse):
                return found
            return response.text(export_page.render_json(found[0]), content_type="application/json; charset=utf-8",
                                 headers={**export_page.HEADERS,
                                          "Content-Disposition": 'attachment; filename="mes-donnees.json"'})

        return pages
