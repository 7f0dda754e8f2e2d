"""A local Telegram Bot API: the methods the connector calls, and a citizen's Telegram app.

Facts implemented (core.telegram.org/bots/api, checked in 2026; error texts as the real
API returns them, quoted in public bug reports of Telegram client libraries):

- Requests: `POST <base>/bot<TOKEN>/<method>`; method names are case-insensitive;
  parameters in the query string, `application/x-www-form-urlencoded`,
  `multipart/form-data` or JSON; objects (reply_markup, allowed_updates) are
  JSON-serialised strings in forms.
- Answers: `{"ok": true, "result": …}` or `{"ok": false, "error_code": 400,
  "description": "Bad Request: …"}`, with `"parameters": {"retry_after": N}` on
  `429 Too Many Requests: retry after N`. Wrong token: `401 Unauthorized`; unknown
  method: `404 Not Found`.
- `getMe` → User (`is_bot`, `username`…). `sendMessage`: `chat_id`, `text` 1-4096
  characters (UTF-16 units) after entity parsing (`message text is empty`,
  `message is too long`), `reply_markup` an InlineKeyboardMarkup whose buttons have a
  `text` and exactly one action, `callback_data` 1-64 bytes (`BUTTON_DATA_INVALID`);
  → the sent Message. A chat that never talked to the bot: `400 chat not found`; a
  citizen who blocked it: `403 Forbidden: bot was blocked by the user`.
- `answerCallbackQuery`: a query id the bot received, answered once, `text` 0-200
  characters; otherwise `query is too old and response timeout expired or query ID is
  invalid`. `sendChatAction`: `chat_id`, `action` (`typing`…) → True.
- `setWebhook`: `url` (HTTPS; empty removes it), `secret_token` 1-256 of
  `A-Za-z0-9_-`, `allowed_updates` → True, "Webhook was set". `getWebhookInfo`,
  `deleteWebhook`.
- Webhook delivery: `POST <url>` with the JSON `Update`, header
  `X-Telegram-Bot-Api-Secret-Token: <secret_token>`; any non-2xx answer is retried.
- Update shapes: `{"update_id", "message": {"message_id", "from", "chat": {"id",
  "type": "private", …}, "date", "text"}}`, `edited_message` (+ `edit_date`),
  `callback_query: {"id", "from", "message": <the bot's message, with its
  reply_markup>, "chat_instance", "data"}`.

Local-only relaxation: webhook URLs on 127.0.0.1 may be plain HTTP (`allow_http=True`).
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import requests
from aiohttp import web

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
TEXT_LIMIT = 4096
CALLBACK_DATA_LIMIT = 64
SECRET_FORMAT = re.compile(r"[A-Za-z0-9_-]{1,256}")
CHAT_ACTIONS = {
    "typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
    "upload_document", "choose_sticker", "find_location", "record_video_note", "upload_video_note",
}
BUTTON_ACTIONS = {
    "url", "callback_data", "web_app", "login_url", "switch_inline_query",
    "switch_inline_query_current_chat", "switch_inline_query_chosen_chat", "copy_text",
    "callback_game", "pay",
}


class ApiError(Exception):
    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status, self.description, self.retry_after = status, description, retry_after


def bad_request(detail: str) -> ApiError:
    return ApiError(400, f"Bad Request: {detail}")


@dataclass
class Fault:
    """An injected failure, served to the next `times` calls of `method` (any if None)."""

    status: int = 500
    description: str = "Internal Server Error"
    retry_after: int | None = None
    method: str | None = "sendMessage"
    times: int = 1


@dataclass
class Call:
    """Every Bot API request received, accepted or not."""

    method: str
    params: dict[str, Any]
    status: int
    description: str = ""


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@dataclass
class TelegramSimulator:
    token: str = field(default_factory=lambda: f"{secrets.randbelow(9 * 10**9) + 10**9}:{secrets.token_urlsafe(26)}")
    bot_username: str = "MairieBelleriveBot"
    allow_http: bool = True

    def __post_init__(self) -> None:
        self.bot_id = int(self.token.split(":", 1)[0])
        self.calls: list[Call] = []
        self.sent: dict[int, list[dict[str, Any]]] = {}
        self.faults: deque[Fault] = deque()
        self.webhook: dict[str, Any] = {"url": "", "secret_token": "", "allowed_updates": None}
        self.webhook_responses: list[int] = []
        self.chats: dict[int, dict[str, Any]] = {}
        self.blocked: set[int] = set()
        self.open_queries: dict[str, int] = {}
        self.answered_queries: list[str] = []
        self._next_update = secrets.randbelow(10**8) + 10**8
        self._next_message = 1
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ------------------------------------------------------------------ server
    @property
    def url(self) -> str:
        """The Bot API base URL the connector is configured with."""
        return f"http://127.0.0.1:{self.port}"

    def env(self, webhook_url: str, secret: str) -> dict[str, str]:
        """The connector's environment for this simulator."""
        return {
            "GUICHET_TELEGRAM_TOKEN": self.token,
            "GUICHET_TELEGRAM_WEBHOOK_SECRET": secret,
            "GUICHET_TELEGRAM_API_URL": self.url,
            "GUICHET_TELEGRAM_WEBHOOK_URL": webhook_url,
        }

    def start(self) -> TelegramSimulator:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start())
            ready.set()
            self._loop.run_forever()

        threading.Thread(target=run, name="telegram-api-simulator", daemon=True).start()
        if not ready.wait(10):
            raise RuntimeError("the Telegram simulator did not start")
        return self

    async def _start(self) -> None:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        if self._loop and self._runner:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def _take_fault(self, method: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.method is None or fault.method.lower() == method.lower():
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    @staticmethod
    async def _params(request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                body = await request.json()
                if not isinstance(body, dict):
                    raise bad_request("parameters must be a JSON object")
                params.update(body)
            else:
                params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        return params

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params: dict[str, Any] = {}
        try:
            if request.match_info["token"] != self.token:
                raise ApiError(401, "Unauthorized")
            params = await self._params(request)
            fault = self._take_fault(method)
            if fault:
                raise ApiError(fault.status, fault.description, fault.retry_after)
            handler = getattr(self, "_m_" + method.lower(), None)
            if handler is None:
                raise ApiError(404, "Not Found")
            result, description = handler(params)
        except ApiError as error:
            body: dict[str, Any] = {"ok": False, "error_code": error.status, "description": error.description}
            if error.retry_after is not None:
                body["parameters"] = {"retry_after": error.retry_after}
            self._record(Call(method, params, error.status, error.description))
            return web.json_response(body, status=error.status)
        except (ValueError, TypeError) as error:
            self._record(Call(method, params, 400, str(error)))
            return web.json_response({"ok": False, "error_code": 400, "description": f"Bad Request: {error}"}, status=400)
        self._record(Call(method, params, 200))
        answer: dict[str, Any] = {"ok": True, "result": result}
        if description:
            answer["description"] = description
        return web.json_response(answer)

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    # ------------------------------------------------------------------ methods
    def _bot_user(self) -> dict[str, Any]:
        return {"id": self.bot_id, "is_bot": True, "first_name": "Mairie de Bellerive", "username": self.bot_username}

    def _m_getme(self, params: dict[str, Any]) -> tuple[Any, str]:
        user = {**self._bot_user(), "can_join_groups": False, "can_read_all_group_messages": False,
                "supports_inline_queries": False}
        return user, ""

    def _chat_of(self, params: dict[str, Any]) -> int:
        raw = params.get("chat_id")
        if raw in (None, ""):
            raise bad_request("chat_id is empty")
        try:
            chat_id = int(raw)
        except (TypeError, ValueError):
            raise bad_request("chat not found") from None
        if chat_id not in self.chats:
            raise bad_request("chat not found")
        if chat_id in self.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat_id

    @staticmethod
    def _json_param(params: dict[str, Any], name: str) -> Any:
        value = params.get(name)
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise bad_request(f"can't parse {name} JSON object") from None
        return value

    @staticmethod
    def _check_markup(markup: Any) -> None:
        if not isinstance(markup, dict):
            raise bad_request("object expected as reply markup")
        rows = markup.get("inline_keyboard")
        if "inline_keyboard" not in markup:
            return  # reply keyboards etc.: not used by the connector, accepted as is
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise bad_request("field \"inline_keyboard\" of the InlineKeyboardMarkup should be an Array of Arrays")
        for row in rows:
            for button in row:
                if not isinstance(button, dict) or not isinstance(button.get("text"), str) or not button["text"]:
                    raise bad_request("can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard")
                actions = BUTTON_ACTIONS & set(button)
                if len(actions) != 1:
                    raise bad_request("can't parse inline keyboard button: exactly one of the optional fields must be used")
                if "callback_data" in button:
                    data = button["callback_data"]
                    if not isinstance(data, str) or not 1 <= len(data.encode()) <= CALLBACK_DATA_LIMIT:
                        raise bad_request("BUTTON_DATA_INVALID")
                if "url" in button and urlparse(str(button["url"])).scheme not in ("http", "https", "tg"):
                    raise bad_request("inline keyboard button URL is invalid")

    def _m_sendmessage(self, params: dict[str, Any]) -> tuple[Any, str]:
        chat_id = self._chat_of(params)
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise bad_request("message text is empty")
        if utf16_len(text) > TEXT_LIMIT:
            raise bad_request("message is too long")
        if params.get("parse_mode") not in (None, "", "HTML", "Markdown", "MarkdownV2"):
            raise bad_request("unsupported parse_mode")
        markup = self._json_param(params, "reply_markup")
        if markup is not None:
            self._check_markup(markup)
        with self._lock:
            message = {
                "message_id": self._next_message,
                "from": self._bot_user(),
                "chat": self.chats[chat_id],
                "date": int(time.time()),
                "text": text,
            }
            self._next_message += 1
            if markup and markup.get("inline_keyboard"):
                message["reply_markup"] = markup
            self.sent.setdefault(chat_id, []).append({**message, "parse_mode": params.get("parse_mode")})
        return message, ""

    def _m_answercallbackquery(self, params: dict[str, Any]) -> tuple[Any, str]:
        query_id = str(params.get("callback_query_id") or "")
        text = params.get("text") or ""
        if len(str(text)) > 200:
            raise bad_request("MESSAGE_TOO_LONG")
        with self._lock:
            if query_id not in self.open_queries:
                raise bad_request("query is too old and response timeout expired or query ID is invalid")
            del self.open_queries[query_id]
            self.answered_queries.append(query_id)
        return True, ""

    def _m_sendchataction(self, params: dict[str, Any]) -> tuple[Any, str]:
        self._chat_of(params)
        if params.get("action") not in CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        return True, ""

    def _m_setwebhook(self, params: dict[str, Any]) -> tuple[Any, str]:
        url = str(params.get("url") or "")
        secret = params.get("secret_token")
        if secret is not None and not SECRET_FORMAT.fullmatch(str(secret)):
            raise bad_request("secret token contains unallowed characters")
        allowed = self._json_param(params, "allowed_updates")
        if url:
            parsed = urlparse(url)
            local = parsed.hostname in ("127.0.0.1", "localhost") and self.allow_http
            if parsed.scheme != "https" and not (local and parsed.scheme == "http"):
                raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        with self._lock:
            self.webhook = {"url": url, "secret_token": str(secret or ""), "allowed_updates": allowed}
        return True, "Webhook was set" if url else "Webhook was deleted"

    def _m_deletewebhook(self, params: dict[str, Any]) -> tuple[Any, str]:
        with self._lock:
            self.webhook = {"url": "", "secret_token": "", "allowed_updates": None}
        return True, "Webhook was deleted"

    def _m_getwebhookinfo(self, params: dict[str, Any]) -> tuple[Any, str]:
        info: dict[str, Any] = {"url": self.webhook["url"], "has_custom_certificate": False, "pending_update_count": 0}
        if self.webhook["allowed_updates"]:
            info["allowed_updates"] = self.webhook["allowed_updates"]
        return info, ""

    # ------------------------------------------------------------ what was sent
    def messages_to(self, chat_id: int) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.sent.get(chat_id, []))

    def calls_of(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method.lower() == method.lower()]

    def wait_for(self, chat_id: int, count: int = 1, timeout: float = 90) -> list[dict[str, Any]]:
        """The messages sent to `chat_id` once there are at least `count`."""
        self.wait_until(
            lambda: len(self.messages_to(chat_id)) >= count, timeout,
            lambda: f"chat {chat_id} got {self.messages_to(chat_id)}, expected {count} message(s)",
        )
        return self.messages_to(chat_id)

    def wait_until(self, condition: Any, timeout: float = 90, explain: Any = None) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.05)
        raise AssertionError(explain() if explain else "condition not met")

    # ------------------------------------------------------------------ citizen
    def chat(self, chat_id: int | None = None, first_name: str = "Camille") -> int:
        """A private chat with a citizen who pressed START (the bot may write to it)."""
        chat_id = chat_id or secrets.randbelow(9 * 10**9) + 10**9
        with self._lock:
            self.chats[chat_id] = {"id": chat_id, "first_name": first_name, "type": "private"}
        return chat_id

    def _user(self, chat_id: int) -> dict[str, Any]:
        chat = self.chats.get(chat_id, {"first_name": "Camille"})
        return {"id": chat_id, "is_bot": False, "first_name": chat["first_name"], "language_code": "fr"}

    def _update_id(self) -> int:
        with self._lock:
            self._next_update += 1
            return self._next_update

    def message_update(self, chat_id: int, text: str | None = None, *, edited: bool = False, **content: Any) -> dict[str, Any]:
        """An Update carrying a citizen's message (`text`, or other content: photo, sticker…)."""
        with self._lock:
            message_id = self._next_message
            self._next_message += 1
        message: dict[str, Any] = {
            "message_id": message_id,
            "from": self._user(chat_id),
            "chat": self.chats.get(chat_id, {"id": chat_id, "type": "private", "first_name": "Camille"}),
            "date": int(time.time()),
            **content,
        }
        if text is not None:
            message["text"] = text
            if text.startswith("/"):
                command = text.split()[0]
                message["entities"] = [{"offset": 0, "length": utf16_len(command), "type": "bot_command"}]
        if edited:
            message["edit_date"] = int(time.time())
        return {"update_id": self._update_id(), "edited_message" if edited else "message": message}

    def callback_update(self, chat_id: int, message: dict[str, Any], callback_data: str) -> dict[str, Any]:
        """An Update for a press on an inline button of `message` (a message the bot sent)."""
        query_id = str(secrets.randbelow(10**18))
        with self._lock:
            self.open_queries[query_id] = chat_id
        original = {k: v for k, v in message.items() if k != "parse_mode"}
        query = {
            "id": query_id, "from": self._user(chat_id), "message": original,
            "chat_instance": str(-chat_id), "data": callback_data,
        }
        return {"update_id": self._update_id(), "callback_query": query}

    def deliver(self, update: Any, *, secret: str | None = None, raw: bytes | None = None) -> requests.Response:
        """POSTs an update to the registered webhook, with its secret token (or `secret`)."""
        url = self.webhook["url"]
        assert url, "no webhook registered (setWebhook was never called)"
        headers = {"Content-Type": "application/json"}
        token = self.webhook["secret_token"] if secret is None else secret
        if token:
            headers[SECRET_HEADER] = token
        body = raw if raw is not None else json.dumps(update, ensure_ascii=False).encode()
        response = requests.post(url, data=body, headers=headers, timeout=30)
        self.webhook_responses.append(response.status_code)
        return response

    def say(self, chat_id: int, text: str, **kwargs: Any) -> dict[str, Any]:
        """The citizen sends `text`; returns the delivered update."""
        update = self.message_update(chat_id, text, **kwargs)
        response = self.deliver(update)
        assert response.status_code == 200, response.text
        return update

    def press(self, chat_id: int, message: dict[str, Any], title: str) -> dict[str, Any]:
        """The citizen presses the inline button titled `title` under `message`."""
        for row in message.get("reply_markup", {}).get("inline_keyboard", []):
            for button in row:
                if button["text"] == title:
                    update = self.callback_update(chat_id, message, button["callback_data"])
                    response = self.deliver(update)
                    assert response.status_code == 200, response.text
                    return update
        raise AssertionError(f"no button {title!r} under {message.get('text')!r}")
