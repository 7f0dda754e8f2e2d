"""A local Graph API for Messenger and Instagram: Send API, Messenger Profile API, and a
citizen who sends signed webhooks.

    python -m tests.simulators.graph_api --port 5099 --bot-url http://127.0.0.1:5005

(`make run-sim` starts it with the assistant; secrets are read from the same GUICHET_*
variables as the bot's.) In tests it runs in a thread: `GraphApiSimulator().start()`.

Facts implemented (Meta's documentation as gathered late 2026; ids as in the project's
Meta reference notes: [M11] Send API reference, [M12] quick replies, [M13] button
template, [M14] generic template, [M15] postback button, [M16] sender actions,
[M17] message tags, [M18] policy, [M19] error codes, [M20] Page messages reference,
[M22]-[M25] Messenger Profile API, [I1] Instagram send message, [I2] IG quick replies,
[V2] Graph error handling, [G1] webhooks, [M2]-[M10] webhook events, [R2] bottender):

Send API [M11]: `POST /<VER>/me/messages?access_token=<PAGE_TOKEN>` (or `/<PAGE_ID>/messages`).
- Body: `recipient`, `messaging_type` (required: RESPONSE | UPDATE | MESSAGE_TAG; UTILITY
  is also listed [M20]), `message` or `sender_action`; optional `tag`,
  `notification_type` (REGULAR | SILENT_PUSH | NO_PUSH).
- Success: `{"recipient_id":"<PSID>","message_id":"<MID>"}`; a sender action answers
  `{"recipient_id":"<PSID>"}` [M16]. Sender actions go alone (`recipient` + `sender_action`:
  mark_seen | typing_on | typing_off | react | unreact) [M16][M20].
- Limits [M11][M12][M13][M14][M15][I1][I2]: Messenger `text` UTF-8 < 2000 characters;
  Instagram text <= 1000 bytes; `metadata` < 1000 characters; <= 13 quick replies, title
  20 characters, payload 1000, content_type text | user_phone_number | user_email, with
  `text` or `attachment`; button template text <= 640 characters, 1-3 buttons; generic
  template <= 10 elements, title/subtitle 80 characters, <= 3 buttons; postback button
  title 20, payload 1000. Instagram has no button template (project choice, see
  bot/channels/instagram.py): rejected with code 100.
- Windows [M17][M18][I1]: standard window 24 h after the user's last message (RESPONSE,
  UPDATE); `MESSAGE_TAG` + `HUMAN_AGENT` within 7 days of it. Other tags: Messenger only,
  said to get error 100 from 2026-04-27 (UNCONFIRMED): rejected with 100 here. Outside:
  error 10, subcode 2018278 "This message is sent outside of allowed window" (subcode
  UNCONFIRMED). An unknown recipient: 100/2018001 "No matching user found" [M19][M20].
- Error shape [M19][V2]: `{"error":{"message","type","code","error_subcode","fbtrace_id"}}`.
  HTTP statuses per code are not documented: 400 for request errors, configurable faults.
  190 "Invalid OAuth access token." (OAuthException); 613 "Calls to this api have exceeded
  the rate limit."; 1200 "Temporary send message failure"; 2 "unexpected error, retry
  later". Simulator choices: a missing token gets code 2500 (Graph's "An active access
  token must be used"), a wrong `appsecret_proof` code 100.

Messenger Profile API [M22]-[M25][R2]: `POST|GET|DELETE /<VER>/me/messenger_profile`.
POST -> `{"result":"success"}`; GET `?fields=a,b` -> `{"data":[{"a":…},{"b":…}]}`;
DELETE `{"fields":[…]}` -> `{"result":"success"}`. `get_started.payload` <= 1000;
`greeting`: a `default` locale is required, text <= 160 characters; `persistent_menu`
needs a Get Started button, one `default` locale, `call_to_actions` <= 20 (web_url |
postback), title <= 30, payload <= 1000. Rate: 10 calls per 10 minutes per Page [M23].

Webhooks [G1][M2][M4]-[M10]: `{"object":"page"|"instagram","entry":[{"id","time",
"messaging":[…]}]}`; items as built by the functions below; `standby[]` instead of
`messaging[]` when another app owns the thread [M8]. Serialised like Meta,
`json.dumps(obj, ensure_ascii=True)` (escaped unicode, lowercase hex), and signed
`X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, those bytes)>` [G1].

Faults: `inject(Fault("server_error" | "rate_limit" | "temporary" | "invalid_token" |
"timeout" | "hold" | "custom", count=N, recipient=…, on="message" | "sender_action" |
"profile" | "any"))` applies to the next N matching calls. A timed-out or failed call is
not recorded as sent (nothing is delivered).

Notification messages (Messenger's opt-in to be written to outside the window) and
message echoes: tests/simulators/graph_notifications.py (`Citizen.opt_in()`,
`sim.echo_webhooks = True`). `sim.holding` counts the calls held by `hold` faults.

Control endpoints (for `make say` and manual runs): `GET /_sim/sent?recipient=<id>`,
`POST /_sim/citizen {"channel","sender","text"|"payload"…}`, `POST /_sim/faults`,
`DELETE /_sim/faults`, `POST /_sim/release`, `GET /_sim/profile`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

import requests
from aiohttp import web

from tests.simulators import graph_notifications as notifications

STANDARD_WINDOW = 24 * 3600
HUMAN_AGENT_WINDOW = 7 * 24 * 3600
MESSENGER_TEXT_MAX = 1999  # "< 2000 characters"
INSTAGRAM_TEXT_MAX_BYTES = 1000
METADATA_MAX = 999
MAX_QUICK_REPLIES = 13
QUICK_REPLY_TITLE_MAX = 20
PAYLOAD_MAX = 1000
BUTTON_TEMPLATE_TEXT_MAX = 640
BUTTON_TITLE_MAX = 20
GENERIC_ELEMENTS_MAX = 10
ELEMENT_TEXT_MAX = 80
GREETING_MAX = 160
MENU_ITEMS_MAX = 20
MENU_TITLE_MAX = 30
PROFILE_CALLS_PER_10_MIN = 10
MESSAGING_TYPES = {"RESPONSE", "UPDATE", "MESSAGE_TAG", "UTILITY"}
SENDER_ACTIONS = {"mark_seen", "typing_on", "typing_off", "react", "unreact"}
MEDIA_TYPES = {"image", "audio", "video", "file"}
SIGNATURE_HEADER = "X-Hub-Signature-256"

FAULT_PRESETS: dict[str, dict[str, Any]] = {
    "server_error": {"status": 500, "code": 2, "type": "OAuthException",
                     "message": "An unexpected error has occurred. Please retry your request later."},
    "rate_limit": {"status": 429, "code": 613, "type": "OAuthException",
                   "message": "(#613) Calls to this api have exceeded the rate limit."},
    "temporary": {"status": 400, "code": 1200, "type": "OAuthException",
                  "message": "(#1200) Temporary send message failure. Please try again later"},
    "invalid_token": {"status": 400, "code": 190, "type": "OAuthException", "subcode": 463,
                      "message": "Invalid OAuth access token."},
}


def fbtrace_id() -> str:
    return secrets.token_urlsafe(8)


def error_body(code: int, message: str, subcode: int | None = None, kind: str = "OAuthException") -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": kind, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error["fbtrace_id"] = fbtrace_id()
    return {"error": error}


class GraphError(Exception):
    def __init__(self, code: int, message: str, subcode: int | None = None, status: int = 400,
                 kind: str = "OAuthException") -> None:
        super().__init__(message)
        self.code, self.message, self.subcode, self.status, self.kind = code, message, subcode, status, kind


def invalid(message: str, subcode: int | None = None) -> GraphError:
    return GraphError(100, f"(#100) {message}", subcode)


# --------------------------------------------------------------------------- webhooks
def new_psid() -> str:
    return str(secrets.randbelow(9 * 10**15) + 10**15)


def new_mid(channel: str = "messenger") -> str:
    return ("aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlE" if channel == "instagram" else "m_") + secrets.token_urlsafe(24)


def now_ms() -> int:
    return int(time.time() * 1000)


def _base(sender: str, recipient: str, timestamp: int | None) -> dict[str, Any]:
    return {"sender": {"id": sender}, "recipient": {"id": recipient},
            "timestamp": timestamp if timestamp is not None else now_ms()}


def text_item(sender: str, recipient: str, text: str, *, timestamp: int | None = None, mid: str | None = None,
              channel: str = "messenger") -> dict[str, Any]:
    return {**_base(sender, recipient, timestamp), "message": {"mid": mid or new_mid(channel), "text": text}}


def quick_reply_item(sender: str, recipient: str, title: str, payload: str, *, timestamp: int | None = None,
                     mid: str | None = None, channel: str = "messenger") -> dict[str, Any]:
    """A quick-reply tap: `text` is the button title [M4][M12]."""
    return {**_base(sender, recipient, timestamp),
            "message": {"mid": mid or new_mid(channel), "text": title, "quick_reply": {"payload": payload}}}


def postback_item(sender: str, recipient: str, title: str, payload: str, *, timestamp: int | None = None,
                  mid: str | None = None, referral: dict[str, Any] | None = None,
                  channel: str = "messenger") -> dict[str, Any]:
    postback: dict[str, Any] = {"mid": mid or new_mid(channel), "title": title, "payload": payload}
    if referral:
        postback["referral"] = referral
    return {**_base(sender, recipient, timestamp), "postback": postback}


def get_started_item(sender: str, recipient: str, *, timestamp: int | None = None) -> dict[str, Any]:
    return postback_item(sender, recipient, "Get Started", "GET_STARTED", timestamp=timestamp,
                         referral={"ref": "site-mairie", "source": "SHORTLINK", "type": "OPEN_THREAD"})


def attachment_item(sender: str, recipient: str, kind: str, url: str | None = None, *, text: str | None = None,
                    coordinates: tuple[float, float] | None = None, timestamp: int | None = None,
                    mid: str | None = None, channel: str = "messenger") -> dict[str, Any]:
    """An attachment [M4]; `coordinates` makes a legacy location attachment [R3]."""
    payload: dict[str, Any] = {}
    if url:
        payload["url"] = url
    if coordinates:
        payload["coordinates"] = {"lat": coordinates[0], "long": coordinates[1]}
    attachment: dict[str, Any] = {"type": kind, "payload": payload}
    if kind == "location":
        attachment["title"] = "Position"
    message: dict[str, Any] = {"mid": mid or new_mid(channel), "attachments": [attachment]}
    if text:
        message["text"] = text
    return {**_base(sender, recipient, timestamp), "message": message}


def echo_item(page_id: str, recipient: str, *, text: str | None = None, attachment_url: str | None = None,
              timestamp: int | None = None) -> dict[str, Any]:
    """The Page's own message echoed back [M5]: the sender is the Page."""
    message: dict[str, Any] = {"is_echo": True, "app_id": 1517776481860111, "metadata": "guichet", "mid": new_mid()}
    if text is not None:
        message["text"] = text
    if attachment_url:
        message["attachments"] = [{"type": "image", "payload": {"url": attachment_url}}]
    return {**_base(page_id, recipient, timestamp), "message": message}


def delivery_item(sender: str, recipient: str, mids: list[str] | None = None) -> dict[str, Any]:
    item = {"sender": {"id": sender}, "recipient": {"id": recipient}, "delivery": {"watermark": now_ms()}}
    if mids:
        item["delivery"]["mids"] = mids
    return item


def read_item(sender: str, recipient: str) -> dict[str, Any]:
    return {**_base(sender, recipient, None), "read": {"watermark": now_ms()}}


def reaction_item(sender: str, recipient: str, mid: str) -> dict[str, Any]:
    return {**_base(sender, recipient, None),
            "reaction": {"mid": mid, "action": "react", "reaction": "love", "emoji": "❤"}}


def webhook(obj: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """`{"object", "entry": [...]}`; each entry: `{"id", "messaging"|"standby": [...]}`."""
    return {"object": obj, "entry": [{"time": now_ms(), **entry} for entry in entries]}


def encode(payload: Any) -> bytes:
    """Meta's serialisation: escaped unicode (lowercase hex) [G1]."""
    return json.dumps(payload, ensure_ascii=True).encode()


def sign(app_secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def citizen_items(item: dict[str, Any]) -> bool:
    """Whether a messaging item is the citizen writing (opens Meta's window)."""
    message = item.get("message")
    if isinstance(message, dict):
        return not message.get("is_echo")
    return "postback" in item


# --------------------------------------------------------------------------- records
@dataclass
class Fault:
    kind: str  # server_error | rate_limit | temporary | invalid_token | timeout | hold | custom
    count: int = 1
    recipient: str | None = None
    on: str = "message"  # message | sender_action | profile | any
    status: int | None = None
    code: int | None = None
    subcode: int | None = None
    message: str | None = None
    delay: float = 60.0  # timeout: how long the call hangs


@dataclass
class Call:
    method: str
    path: str
    version: str
    kind: str  # message | sender_action | profile | other
    recipient: str | None
    body: Any
    status: int
    code: int | None = None
    subcode: int | None = None
    fault: str | None = None
    at: float = field(default_factory=time.time)


@dataclass
class Sent:
    recipient: str
    platform: str
    messaging_type: str | None
    tag: str | None
    message: dict[str, Any] | None
    sender_action: str | None
    message_id: str
    version: str
    at: float = field(default_factory=time.time)

    @property
    def text(self) -> str:
        if not self.message:
            return ""
        if "text" in self.message:
            return self.message["text"]
        payload = (self.message.get("attachment") or {}).get("payload") or {}
        return payload.get("text", "")


class GraphApiSimulator:
    """The Graph API (Send + Messenger Profile) and Meta's webhook sender, on 127.0.0.1."""

    def __init__(self, *, access_token: str | None = None, app_secret: str | None = None,
                 verify_token: str | None = None, page_id: str = "104729483921045",
                 ig_account_id: str = "17841405822304914", bot_url: str = "") -> None:
        self.access_token = access_token or "EAAG" + secrets.token_urlsafe(32)
        self.app_secret = app_secret or secrets.token_hex(16)
        self.verify_token = verify_token or secrets.token_urlsafe(12)
        self.page_id = page_id
        self.ig_account_id = ig_account_id
        self.bot_url = bot_url.rstrip("/")
        self.port = 0
        self._lock = threading.Lock()
        self._release = threading.Event()
        self.faults: list[Fault] = []
        self.calls: list[Call] = []
        self.sent: list[Sent] = []
        self.profile: dict[str, Any] = {}
        self._profile_calls: deque[float] = deque()
        # (platform, user id) -> Meta's timestamp (ms) of the user's last message.
        self.last_user_message: dict[tuple[str, str], int] = {}
        self.platform_of: dict[str, str] = {}
        # Notification-messages opt-ins and tokens; echoes of the Page's messages (off).
        self.notifications = notifications.NotificationMessages()
        self.echo_webhooks = False
        self.echoes_posted: list[tuple[str, int]] = []
        self.holding = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ server
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> web.Application:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        version = r"{version:v\d+\.\d+}"
        app.router.add_post(f"/{version}/{{node}}/messages", self._messages)
        app.router.add_route("*", f"/{version}/{{node}}/messenger_profile", self._messenger_profile)
        app.router.add_get("/_sim/sent", self._ctl_sent)
        app.router.add_post("/_sim/citizen", self._ctl_citizen)
        app.router.add_post("/_sim/faults", self._ctl_faults)
        app.router.add_delete("/_sim/faults", self._ctl_clear)
        app.router.add_post("/_sim/release", self._ctl_release)
        app.router.add_get("/_sim/profile", self._ctl_profile)
        return app

    async def _start(self, port: int = 0) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def start(self, port: int = 0) -> GraphApiSimulator:
        """Runs in a daemon thread (tests)."""
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start(port))
            ready.set()
            self._loop.run_forever()

        threading.Thread(target=run, name="graph-api-simulator", daemon=True).start()
        if not ready.wait(10):
            raise RuntimeError("the Graph API simulator did not start")
        return self

    def stop(self) -> None:
        self._release.set()
        if self._loop and self._runner:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)

    def bot_env(self, timeout: float = 2.0, backoff: float = 0.1) -> dict[str, str]:
        """The environment that points Guichet's `messenger` and `instagram` channels here."""
        return {
            "GUICHET_MESSENGER_PAGE_TOKEN": self.access_token,
            "GUICHET_MESSENGER_APP_SECRET": self.app_secret,
            "GUICHET_MESSENGER_VERIFY_TOKEN": self.verify_token,
            "GUICHET_INSTAGRAM_ACCESS_TOKEN": "",
            "GUICHET_INSTAGRAM_APP_SECRET": "",
            "GUICHET_INSTAGRAM_VERIFY_TOKEN": "",
            "GUICHET_GRAPH_API_URL": self.url,
            "GUICHET_GRAPH_API_VERSION": "v26.0",
            "GUICHET_GRAPH_TIMEOUT": str(timeout),
            "GUICHET_GRAPH_MAX_ATTEMPTS": "4",
            "GUICHET_GRAPH_BACKOFF": str(backoff),
        }

    # ----------------------------------------------------------- test helpers
    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()
        self.release()

    def release(self) -> None:
        """Lets every held call go on (`hold` faults)."""
        self._release.set()

    def reset(self) -> None:
        with self._lock:
            self.faults.clear()
            self.calls.clear()
            self.sent.clear()
            self.profile.clear()
            self._profile_calls.clear()
        self._release.set()

    def sent_to(self, recipient: str, *, actions: bool = False) -> list[Sent]:
        with self._lock:
            return [s for s in self.sent if s.recipient == recipient and (actions or s.message is not None)]

    def actions_to(self, recipient: str) -> list[str]:
        with self._lock:
            return [s.sender_action for s in self.sent if s.recipient == recipient and s.sender_action]

    def calls_to(self, recipient: str, kind: str = "message") -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.recipient == recipient and c.kind == kind]

    def texts(self, recipient: str) -> list[str]:
        return [s.text for s in self.sent_to(recipient)]

    def wait_for(self, condition: Any, timeout: float = 90.0, interval: float = 0.1) -> Any:
        """Polls `condition()` until truthy; raises AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(interval)
        raise AssertionError(f"condition not met within {timeout:.0f} s")

    def wait_sent(self, recipient: str, count: int = 1, timeout: float = 90.0) -> list[Sent]:
        return self.wait_for(lambda: (s := self.sent_to(recipient)) and len(s) >= count and s, timeout)

    def note_user_message(self, platform: str, user: str, timestamp_ms: int) -> None:
        """Meta's knowledge that `user` wrote at that time (webhooks do this themselves)."""
        with self._lock:
            key = (platform, user)
            self.last_user_message[key] = max(self.last_user_message.get(key, 0), timestamp_ms)
            self.platform_of[user] = platform

    # ------------------------------------------------------------ the citizen
    def webhook_url(self, platform: str) -> str:
        if not self.bot_url:
            raise RuntimeError("bot_url is not set")
        return f"{self.bot_url}/webhooks/{platform}/webhook"

    def deliver(self, payload: Any, *, platform: str | None = None, signature: str = "valid",
                raw: bytes | None = None, timeout: float = 30) -> requests.Response:
        """POSTs a webhook to the bot like Meta: serialised, signed (`valid`, `forged`,
        `none`, `sha1`), and records the citizens' messages for the windows."""
        url, body, headers = self.prepare(payload, platform=platform, signature=signature, raw=raw)
        return requests.post(url, data=body, headers=headers, timeout=timeout)

    def prepare(self, payload: Any, *, platform: str | None = None, signature: str = "valid",
                raw: bytes | None = None) -> tuple[str, bytes, dict[str, str]]:
        """What `deliver` POSTs (URL, body, headers), the citizens' messages recorded for the
        windows: for clients that send it themselves (the benchmarks' async clients)."""
        if platform is None:
            platform = "instagram" if isinstance(payload, dict) and payload.get("object") == "instagram" else "messenger"
        body = raw if raw is not None else encode(payload)
        # Meta knows the citizen wrote on the platform of the payload, whatever the URL.
        writer = "instagram" if isinstance(payload, dict) and payload.get("object") == "instagram" else (
            "messenger" if platform == "instagram" else platform)
        entries = payload.get("entry") if isinstance(payload, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict):
                continue
            for key in ("messaging", "standby"):
                items = entry.get(key)
                for item in items if isinstance(items, list) else []:
                    if isinstance(item, dict) and isinstance(item.get("sender"), dict) and citizen_items(item):
                        sender = item["sender"].get("id")
                        if isinstance(sender, str):
                            self.note_user_message(writer, sender, int(item.get("timestamp") or now_ms()))
        headers = {"Content-Type": "application/json"}
        if signature == "valid":
            headers[SIGNATURE_HEADER] = sign(self.app_secret, body)
        elif signature == "forged":
            headers[SIGNATURE_HEADER] = sign("not-the-app-secret", body)
        elif signature == "sha1":
            headers["X-Hub-Signature"] = "sha1=" + hmac.new(self.app_secret.encode(), body, hashlib.sha1).hexdigest()
        return self.webhook_url(platform), body, headers

    def account_id(self, platform: str) -> str:
        return self.ig_account_id if platform == "instagram" else self.page_id

    def send_items(self, platform: str, items: list[dict[str, Any]], **kwargs: Any) -> requests.Response:
        obj = "instagram" if platform == "instagram" else "page"
        return self.deliver(webhook(obj, [{"id": self.account_id(platform), "messaging": items}]),
                            platform=platform, **kwargs)

    def citizen(self, platform: str = "messenger", user_id: str | None = None) -> Citizen:
        return Citizen(self, platform, user_id or new_psid())

    # -------------------------------------------------------------- send API
    def _token_ok(self, request: web.Request) -> None:
        token = request.query.get("access_token")
        header = request.headers.get("Authorization", "")
        if token is None and header.startswith("Bearer "):
            token = header[len("Bearer "):]
        if not token:
            raise GraphError(2500, "An active access token must be used to query information about the current user.")
        if not hmac.compare_digest(token.encode(), self.access_token.encode()):
            raise GraphError(190, "Invalid OAuth access token.", 463 if token.startswith("EAA") else None)
        proof = request.query.get("appsecret_proof")
        if proof is not None:
            expected = hmac.new(self.app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(proof, expected):
                raise invalid("Invalid appsecret_proof provided in the API argument")

    def _take_fault(self, kind: str, recipient: str | None) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.on not in (kind, "any"):
                    continue
                if fault.recipient is not None and fault.recipient != recipient:
                    continue
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def _error(self, call: Call, error: GraphError) -> web.Response:
        call.status, call.code, call.subcode = error.status, error.code, error.subcode
        self._record(call)
        return web.json_response(error_body(error.code, error.message, error.subcode, error.kind), status=error.status)

    async def _apply_fault(self, fault: Fault, call: Call) -> web.Response | None:
        call.fault = fault.kind
        if fault.kind == "timeout":
            # Recorded now (no answer yet); the client gives up long before the delay ends.
            self._record(call)
            await asyncio.sleep(fault.delay)
            call.status, call.code = 504, 2
            return web.json_response(error_body(2, "An unexpected error has occurred. Please retry your request later."),
                                     status=504)
        if fault.kind == "hold":
            with self._lock:
                self.holding += 1
            try:
                await asyncio.get_running_loop().run_in_executor(None, self._release.wait, 120)
            finally:
                with self._lock:
                    self.holding -= 1
            return None
        preset = dict(FAULT_PRESETS.get(fault.kind, {}))
        return self._error(call, GraphError(
            fault.code if fault.code is not None else preset.get("code", 2),
            fault.message or preset.get("message", "An unknown error has occurred."),
            fault.subcode if fault.subcode is not None else preset.get("subcode"),
            fault.status if fault.status is not None else preset.get("status", 500),
            preset.get("type", "OAuthException"),
        ))

    async def _messages(self, request: web.Request) -> web.Response:
        call = Call(request.method, request.path, request.match_info["version"], "other", None, None, 0)
        try:
            self._token_ok(request)
            node = request.match_info["node"]
            if node not in ("me", self.page_id, self.ig_account_id):
                raise invalid(f"Unsupported post request. Object with ID '{node}' does not exist", 33)
            try:
                body = json.loads(await request.read())
            except ValueError:
                raise invalid("The request body is not valid JSON") from None
            call.body = body
            if not isinstance(body, dict):
                raise invalid("param recipient must be non-empty.")
            recipient = body.get("recipient")
            user = recipient.get("id") if isinstance(recipient, dict) else None
            user = user if user is not None else self.notifications.user_of(recipient)
            call.recipient = str(user) if user is not None else None
            call.kind = "sender_action" if "sender_action" in body else "message"
        except GraphError as error:
            return self._error(call, error)
        fault = self._take_fault(call.kind, call.recipient)
        if fault:
            failed = await self._apply_fault(fault, call)
            if failed is not None:
                return failed
        try:
            sent = self._validate_send(body, call)
        except GraphError as error:
            return self._error(call, error)
        call.status = 200
        self._record(call)
        with self._lock:
            self.sent.append(sent)
        if self.echo_webhooks and sent.message is not None:
            asyncio.get_running_loop().create_task(notifications.post_echo(self, sent))
        answer: dict[str, Any] = {"recipient_id": sent.recipient}
        if sent.message is not None:
            answer["message_id"] = sent.message_id
        return web.json_response(answer)

    def _validate_send(self, body: dict[str, Any], call: Call) -> Sent:
        if notifications.is_token_send(body):
            return self.notifications.validate_send(self, body, call, invalid, Sent)
        recipient = body.get("recipient")
        if not isinstance(recipient, dict) or not recipient:
            raise invalid("param recipient must be non-empty.")
        user = recipient.get("id")
        if not isinstance(user, str) or not user:
            raise invalid("The parameter recipient[id] is required")
        with self._lock:
            platform = self.platform_of.get(user)
            last = self.last_user_message.get((platform or "", user))
        if platform is None or last is None:
            raise invalid("No matching user found", 2018001)
        has_message, action = "message" in body, body.get("sender_action")
        if has_message and action is not None:
            raise invalid("Only one of message or sender_action can be specified")
        if not has_message and action is None:
            raise invalid("param message must be non-empty.")
        age = time.time() - last / 1000
        if action is not None:
            if action not in SENDER_ACTIONS:
                raise invalid(f"param sender_action must be one of {sorted(SENDER_ACTIONS)}")
            extra = set(body) - {"recipient", "sender_action", "payload"}
            if extra:
                raise invalid(f"sender_action must be sent alone, got {sorted(extra)}")
            if age > STANDARD_WINDOW:
                raise GraphError(10, "(#10) This message is sent outside of allowed window.", 2018278)
            return Sent(user, platform, None, None, None, action, "", call.version)
        messaging_type, tag = body.get("messaging_type"), body.get("tag")
        if messaging_type is None:
            raise invalid("The parameter messaging_type is required")
        if messaging_type not in MESSAGING_TYPES:
            raise invalid(f"param messaging_type must be one of {sorted(MESSAGING_TYPES)}")
        if messaging_type == "MESSAGE_TAG":
            if not tag:
                raise invalid("The parameter tag is required with messaging_type MESSAGE_TAG")
            if tag != "HUMAN_AGENT":
                raise invalid(f"Tag {tag} is not supported" + (" on Instagram" if platform == "instagram" else ""))
            if age > HUMAN_AGENT_WINDOW:
                raise GraphError(10, "(#10) This message is sent outside of allowed window.", 2018278)
        elif age > STANDARD_WINDOW:
            raise GraphError(10, "(#10) This message is sent outside of allowed window.", 2018278)
        notification = body.get("notification_type")
        if notification is not None and notification not in ("REGULAR", "SILENT_PUSH", "NO_PUSH"):
            raise invalid("param notification_type must be one of REGULAR, SILENT_PUSH, NO_PUSH")
        self._validate_message(body.get("message"), platform)
        self.notifications.note_request(user, body.get("message"), invalid)
        mid = new_mid(platform)
        return Sent(user, platform, messaging_type, tag, body["message"], None, mid, call.version)

    def _validate_message(self, message: Any, platform: str) -> None:
        if not isinstance(message, dict) or not message:
            raise invalid("param message must be non-empty.")
        text, attachment = message.get("text"), message.get("attachment")
        if (text is None) == (attachment is None):
            raise invalid("Exactly one of message[text] or message[attachment] must be specified")
        if text is not None:
            if not isinstance(text, str) or not text.strip():
                raise invalid("param message[text] must be a non-empty UTF-8 encoded string")
            if platform == "instagram" and len(text.encode()) > INSTAGRAM_TEXT_MAX_BYTES:
                raise invalid(f"Length of param message[text] must be less than or equal to {INSTAGRAM_TEXT_MAX_BYTES} bytes")
            if platform != "instagram" and len(text) > MESSENGER_TEXT_MAX:
                raise invalid("Length of param message[text] must be less than 2000")
        else:
            self._validate_attachment(attachment, platform)
        metadata = message.get("metadata")
        if metadata is not None and (not isinstance(metadata, str) or len(metadata) > METADATA_MAX):
            raise invalid("param message[metadata] must be a string of less than 1000 characters")
        replies = message.get("quick_replies")
        if replies is not None:
            if not isinstance(replies, list) or not replies:
                raise invalid("param message[quick_replies] must be a non-empty array")
            if len(replies) > MAX_QUICK_REPLIES:
                raise invalid(f"param message[quick_replies] must have at most {MAX_QUICK_REPLIES} elements")
            for reply in replies:
                self._validate_quick_reply(reply)

    @staticmethod
    def _validate_quick_reply(reply: Any) -> None:
        if not isinstance(reply, dict):
            raise invalid("param message[quick_replies][] must be an object")
        kind = reply.get("content_type")
        if kind not in ("text", "user_phone_number", "user_email"):
            raise invalid("param message[quick_replies][][content_type] must be one of text, user_phone_number, user_email")
        if kind != "text":
            return
        title, payload = reply.get("title"), reply.get("payload")
        if not isinstance(title, str) or not title:
            raise invalid("param message[quick_replies][][title] must be a non-empty string")
        if len(title) > QUICK_REPLY_TITLE_MAX:
            raise invalid(f"param message[quick_replies][][title] must be at most {QUICK_REPLY_TITLE_MAX} characters")
        if not isinstance(payload, (str, int)) or not str(payload):
            raise invalid("param message[quick_replies][][payload] is required for content_type text")
        if len(str(payload)) > PAYLOAD_MAX:
            raise invalid(f"param message[quick_replies][][payload] must be at most {PAYLOAD_MAX} characters")

    def _validate_attachment(self, attachment: Any, platform: str) -> None:
        if not isinstance(attachment, dict):
            raise invalid("param message[attachment] must be an object")
        kind, payload = attachment.get("type"), attachment.get("payload")
        if not isinstance(payload, dict):
            raise invalid("param message[attachment][payload] is required")
        if kind in MEDIA_TYPES:
            url, attachment_id = payload.get("url"), payload.get("attachment_id")
            if not attachment_id and not (isinstance(url, str) and re.match(r"^https?://", url)):
                raise invalid("param message[attachment][payload][url] must be a valid URL")
            return
        if kind != "template":
            raise invalid(f"param message[attachment][type] must be one of {sorted(MEDIA_TYPES | {'template'})}")
        template = payload.get("template_type")
        if template == "notification_messages":
            self.notifications.validate_request(payload, platform, invalid)
        elif template == "button":
            if platform == "instagram":
                raise invalid("Button template is not supported on Instagram")
            text = payload.get("text")
            if not isinstance(text, str) or not text or len(text) > BUTTON_TEMPLATE_TEXT_MAX:
                raise invalid(f"param message[attachment][payload][text] must be 1 to {BUTTON_TEMPLATE_TEXT_MAX} characters")
            self._validate_buttons(payload.get("buttons"))
        elif template == "generic":
            elements = payload.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= GENERIC_ELEMENTS_MAX:
                raise invalid(f"param elements must have 1 to {GENERIC_ELEMENTS_MAX} elements")
            for element in elements:
                if not isinstance(element, dict) or not isinstance(element.get("title"), str) or not element["title"]:
                    raise invalid("param elements[][title] is required")
                for key in ("title", "subtitle"):
                    if isinstance(element.get(key), str) and len(element[key]) > ELEMENT_TEXT_MAX:
                        raise invalid(f"param elements[][{key}] must be at most {ELEMENT_TEXT_MAX} characters")
                if "buttons" in element:
                    self._validate_buttons(element["buttons"])
        else:
            raise invalid(f"Unsupported template_type {template!r}")

    @staticmethod
    def _validate_buttons(buttons: Any) -> None:
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
            raise invalid("param buttons must have 1 to 3 elements")
        for button in buttons:
            if not isinstance(button, dict) or button.get("type") not in ("postback", "web_url", "phone_number"):
                raise invalid("param buttons[][type] must be postback, web_url or phone_number")
            title = button.get("title")
            if not isinstance(title, str) or not title or len(title) > BUTTON_TITLE_MAX:
                raise invalid(f"param buttons[][title] must be 1 to {BUTTON_TITLE_MAX} characters")
            if button["type"] == "web_url" and not re.match(r"^https?://", str(button.get("url") or "")):
                raise invalid("param buttons[][url] must be a valid URL")
            if button["type"] != "web_url":
                payload = button.get("payload")
                if not isinstance(payload, str) or not payload or len(payload) > PAYLOAD_MAX:
                    raise invalid(f"param buttons[][payload] must be 1 to {PAYLOAD_MAX} characters")

    # ---------------------------------------------------- messenger profile
    async def _messenger_profile(self, request: web.Request) -> web.Response:
        call = Call(request.method, request.path, request.match_info["version"], "profile", None, None, 0)
        try:
            self._token_ok(request)
            if request.match_info["node"] not in ("me", self.page_id):
                raise invalid("Unsupported request: the messenger_profile of a Page only")
            body: Any = None
            if request.method in ("POST", "DELETE"):
                raw = await request.read()
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    raise invalid("The request body is not valid JSON") from None
                call.body = body
        except GraphError as error:
            return self._error(call, error)
        fault = self._take_fault("profile", None)
        if fault:
            failed = await self._apply_fault(fault, call)
            if failed is not None:
                return failed
        try:
            if request.method == "GET":
                fields = [f for f in request.query.get("fields", "").split(",") if f]
                if not fields:
                    raise invalid("The parameter fields is required")
                call.status = 200
                self._record(call)
                with self._lock:
                    return web.json_response({"data": [{f: self.profile[f]} for f in fields if f in self.profile]})
            if request.method not in ("POST", "DELETE"):
                raise invalid(f"Unsupported method {request.method}")
            self._profile_rate_limit()
            if request.method == "DELETE":
                fields = body.get("fields") if isinstance(body, dict) else None
                if not isinstance(fields, list) or not fields:
                    raise invalid("param fields must be a non-empty array")
                with self._lock:
                    for name in fields:
                        self.profile.pop(name, None)
            else:
                self._validate_profile(body)
                with self._lock:
                    self.profile.update(body)
        except GraphError as error:
            return self._error(call, error)
        call.status = 200
        self._record(call)
        return web.json_response({"result": "success"})

    def _profile_rate_limit(self) -> None:
        now = time.time()
        with self._lock:
            while self._profile_calls and now - self._profile_calls[0] > 600:
                self._profile_calls.popleft()
            if len(self._profile_calls) >= PROFILE_CALLS_PER_10_MIN:
                raise GraphError(613, "(#613) Calls to this api have exceeded the rate limit.")
            self._profile_calls.append(now)

    def _validate_profile(self, body: Any) -> None:
        known = {"get_started", "greeting", "persistent_menu", "ice_breakers", "whitelisted_domains",
                 "account_linking_url", "commands"}
        if not isinstance(body, dict) or not body:
            raise invalid("The request body must set at least one property")
        unknown = set(body) - known
        if unknown:
            raise invalid(f"Unknown properties {sorted(unknown)}")
        if "get_started" in body:
            started = body["get_started"]
            payload = started.get("payload") if isinstance(started, dict) else None
            if not isinstance(payload, str) or not payload or len(payload) > PAYLOAD_MAX:
                raise invalid(f"param get_started[payload] must be 1 to {PAYLOAD_MAX} characters")
        if "greeting" in body:
            greetings = body["greeting"]
            if not isinstance(greetings, list) or not greetings:
                raise invalid("param greeting must be a non-empty array")
            locales = []
            for greeting in greetings:
                if not isinstance(greeting, dict) or not isinstance(greeting.get("text"), str):
                    raise invalid("param greeting[][text] is required")
                if len(greeting["text"]) > GREETING_MAX:
                    raise invalid(f"param greeting[][text] must be at most {GREETING_MAX} characters")
                locales.append(greeting.get("locale"))
            if "default" not in locales:
                raise invalid("A greeting with locale default is required")
        if "persistent_menu" in body:
            with self._lock:
                has_started = "get_started" in self.profile
            if "get_started" not in body and not has_started:
                raise invalid("You must set a Get Started button if you also wish to use persistent menu.", 2018145)
            menus = body["persistent_menu"]
            if not isinstance(menus, list) or not menus:
                raise invalid("param persistent_menu must be a non-empty array")
            if sum(1 for m in menus if isinstance(m, dict) and m.get("locale") == "default") != 1:
                raise invalid("persistent_menu needs exactly one entry with locale default")
            for menu in menus:
                actions = menu.get("call_to_actions") if isinstance(menu, dict) else None
                if actions is None and menu.get("composer_input_disabled"):
                    raise invalid("call_to_actions is required when composer_input_disabled is true")
                if actions is None:
                    continue
                if not isinstance(actions, list) or len(actions) > MENU_ITEMS_MAX:
                    raise invalid(f"param call_to_actions must have at most {MENU_ITEMS_MAX} elements")
                for action in actions:
                    if not isinstance(action, dict) or action.get("type") not in ("postback", "web_url"):
                        raise invalid("param call_to_actions[][type] must be postback or web_url (no nested menus)")
                    title = action.get("title")
                    if not isinstance(title, str) or not title or len(title) > MENU_TITLE_MAX:
                        raise invalid(f"param call_to_actions[][title] must be 1 to {MENU_TITLE_MAX} characters")
                    if action["type"] == "postback":
                        payload = action.get("payload")
                        if not isinstance(payload, str) or not payload or len(payload) > PAYLOAD_MAX:
                            raise invalid(f"param call_to_actions[][payload] must be 1 to {PAYLOAD_MAX} characters")
                    elif not re.match(r"^https?://", str(action.get("url") or "")):
                        raise invalid("param call_to_actions[][url] must be a valid URL")

    # ------------------------------------------------------------- control
    async def _ctl_sent(self, request: web.Request) -> web.Response:
        recipient = request.query.get("recipient")
        with self._lock:
            items = [asdict(s) for s in self.sent if recipient is None or s.recipient == recipient]
        return web.json_response({"sent": items})

    async def _ctl_citizen(self, request: web.Request) -> web.Response:
        """`{"channel", "sender", "text"}` or `"payload"` (+ `"title"`), `"postback"`, `"image"`."""
        try:
            data = await request.json()
        except ValueError:
            return web.json_response({"error": "JSON body expected"}, status=400)
        platform = data.get("channel", "messenger")
        if platform not in ("messenger", "instagram"):
            return web.json_response({"error": "channel must be messenger or instagram"}, status=400)
        sender = str(data.get("sender") or new_psid())
        recipient = self.account_id(platform)
        if data.get("postback"):
            item = postback_item(sender, recipient, data.get("title") or data["postback"], data["postback"], channel=platform)
        elif data.get("payload"):
            item = quick_reply_item(sender, recipient, data.get("title") or data["payload"], data["payload"], channel=platform)
        elif data.get("image"):
            item = attachment_item(sender, recipient, "image", data["image"], channel=platform)
        else:
            item = text_item(sender, recipient, str(data.get("text") or ""), channel=platform)
        loop = asyncio.get_running_loop()
        try:
            answer = await loop.run_in_executor(None, lambda: self.send_items(platform, [item]))
        except requests.RequestException as exc:
            return web.json_response({"error": f"the bot's webhook is unreachable: {exc}"}, status=502)
        return web.json_response({"sender": sender, "webhook_status": answer.status_code, "webhook_body": answer.text[:200]})

    async def _ctl_faults(self, request: web.Request) -> web.Response:
        data = await request.json()
        faults = [Fault(**item) for item in (data if isinstance(data, list) else [data])]
        self.inject(*faults)
        if any(f.kind == "hold" for f in faults):
            self._release.clear()
        return web.json_response({"faults": len(self.faults)})

    async def _ctl_clear(self, request: web.Request) -> web.Response:
        self.clear_faults()
        return web.json_response({"faults": 0})

    async def _ctl_release(self, request: web.Request) -> web.Response:
        self.release()
        return web.json_response({"released": True})

    async def _ctl_profile(self, request: web.Request) -> web.Response:
        with self._lock:
            return web.json_response(self.profile)

    def hold(self, recipient: str | None = None, on: str = "message", count: int = 1) -> None:
        """Holds the next matching call until `release()`."""
        self._release.clear()
        self.inject(Fault("hold", count=count, recipient=recipient, on=on))


class Citizen:
    """A Messenger or Instagram user writing to the Page through the simulator."""

    def __init__(self, sim: GraphApiSimulator, platform: str, user_id: str) -> None:
        self.sim = sim
        self.platform = platform
        self.id = user_id

    @property
    def page(self) -> str:
        return self.sim.account_id(self.platform)

    def item_text(self, text: str, **kwargs: Any) -> dict[str, Any]:
        return text_item(self.id, self.page, text, channel=self.platform, **kwargs)

    def say(self, text: str, *, ago: float = 0, **kwargs: Any) -> requests.Response:
        """Writes `text`, `ago` seconds in the past by Meta's clock (a late delivery)."""
        stamp = now_ms() - int(ago * 1000)
        return self.send(self.item_text(text, timestamp=stamp), **kwargs)

    def tap(self, title: str, payload: str, **kwargs: Any) -> requests.Response:
        return self.send(quick_reply_item(self.id, self.page, title, payload, channel=self.platform))

    def postback(self, title: str, payload: str) -> requests.Response:
        return self.send(postback_item(self.id, self.page, title, payload, channel=self.platform))

    def get_started(self) -> requests.Response:
        return self.send(get_started_item(self.id, self.page))

    def attach(self, kind: str, url: str | None = None, **kwargs: Any) -> requests.Response:
        return self.send(attachment_item(self.id, self.page, kind, url, channel=self.platform, **kwargs))

    def send(self, *items: dict[str, Any], **kwargs: Any) -> requests.Response:
        return self.sim.send_items(self.platform, list(items), **kwargs)

    def opt_in(self, payload: str | None = None, title: str | None = None) -> str:
        """Taps "allow" on the last notification-messages request the Page sent (or, with
        `payload` and `title`, on an earlier one); Meta posts the opt-in webhook. Returns
        the token."""
        requests_sent = [r for s in self.sent() if (r := notifications.request_of(s.message))]
        if payload is None or title is None:
            assert requests_sent, "the Page sent no notification_messages request to this person"
            payload, title = requests_sent[-1]["payload"], requests_sent[-1]["title"]
        token = self.sim.notifications.issue(self.id, payload, title)
        response = self.send(notifications.optin_item(self.id, self.page, {
            "payload": payload, "title": title, "notification_messages_token": token.token,
            "notification_messages_timezone": "Europe/Paris", "token_expiry_timestamp": 0,
            "user_token_status": "NOT_REFRESHED"}))
        assert response.status_code == 200, response.text
        return token.token

    def stop_notifications(self, payload: str, resume: bool = False) -> requests.Response:
        token = self.sim.notifications.set_active(self.id, payload, resume)
        assert token is not None, "no notification token for this person"
        return self.send(notifications.optin_item(self.id, self.page, {
            "payload": payload, "title": token.title, "notification_messages_token": token.token,
            "notification_messages_status": notifications.RESUME if resume else notifications.STOP}))

    def sent(self) -> list[Sent]:
        return self.sim.sent_to(self.id)

    def texts(self) -> list[str]:
        return self.sim.texts(self.id)

    def wait(self, count: int = 1, timeout: float = 90.0) -> list[Sent]:
        return self.sim.wait_sent(self.id, count, timeout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=int(os.environ.get("GUICHET_GRAPH_SIM_PORT", "5099")))
    parser.add_argument("--bot-url", default=f"http://127.0.0.1:{os.environ.get('GUICHET_RASA_PORT', '5005')}",
                        help="the assistant's Rasa server, where webhooks are sent")
    args = parser.parse_args()
    sim = GraphApiSimulator(
        access_token=os.environ.get("GUICHET_MESSENGER_PAGE_TOKEN") or None,
        app_secret=os.environ.get("GUICHET_MESSENGER_APP_SECRET") or None,
        verify_token=os.environ.get("GUICHET_MESSENGER_VERIFY_TOKEN") or None,
        bot_url=args.bot_url,
    )

    async def serve() -> None:
        await sim._start(args.port)
        print(f"Graph API simulator on {sim.url} (webhooks to {sim.bot_url})", flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
