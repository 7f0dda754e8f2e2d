"""`webchat`: the website's chat over Socket.IO (a thin layer over Rasa's `socketio`).

Differences from Rasa 3.6's `socketio` channel:
- every message goes through the safety net (nobody is left in silence);
- the session lives on the server: the widget sends its session id when it connects
  (`auth`) and every message is attributed to that session, never to an id found in the
  message; a reload or a reconnection keeps the conversation, and the `history` event
  replays it from the tracker store. (Rasa's own handler forgets to await
  `enter_room` with python-socketio 5, which breaks its session persistence.)
- conversation ids are `web-<32 hex>`: a web client cannot address a conversation of
  another channel;
- Socket.IO connections are accepted from the assistant's own address and the origins
  of GUICHET_WEBCHAT_ORIGINS only;
- typed text starting with `/` is read as words, not as an intent; quick replies
  (flagged `quick_reply`) carry their payload;
- one bot text is one message (Rasa splits paragraphs into several).

It also serves the widget (`/webhooks/webchat/static/…`) and a demo page
(`/webhooks/webchat/demo`).

Events (client → server): `session_request` {}, `user_uttered` {"message", "quick_reply"?,
"metadata"?: {"display"}}. Server → client: `session_confirm` "<session id>",
`history` {"messages": [...]}, `bot_uttered` {"text", "quick_replies"?}, `guichet_error`
{"code", "message"}.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from rasa.core.channels.channel import InputChannel, UserMessage
from rasa.core.channels.socketio import SocketBlueprint, SocketIOInput, SocketIOOutput
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse
from socketio import AsyncRedisManager, AsyncServer

from bot.channels.safety import handle_with_safety_net, prepare_text
from bot.channels.webchat.transcript import DISPLAY_KEY, transcript
from bot.settings import Settings, get_settings

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
SENDER_PREFIX = "web-"
SESSION_FORMAT = re.compile(r"[0-9a-f]{32}")
MAX_DISPLAY_CHARS = 200
# Socket.IO packets larger than this are refused by the server (prepare_text cuts
# messages at 2000 characters anyway).
MAX_PACKET_BYTES = 64 * 1024

EMPTY_MESSAGE = "Votre message est vide. Écrivez votre question avant de l'envoyer."
SESSION_LOST = "La connexion a été réinitialisée. Merci de renvoyer votre message."
INVALID_MESSAGE = "Ce message n'a pas pu être lu. Merci de le renvoyer."

# The demo page allows nothing but its own server.
DEMO_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def sender_id(session_id: str) -> str:
    return SENDER_PREFIX + session_id


class WebchatOutput(SocketIOOutput):
    """Sends each bot text as one `bot_uttered` event, buttons as quick replies."""

    @classmethod
    def name(cls) -> str:
        return "webchat"

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        await self._send_message(recipient_id, {"text": text.strip()})

    async def send_text_with_buttons(
        self, recipient_id: str, text: str, buttons: list[dict[str, Any]], **kwargs: Any
    ) -> None:
        replies = [
            {"content_type": "text", "title": str(b["title"]), "payload": str(b.get("payload") or b["title"])}
            for b in buttons
            if b.get("title")
        ]
        await self._send_message(recipient_id, {"text": text.strip(), "quick_replies": replies})

    async def send_quick_replies(
        self, recipient_id: str, text: str, quick_replies: list[dict[str, Any]], **kwargs: Any
    ) -> None:
        await self.send_text_with_buttons(recipient_id, text, quick_replies)


class WebchatInput(SocketIOInput):
    @classmethod
    def name(cls) -> str:
        return "webchat"

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> InputChannel:
        return cls()

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__("user_uttered", "bot_uttered", None, True, "/socket.io")
        self.settings = settings or get_settings()
        self._app: Any = None

    def get_output_channel(self) -> WebchatOutput | None:  # type: ignore[override]
        """The output used by Rasa's HTTP API (`output_channel=webchat`), e.g. for agents."""
        return WebchatOutput(self.sio, self.bot_message_evt) if self.sio else None

    def _origin_allowed(self, origin: str | None, environ: dict[str, Any]) -> bool:
        if not origin:
            return True  # not a browser page (tests, tools): nothing to protect
        allowed = self.settings.webchat_origins
        if "*" in allowed or origin.rstrip("/") in allowed:
            return True
        host = environ.get("HTTP_X_FORWARDED_HOST") or environ.get("HTTP_HOST") or ""
        if urlparse(origin).netloc == host.split(",")[0].strip():
            return True
        logger.warning("webchat: connection from %s refused (not in GUICHET_WEBCHAT_ORIGINS)", origin)
        return False

    def _agent(self) -> Any:
        return getattr(getattr(self._app, "ctx", None), "agent", None)

    async def _history(self, sender: str) -> list[dict[str, Any]]:
        agent = self._agent()
        if agent is None:
            return []
        try:
            tracker = await agent.tracker_store.retrieve(sender)
        except Exception:  # noqa: BLE001 - a history is a comfort, not a necessity
            logger.exception("webchat: could not read the history of %s", sender)
            return []
        return transcript(tracker.events) if tracker else []

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        # Replicas of a cluster share Socket.IO rooms through Redis: whichever replica Rasa
        # handles an agent's message on, it reaches the replica holding the citizen's socket.
        redis_url = self.settings.redis_url
        sio = AsyncServer(
            async_mode="sanic",
            cors_allowed_origins=self._origin_allowed,
            max_http_buffer_size=MAX_PACKET_BYTES,
            client_manager=AsyncRedisManager(redis_url) if redis_url else None,
        )
        self.sio = sio
        webchat = SocketBlueprint(sio, self.socketio_path, "guichet_webchat", __name__)
        webchat.static("/static", str(STATIC_DIR), name="guichet_webchat_static")

        @webchat.listener("after_server_start")
        async def remember_app(app: Any, loop: Any) -> None:
            self._app = app

        @webchat.route("/", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @webchat.route("/demo", methods=["GET"])
        async def demo(request: Request) -> HTTPResponse:
            return await response.file(STATIC_DIR / "demo.html", headers=DEMO_HEADERS)

        async def error(sid: str, code: str, message: str) -> None:
            await sio.emit("guichet_error", {"code": code, "message": message}, to=sid)

        async def join(sid: str, session_id: str, resumed: bool) -> None:
            previous = (await sio.get_session(sid)).get("sender_id")
            if previous and previous != sender_id(session_id):
                await sio.leave_room(sid, previous)
            await sio.save_session(sid, {"sender_id": sender_id(session_id), "session_id": session_id, "resumed": resumed})
            await sio.enter_room(sid, sender_id(session_id))

        @sio.on("connect")
        async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
            wanted = auth.get("session_id") if isinstance(auth, dict) else None
            resumed = isinstance(wanted, str) and bool(SESSION_FORMAT.fullmatch(wanted))
            await join(sid, wanted if resumed else uuid.uuid4().hex, resumed)
            return True

        @sio.on("session_request")
        async def session_request(sid: str, data: Any = None) -> None:
            wanted = data.get("session_id") if isinstance(data, dict) else None
            if isinstance(wanted, str) and SESSION_FORMAT.fullmatch(wanted):
                await join(sid, wanted, True)
            session = await sio.get_session(sid)
            await sio.emit("session_confirm", session["session_id"], to=sid)
            history = await self._history(session["sender_id"]) if session.get("resumed") else []
            await sio.emit("history", {"messages": history}, to=sid)

        @sio.on(self.user_message_evt)
        async def handle_message(sid: str, data: Any = None) -> None:
            sender = (await sio.get_session(sid)).get("sender_id")
            if not sender:
                await error(sid, "session", SESSION_LOST)
                return
            if not isinstance(data, dict) or not isinstance(data.get("message"), str):
                logger.warning("webchat: malformed message from %s ignored", sender)
                await error(sid, "invalid", INVALID_MESSAGE)
                return
            raw_metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
            metadata: dict[str, Any] = {}
            display = raw_metadata.get(DISPLAY_KEY)
            if isinstance(display, str) and display.strip():
                metadata[DISPLAY_KEY] = display.strip()[:MAX_DISPLAY_CHARS]
            text = data["message"]
            if data.get("quick_reply") is not True and text.lstrip().startswith("/"):
                text = text.lstrip().lstrip("/")
            text = prepare_text(text, metadata)
            if not text:
                await error(sid, "empty", EMPTY_MESSAGE)
                return
            output = WebchatOutput(sio, self.bot_message_evt)
            message = UserMessage(text, output, sender, input_channel=self.name(), metadata=metadata)
            await handle_with_safety_net(on_new_message, message, self._agent())

        return webchat
