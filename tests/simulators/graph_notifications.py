"""Messenger notification messages and message echoes, for the Graph API simulator.

Facts (Meta's "Marketing Messages" guide, formerly Recurring Notifications, and the
messaging_optins / message_echoes webhook references, as gathered late 2026; [M28][M29]
in the project's Meta notes; the exact error codes are UNCONFIRMED, chosen here):

- Opt-in request, allowed only inside the standard 24-hour window: a template attachment
  `{"template_type": "notification_messages", "title": "<≤ 65 characters>", "payload":
  "<string>", "image_url"?, "notification_messages_timezone"?,
  "notification_messages_cta_text"?}`; at most one request with the same title per person
  per week (simulator: error 100). Opting in does not open the standard window.
- The person's tap sends the `messaging_optins` webhook: `{"sender":{"id":"<PSID>"},
  "recipient":{"id":"<PAGE_ID>"},"timestamp":…,"optin":{"type":"notification_messages",
  "payload","title","notification_messages_token","notification_messages_timezone",
  "token_expiry_timestamp","user_token_status":"NOT_REFRESHED"}}`; stopping or resuming
  sends the same with `"notification_messages_status": "STOP NOTIFICATIONS"` |
  `"RESUME NOTIFICATIONS"`.
- Sending: `POST /<VER>/me/messages {"recipient":{"notification_messages_token":"<TOKEN>"},
  "message":{…}}`, any time; `messaging_type` is not required. Tokens no longer expire
  (since 2023-08-10); at most one message per token per 48 hours (since 2025-09-01).
  Meta discontinued them on 2026-02-10 except in the AU, EU, JP, KR and UK geos.
  Simulator errors: unknown token 100, stopped notifications 100, 48-hour limit 100.
- Echoes (`message_echoes` field, [M5]): every message the Page sends comes back as a
  webhook item `{"sender":{"id":"<PAGE_ID>"},"recipient":{"id":"<PSID>"},"timestamp",
  "message":{"is_echo":true,"app_id","metadata":"<the message's metadata>","mid",…}}`.
  Off by default here (`sim.echo_webhooks = True` turns it on).
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

OPTIN_TITLE_MAX = 65
REQUESTS_PER_TITLE_WINDOW = 7 * 24 * 3600
TOKEN_COOLDOWN = 48 * 3600
STOP, RESUME = "STOP NOTIFICATIONS", "RESUME NOTIFICATIONS"


@dataclass
class Token:
    token: str
    psid: str
    payload: str
    title: str
    active: bool = True
    last_sent: float | None = None


def is_token_send(body: Any) -> bool:
    recipient = body.get("recipient") if isinstance(body, dict) else None
    return isinstance(recipient, dict) and "notification_messages_token" in recipient


def request_of(message: Any) -> dict[str, Any] | None:
    """The opt-in request template of a message, if it is one."""
    attachment = message.get("attachment") if isinstance(message, dict) else None
    payload = attachment.get("payload") if isinstance(attachment, dict) else None
    if isinstance(payload, dict) and payload.get("template_type") == "notification_messages":
        return payload
    return None


def optin_item(psid: str, page_id: str, optin: dict[str, Any]) -> dict[str, Any]:
    return {"sender": {"id": psid}, "recipient": {"id": page_id}, "timestamp": int(time.time() * 1000),
            "optin": {"type": "notification_messages", **optin}}


class NotificationMessages:
    """Opt-in requests seen, tokens issued, and their use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.tokens: dict[str, Token] = {}
        self.requests: dict[tuple[str, str], float] = {}  # (psid, title) -> last request time

    def user_of(self, recipient: Any) -> str | None:
        token = recipient.get("notification_messages_token") if isinstance(recipient, dict) else None
        with self._lock:
            found = self.tokens.get(token) if isinstance(token, str) else None
        return found.psid if found else None

    def validate_request(self, payload: dict[str, Any], platform: str, invalid: Any) -> None:
        if platform != "messenger":
            raise invalid("The notification_messages template is not supported on Instagram in this simulator")
        title = payload.get("title")
        if not isinstance(title, str) or not title or len(title) > OPTIN_TITLE_MAX:
            raise invalid(f"param template title must be 1 to {OPTIN_TITLE_MAX} characters")
        if not isinstance(payload.get("payload"), str) or not payload["payload"]:
            raise invalid("param template payload is required")
        if "image_url" in payload and not str(payload["image_url"]).startswith(("https://", "http://")):
            raise invalid("param image_url must be a valid URL")

    def note_request(self, psid: str, message: Any, invalid: Any) -> None:
        """An opt-in request sent to `psid` (the window is already checked): once a week per title."""
        request = request_of(message)
        if request is None:
            return
        key, now = (psid, request["title"]), time.time()
        with self._lock:
            last = self.requests.get(key)
            if last is not None and now - last < REQUESTS_PER_TITLE_WINDOW:
                raise invalid("You can only send one notification_messages request per title per person per week")
            self.requests[key] = now

    def issue(self, psid: str, payload: str, title: str) -> Token:
        token = Token("nmt_" + secrets.token_urlsafe(24), psid, payload, title)
        with self._lock:
            self.tokens[token.token] = token
        return token

    def set_active(self, psid: str, payload: str, active: bool) -> Token | None:
        with self._lock:
            for token in self.tokens.values():
                if token.psid == psid and token.payload == payload:
                    token.active = active
                    return token
        return None

    def validate_send(self, sim: Any, body: dict[str, Any], call: Any, invalid: Any, sent_class: Any) -> Any:
        """A send to a notification token (Meta refuses unknown, stopped or too frequent ones)."""
        value = body["recipient"]["notification_messages_token"]
        with self._lock:
            token = self.tokens.get(value) if isinstance(value, str) else None
        if token is None:
            raise invalid("Invalid notification_messages_token")
        if not token.active:
            raise invalid("This person stopped notification messages from this Page")
        if body.get("messaging_type") not in (None, "UPDATE", "MESSAGE_TAG", "RESPONSE", "UTILITY"):
            raise invalid("param messaging_type is invalid")
        sim._validate_message(body.get("message"), "messenger")
        now = time.time()
        with self._lock:
            if token.last_sent is not None and now - token.last_sent < TOKEN_COOLDOWN:
                raise invalid("Only one notification message per person every 48 hours")
            token.last_sent = now
        return sent_class(token.psid, "messenger", body.get("messaging_type"), None, body["message"], None,
                          "m_" + secrets.token_urlsafe(24), call.version)


def echo_item(page_id: str, sent: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"is_echo": True, "app_id": 1517776481860111, "mid": sent.message_id}
    if isinstance(sent.message, dict):
        if sent.message.get("metadata"):
            message["metadata"] = sent.message["metadata"]
        if "text" in sent.message:
            message["text"] = sent.message["text"]
        elif isinstance(sent.message.get("attachment"), dict):
            message["attachments"] = [sent.message["attachment"]]
    return {"sender": {"id": page_id}, "recipient": {"id": sent.recipient}, "timestamp": int(time.time() * 1000),
            "message": message}


async def post_echo(sim: Any, sent: Any) -> None:
    """Meta's echo of a message the Page sent (signed like every webhook)."""
    from tests.simulators.graph_api import SIGNATURE_HEADER, encode, sign, webhook

    obj = "instagram" if sent.platform == "instagram" else "page"
    page = sim.account_id(sent.platform)
    body = encode(webhook(obj, [{"id": page, "messaging": [echo_item(page, sent)]}]))
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            async with session.post(sim.webhook_url(sent.platform), data=body, headers={
                    "Content-Type": "application/json", SIGNATURE_HEADER: sign(sim.app_secret, body)}) as answer:
                status = answer.status
    except (aiohttp.ClientError, asyncio.TimeoutError):
        status = 0
    with sim._lock:
        sim.echoes_posted.append((sent.message_id, status))
