"""A local WhatsApp Cloud API: the send endpoint, and a citizen who sends signed webhooks.

The facts it implements (sources: Meta's docs, as gathered in late 2026; ids as in the
project's Meta reference notes):

Send endpoint [W5]: `POST https://graph.facebook.com/<VER>/<PHONE_NUMBER_ID>/messages`,
headers `Authorization: Bearer <TOKEN>` and `Content-Type: application/json`; body
`{"messaging_product":"whatsapp","recipient_type":"individual","to":"<PHONE>","type":"text",
"text":{"preview_url":false,"body":"<≤ 4096 chars>"}}`.
Success [R4][T3]: `{"messaging_product":"whatsapp","contacts":[{"input":"<to>","wa_id":"<id>"}],
"messages":[{"id":"wamid.…"}]}`.
- Reply buttons [W6][W11]: ≤ 3, `reply.title` ≤ 20 characters and unique, `reply.id` ≤ 256.
- List [W7][W11][T2]: ≤ 10 sections, ≤ 10 rows in all; row `id` ≤ 200, `title` ≤ 24,
  `description` ≤ 72; `action.button` ≤ 20; a section title is needed with > 1 section.
- Interactive `body.text` ≤ 1024 characters (SDK docs; not on Meta's page).
- Mark as read (+ typing indicator) [W9]: `{"messaging_product":"whatsapp","status":"read",
  "message_id":"<WAMID>","typing_indicator":{"type":"text"}}` → `{"success":true}`.
- Customer service window [W8]: a user's message opens 24 h; outside it only template
  messages may be sent. Error 131047 "Re-engagement message" [R1][W10]. An error "may come
  synchronously, asynchronously, or both" [W10]: both modes are simulated
  (`window_error="sync"`: HTTP 400 with the error; `"async"`: a success, then a `failed`
  status webhook carrying the error).
- Error shape [V2][W10]: `{"error":{"message":"(#130429) Rate limit hit","type":"OAuthException",
  "code":130429,"error_data":{"messaging_product":"whatsapp","details":"…"},
  "error_subcode":2494055,"fbtrace_id":"…"}}`. The HTTP status per code is UNCONFIRMED:
  every fault takes its status as a parameter (400 by default, 401 for 190).

Webhooks [W2][R1] (section 1.6 of the notes): `{"object":"whatsapp_business_account","entry":
[{"id":"<WABA_ID>","changes":[{"field":"messages","value":{"messaging_product":"whatsapp",
"metadata":{"display_phone_number":…,"phone_number_id":…},"contacts":[{"profile":{"name":…},
"wa_id":…}],"messages":[{"from":…,"id":"wamid.…","timestamp":"<unix s>","type":"text",
"text":{"body":…}}]}}]}]}`; `interactive.button_reply|list_reply`, `location`, `image`
items; `statuses[]` (`sent|delivered|read|failed`, failed ones with `errors[]`);
`value.errors[]` [W4]. A send may carry `biz_opaque_callback_data` (≤ 512 characters),
which comes back in its status webhooks [W3]; with `status_webhooks=True` the simulator
posts a `sent` status for each accepted message. Templates [W8]: with `templates` set
({(name, language code): number of body parameters}) only those are accepted (132001
"Template name does not exist in the translation", 132000 "Number of parameters does not
match"; a text parameter may not hold new lines, tabs or more than 4 spaces in a row).
Signed with `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app
secret, raw body)>` over `json.dumps(obj, ensure_ascii=True)` bytes [G1].
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import requests
from aiohttp import ClientSession, ClientTimeout, web

WINDOW_SECONDS = 24 * 3600
TEXT_LIMIT = 4096
BODY_LIMIT = 1024
SEND_TYPES = {"text", "interactive", "image", "audio", "document", "video", "sticker", "location", "contacts", "template", "reaction"}

# code -> (type, message, details): the wording copied by client libraries from Meta's table.
ERRORS: dict[int, tuple[str, str, str]] = {
    100: ("OAuthException", "(#100) Invalid parameter", "Invalid parameter"),
    190: ("OAuthException", "Invalid OAuth access token - Cannot parse access token", ""),
    130429: ("OAuthException", "(#130429) Rate limit hit", "Cloud API message throughput has been reached."),
    131056: ("OAuthException", "(#131056) (Business Account, Consumer Account) pair rate limit hit",
             "Too many messages sent from the sender phone number to the same recipient phone number in a short period of time."),
    80007: ("OAuthException", "(#80007) Rate limit issues", "The WhatsApp Business Account has reached its rate limit."),
    131000: ("OAuthException", "(#131000) Something went wrong", "Message failed to send due to an unknown error."),
    131026: ("OAuthException", "(#131026) Message undeliverable", "Unable to deliver message."),
    131047: ("OAuthException", "(#131047) Re-engagement message",
             "Message failed to send because more than 24 hours have passed since the customer last replied to this number."),
    131009: ("OAuthException", "(#131009) Parameter value is not valid", "Parameter value is not valid"),
    131051: ("OAuthException", "(#131051) Unsupported message type", "Message type is not currently supported."),
}


def error_body(code: int, details: str | None = None, subcode: int | None = None) -> dict[str, Any]:
    kind, message, default_details = ERRORS.get(code, ("OAuthException", f"(#{code}) Error", ""))
    error: dict[str, Any] = {"message": message, "type": kind, "code": code}
    if details or default_details:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details or default_details}
    if subcode is not None:
        error["error_subcode"] = subcode
    error["fbtrace_id"] = base64.urlsafe_b64encode(secrets.token_bytes(12)).decode()
    return {"error": error}


def new_wamid() -> str:
    return "wamid." + base64.b64encode(secrets.token_bytes(30)).decode().rstrip("=")


class Invalid(Exception):
    """A request the real API refuses: HTTP status and error code."""

    def __init__(self, details: str, code: int = 100, status: int = 400) -> None:
        super().__init__(details)
        self.details, self.code, self.status = details, code, status


@dataclass
class Fault:
    """An injected failure, served once to the next matching request.

    `status` + `code`: an error response; `delay`: hold the request this long, then fail
    it (a timeout for a client with a shorter one: the message is not delivered, so a retry
    delivers it once; Meta gives no idempotency key, a timeout *after* delivery would
    duplicate); `kind`: `message` (sends), `read` (read receipts) or `any`; `to`: only for
    sends to this number.
    """

    status: int = 500
    code: int | None = None
    delay: float = 0.0
    kind: str = "message"
    to: str | None = None


@dataclass
class Request:
    """Every request the endpoint received, accepted or not."""

    path: str
    body: Any
    status: int
    error_code: int | None = None


@dataclass
class WhatsAppCloudSimulator:
    app_secret: str
    access_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    phone_number_id: str = "106540352242922"
    display_phone_number: str = "15550783881"
    waba_id: str = "102290129340398"
    webhook_url: str = ""
    window_error: str = "sync"  # or "async"
    undeliverable: set[str] = field(default_factory=set)
    # Approved templates: {(name, language code): body parameters}; None accepts any.
    templates: dict[tuple[str, str], int] | None = None
    status_webhooks: bool = False

    def __post_init__(self) -> None:
        self.sent: dict[str, list[dict[str, Any]]] = {}
        self.reads: list[str] = []
        self.requests: list[Request] = []
        self.faults: deque[Fault] = deque()
        self.last_inbound: dict[str, float] = {}
        self.inbound_ids: set[str] = set()
        self.webhook_responses: list[int] = []
        # Numbers whose window the API considers closed whatever the bot thinks -> error mode.
        self.expired: dict[str, str] = {}
        self.statuses_posted: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ------------------------------------------------------------------ server
    @property
    def url(self) -> str:
        """The Graph API base URL the bot is configured with."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> WhatsAppCloudSimulator:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start())
            ready.set()
            self._loop.run_forever()

        threading.Thread(target=run, name="whatsapp-cloud-simulator", daemon=True).start()
        if not ready.wait(10):
            raise RuntimeError("the WhatsApp simulator did not start")
        return self

    async def _start(self) -> None:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post(r"/{version:v\d+\.\d+}/{phone_number_id}/messages", self._messages)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        if self._loop and self._runner:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)

    def bot_env(self, verify_token: str = "") -> dict[str, str]:
        """The environment that points Guichet's `whatsapp` channel at this simulator."""
        self.verify_token = verify_token or secrets.token_urlsafe(12)
        return {
            "GUICHET_WHATSAPP_ACCESS_TOKEN": self.access_token,
            "GUICHET_WHATSAPP_APP_SECRET": self.app_secret,
            "GUICHET_WHATSAPP_VERIFY_TOKEN": self.verify_token,
            "GUICHET_WHATSAPP_PHONE_NUMBER_ID": self.phone_number_id,
            "GUICHET_WHATSAPP_API_URL": self.url,
            "GUICHET_WHATSAPP_API_VERSION": "v26.0",
            # Short, so that the timeout test stays quick.
            "GUICHET_WHATSAPP_API_TIMEOUT": "2",
        }

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def reset(self) -> None:
        with self._lock:
            self.faults.clear()

    def _take_fault(self, kind: str, to: str | None) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.kind in (kind, "any") and (fault.to is None or fault.to == to):
                    self.faults.remove(fault)
                    return fault
        return None

    # ---------------------------------------------------------------- endpoint
    def _error(self, path: str, body: Any, status: int, code: int, details: str | None = None) -> web.Response:
        with self._lock:
            self.requests.append(Request(path, body, status, code))
        return web.json_response(error_body(code, details), status=status)

    async def _messages(self, request: web.Request) -> web.Response:
        path = request.path
        header = request.headers.get("Authorization", "")
        if not hmac.compare_digest(header.encode(), f"Bearer {self.access_token}".encode()):
            return self._error(path, None, 401, 190)
        if request.match_info["phone_number_id"] != self.phone_number_id:
            return self._error(
                path, None, 400, 100,
                f"Unsupported post request. Object with ID '{request.match_info['phone_number_id']}' does not exist",
            )
        if not request.content_type.startswith("application/json"):
            return self._error(path, None, 400, 100, "Content-Type must be application/json")
        try:
            body = json.loads(await request.read())
        except ValueError:
            return self._error(path, None, 400, 100, "The request body is not valid JSON")
        kind = "read" if isinstance(body, dict) and body.get("status") == "read" else "message"
        to = body.get("to") if isinstance(body, dict) else None
        fault = self._take_fault(kind, to if isinstance(to, str) else None)
        if fault:
            code = fault.code if fault.code is not None else 131000
            if fault.delay:
                # Recorded on arrival: the client gives up before the (error) answer.
                with self._lock:
                    self.requests.append(Request(path, body, fault.status, code))
                await asyncio.sleep(fault.delay)
                return web.json_response(error_body(code), status=fault.status)
            if fault.code is not None or fault.status >= 400:
                return self._error(path, body, fault.status, code)
        try:
            if kind == "read":
                return self._read(path, body)
            return await self._send(path, body)
        except Invalid as invalid:
            return self._error(path, body, invalid.status, invalid.code, invalid.details)

    def _read(self, path: str, body: dict[str, Any]) -> web.Response:
        if body.get("messaging_product") != "whatsapp":
            raise Invalid("The parameter messaging_product is required.")
        wamid = body.get("message_id")
        if wamid not in self.inbound_ids:
            raise Invalid("Invalid parameter: unknown message_id", code=100)
        typing = body.get("typing_indicator")
        if typing is not None and typing != {"type": "text"}:
            raise Invalid("typing_indicator.type must be 'text'")
        with self._lock:
            self.reads.append(wamid)
            self.requests.append(Request(path, body, 200))
        return web.json_response({"success": True})

    async def _send(self, path: str, body: Any) -> web.Response:
        validate_message(body)
        if body["type"] == "template" and self.templates is not None:
            validate_template(body["template"], self.templates)
        callback = body.get("biz_opaque_callback_data")
        if callback is not None and (not isinstance(callback, str) or len(callback) > 512):
            raise Invalid("Param biz_opaque_callback_data must be a string of at most 512 characters")
        to = body["to"]
        wa_id = to.lstrip("+")
        if wa_id in self.undeliverable:
            raise Invalid(ERRORS[131026][2], code=131026)
        wamid = new_wamid()
        window_open = wa_id not in self.expired and time.time() - self.last_inbound.get(wa_id, 0) < WINDOW_SECONDS
        if body["type"] != "template" and not window_open:
            if self.expired.get(wa_id, self.window_error) == "sync":
                raise Invalid(ERRORS[131047][2], code=131047)
            asyncio.get_running_loop().create_task(
                self._post_async(self.status_payload(wamid, wa_id, "failed", errors=[status_error(131047)],
                                                     callback=callback))
            )
        else:
            with self._lock:
                self.sent.setdefault(wa_id, []).append(body)
            if self.status_webhooks:
                asyncio.get_running_loop().create_task(
                    self._post_async(self.status_payload(wamid, wa_id, "sent", callback=callback)))
        with self._lock:
            self.requests.append(Request(path, body, 200))
        return web.json_response(
            {"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": wa_id}], "messages": [{"id": wamid}]}
        )

    async def _post_async(self, payload: dict[str, Any]) -> None:
        raw = json.dumps(payload, ensure_ascii=True).encode()
        async with ClientSession(timeout=ClientTimeout(total=30)) as session:
            async with session.post(
                self.webhook_url, data=raw,
                headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(self.app_secret, raw)},
            ) as response:
                self.webhook_responses.append(response.status)
                for item in _statuses(payload):
                    with self._lock:
                        self.statuses_posted.append((item.get("id", ""), response.status))

    # ------------------------------------------------------------ what was sent
    def messages_to(self, wa_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.sent.get(wa_id, []))

    def requests_to(self, wa_id: str) -> list[Request]:
        """Every send request addressed to `wa_id` (accepted or refused), in order."""
        with self._lock:
            return [r for r in self.requests if isinstance(r.body, dict) and str(r.body.get("to", "")).lstrip("+") == wa_id]

    def wait_for(self, wa_id: str, count: int = 1, timeout: float = 90) -> list[dict[str, Any]]:
        """The messages sent to `wa_id` once there are at least `count` (then a short settle)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.messages_to(wa_id)) >= count:
                return self.messages_to(wa_id)
            time.sleep(0.1)
        raise AssertionError(f"{wa_id} got {len(self.messages_to(wa_id))} message(s), expected {count}: {self.messages_to(wa_id)}")

    def expire(self, wa_id: str, mode: str = "sync") -> None:
        """From now on the API sees `wa_id`'s window as closed (error 131047, `sync` or `async`)."""
        self.expired[wa_id] = mode

    # ------------------------------------------------------------------ citizen
    def envelope(
        self,
        messages: list[dict[str, Any]] | None = None,
        statuses: list[dict[str, Any]] | None = None,
        errors: list[dict[str, Any]] | None = None,
        name: str = "Camille Martin",
    ) -> dict[str, Any]:
        """One `entry` with one `changes[]` item, as Meta sends it."""
        value: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": self.display_phone_number, "phone_number_id": self.phone_number_id},
        }
        if messages:
            value["contacts"] = [
                {"profile": {"name": name}, "wa_id": wa_id} for wa_id in dict.fromkeys(m["from"] for m in messages if isinstance(m, dict) and "from" in m)
            ]
            value["messages"] = messages
        if statuses:
            value["statuses"] = statuses
        if errors:
            value["errors"] = errors
        return {
            "object": "whatsapp_business_account",
            "entry": [{"id": self.waba_id, "changes": [{"field": "messages", "value": value}]}],
        }

    @staticmethod
    def batched(*payloads: dict[str, Any]) -> dict[str, Any]:
        """Several envelopes in one POST (several `entry[]` items)."""
        return {"object": "whatsapp_business_account", "entry": [e for p in payloads for e in p["entry"]]}

    def status_payload(self, wamid: str, wa_id: str, status: str, errors: list[dict[str, Any]] | None = None,
                       callback: str | None = None) -> dict[str, Any]:
        item = status_item(wamid, wa_id, status, errors)
        if callback:
            item["biz_opaque_callback_data"] = callback
        return self.envelope(statuses=[item])

    def post(
        self,
        payload: Any,
        *,
        signature: str | None = None,
        signed: bool = True,
        raw: bytes | None = None,
    ) -> requests.Response:
        """POSTs a webhook to the bot, serialised and signed like Meta."""
        body = raw if raw is not None else json.dumps(payload, ensure_ascii=True).encode()
        headers = {"Content-Type": "application/json"}
        if signed:
            headers["X-Hub-Signature-256"] = signature or sign(self.app_secret, body)
        if raw is None and isinstance(payload, dict):
            self._note_inbound(payload)
        return requests.post(self.webhook_url, data=body, headers=headers, timeout=30)

    def _note_inbound(self, payload: dict[str, Any]) -> None:
        for entry in payload.get("entry") or []:
            for change in (entry.get("changes") or []) if isinstance(entry, dict) else []:
                value = change.get("value") if isinstance(change, dict) else None
                for message in (value.get("messages") or []) if isinstance(value, dict) else []:
                    if not isinstance(message, dict):
                        continue
                    stamp = float(message.get("timestamp", time.time()))
                    wa_id = message.get("from", "")
                    self.last_inbound[wa_id] = max(self.last_inbound.get(wa_id, 0), stamp)
                    self.inbound_ids.add(message.get("id", ""))

    def say(self, wa_id: str, text: str, **kwargs: Any) -> dict[str, Any]:
        """A text message from `wa_id`, posted; returns the message item."""
        item = text_message(wa_id, text, **kwargs)
        response = self.post(self.envelope([item]))
        assert response.status_code == 200, response.text
        return item


def sign(app_secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


# --------------------------------------------------------------- webhook items
def _item(wa_id: str, kind: str, content: dict[str, Any], timestamp: float | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "from": wa_id,
        "id": new_wamid(),
        "timestamp": str(int(timestamp if timestamp is not None else time.time())),
        "type": kind,
        kind: content,
        **extra,
    }


def text_message(wa_id: str, body: str, timestamp: float | None = None) -> dict[str, Any]:
    return _item(wa_id, "text", {"body": body}, timestamp)


def button_reply(wa_id: str, reply_id: str, title: str, context_wamid: str | None = None) -> dict[str, Any]:
    extra = {"context": {"from": "15550783881", "id": context_wamid}} if context_wamid else {}
    return _item(wa_id, "interactive", {"type": "button_reply", "button_reply": {"id": reply_id, "title": title}}, **extra)


def list_reply(wa_id: str, row_id: str, title: str, description: str = "") -> dict[str, Any]:
    reply = {"id": row_id, "title": title, **({"description": description} if description else {})}
    return _item(wa_id, "interactive", {"type": "list_reply", "list_reply": reply})


def template_button(wa_id: str, payload: str, text: str) -> dict[str, Any]:
    return _item(wa_id, "button", {"payload": payload, "text": text})


def location_message(wa_id: str, latitude: float, longitude: float, name: str = "", address: str = "") -> dict[str, Any]:
    where: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
    if name:
        where["name"] = name
    if address:
        where["address"] = address
    return _item(wa_id, "location", where)


def media_message(wa_id: str, kind: str = "image", mime_type: str = "image/jpeg", caption: str = "") -> dict[str, Any]:
    media: dict[str, Any] = {"mime_type": mime_type, "sha256": base64.b64encode(secrets.token_bytes(32)).decode(), "id": str(secrets.randbelow(10**15))}
    if caption:
        media["caption"] = caption
    return _item(wa_id, kind, media)


def unknown_message(wa_id: str) -> dict[str, Any]:
    """What Meta sends for a type the Cloud API does not support."""
    return {
        "from": wa_id, "id": new_wamid(), "timestamp": str(int(time.time())), "type": "unsupported",
        "errors": [{"code": 131051, "title": "Message type unknown", "message": "Message type unknown",
                    "error_data": {"details": "Message type is currently not supported."}}],
    }


def status_error(code: int) -> dict[str, Any]:
    _, message, details = ERRORS.get(code, ("", f"Error {code}", ""))
    title = re.sub(r"^\(#\d+\) ", "", message)
    return {"code": code, "title": title, "message": title, "error_data": {"details": details},
            "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"}


def status_item(wamid: str, wa_id: str, status: str, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"id": wamid, "status": status, "timestamp": str(int(time.time())), "recipient_id": wa_id}
    if status != "failed":
        item["conversation"] = {"id": secrets.token_hex(16), "origin": {"type": "service"}}
        item["pricing"] = {"billable": True, "pricing_model": "CBP", "category": "service"}
    if errors:
        item["errors"] = errors
    return item


def _statuses(payload: dict[str, Any]) -> list[dict[str, Any]]:
    return [item for entry in payload.get("entry", []) for change in entry.get("changes", [])
            for item in change.get("value", {}).get("statuses", []) or []]


# ------------------------------------------------------------------ validation
def validate_template(template: dict[str, Any], approved: dict[tuple[str, str], int]) -> None:
    """An approved template with the right number of well-formed body parameters."""
    key = (template.get("name"), (template.get("language") or {}).get("code"))
    if key not in approved:
        raise Invalid("Template name does not exist in the translation", code=132001, status=404)
    parameters = [p for c in template.get("components") or [] if isinstance(c, dict) and c.get("type") == "body"
                  for p in c.get("parameters") or []]
    if len(parameters) != approved[key]:
        raise Invalid("Number of parameters does not match the expected number of params", code=132000)
    for parameter in parameters:
        text = parameter.get("text") if isinstance(parameter, dict) else None
        if parameter.get("type") != "text" or not isinstance(text, str) or not text:
            raise Invalid("Template parameters must be non-empty text", code=132000)
        if "\n" in text or "\t" in text or "     " in text:
            raise Invalid("Param text cannot have new-line/tab characters or more than 4 consecutive spaces",
                          code=132000)


def _length(text: str) -> int:
    return len(text)


def _need_str(value: Any, name: str, limit: int, minimum: int = 1) -> str:
    if not isinstance(value, str) or not minimum <= _length(value):
        raise Invalid(f"Param {name} is required")
    if _length(value) > limit:
        raise Invalid(f"Param {name} must be at most {limit} characters long.")
    return value


def _validate_buttons(interactive: dict[str, Any]) -> None:
    buttons = (interactive.get("action") or {}).get("buttons")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        raise Invalid("Param interactive['action']['buttons'] must have 1 to 3 buttons")
    titles, ids = [], []
    for index, button in enumerate(buttons):
        if not isinstance(button, dict) or button.get("type") != "reply" or not isinstance(button.get("reply"), dict):
            raise Invalid(f"Param interactive['action']['buttons'][{index}] must be a reply button")
        titles.append(_need_str(button["reply"].get("title"), f"buttons[{index}]['reply']['title']", 20))
        ids.append(_need_str(button["reply"].get("id"), f"buttons[{index}]['reply']['id']", 256))
    if len(set(titles)) != len(titles) or len(set(ids)) != len(ids):
        raise Invalid("Button titles and ids must be unique", code=131009)


def _validate_list(interactive: dict[str, Any]) -> None:
    action = interactive.get("action") or {}
    _need_str(action.get("button"), "interactive['action']['button']", 20)
    sections = action.get("sections")
    if not isinstance(sections, list) or not 1 <= len(sections) <= 10:
        raise Invalid("Param interactive['action']['sections'] must have 1 to 10 sections")
    ids: list[str] = []
    for s_index, section in enumerate(sections):
        if not isinstance(section, dict) or not isinstance(section.get("rows"), list) or not section["rows"]:
            raise Invalid(f"Param sections[{s_index}]['rows'] is required")
        if len(sections) > 1:
            _need_str(section.get("title"), f"sections[{s_index}]['title']", 24)
        for r_index, row in enumerate(section["rows"]):
            where = f"sections[{s_index}]['rows'][{r_index}]"
            if not isinstance(row, dict):
                raise Invalid(f"Param {where} must be an object")
            ids.append(_need_str(row.get("id"), f"{where}['id']", 200))
            _need_str(row.get("title"), f"{where}['title']", 24)
            if "description" in row:
                _need_str(row.get("description"), f"{where}['description']", 72, minimum=0)
    if len(ids) > 10:
        raise Invalid("A list message can have at most 10 rows in all", code=131009)
    if len(set(ids)) != len(ids):
        raise Invalid("Row ids must be unique", code=131009)


def validate_message(body: Any) -> None:
    """Raises `Invalid` like the Cloud API for a message it would refuse."""
    if not isinstance(body, dict):
        raise Invalid("The request body must be a JSON object")
    if body.get("messaging_product") != "whatsapp":
        raise Invalid("The parameter messaging_product is required.")
    if body.get("recipient_type", "individual") not in ("individual", "group"):
        raise Invalid("Param recipient_type is invalid")
    to = body.get("to")
    if not isinstance(to, str) or not re.fullmatch(r"\+?\d{5,20}", to):
        raise Invalid("Param to must be a phone number", code=131009)
    kind = body.get("type", "text")
    if kind not in SEND_TYPES:
        raise Invalid(f"Param type must be one of {sorted(SEND_TYPES)}", code=131051)
    content = body.get(kind)
    if not isinstance(content, dict):
        raise Invalid(f"Param {kind} is required", code=131008)
    if kind == "text":
        _need_str(content.get("body"), "text['body']", TEXT_LIMIT)
    elif kind == "interactive":
        _need_str((content.get("body") or {}).get("text"), "interactive['body']['text']", BODY_LIMIT)
        if content.get("type") == "button":
            _validate_buttons(content)
        elif content.get("type") == "list":
            _validate_list(content)
        else:
            raise Invalid("Param interactive['type'] must be button or list (in this simulator)")
    elif kind in ("image", "audio", "document", "video", "sticker"):
        link = content.get("link")
        if not content.get("id") and not (isinstance(link, str) and re.match(r"https?://", link)):
            raise Invalid(f"Param {kind}['link'] or {kind}['id'] is required", code=131008)
        if "caption" in content:
            _need_str(content["caption"], f"{kind}['caption']", BODY_LIMIT)
    elif kind == "template":
        _need_str(content.get("name"), "template['name']", 512)
        _need_str((content.get("language") or {}).get("code"), "template['language']['code']", 15)
