"""Reading Messenger and Instagram webhooks (`entry[].messaging[]`) into typed events.

Pure functions, no I/O. Every `entry[]` and every `messaging[]` item of a batched POST is
read; `standby[]` items (the thread belongs to another app) and everything that is not a
citizen's message are kept as *ignored* with a reason, for the log. Facts from Meta's
webhook reference (copied in tests/simulators/graph_api.py):

- `object` is `page` (Messenger) or `instagram`; `entry.id` is the Page / IG account.
- a message: `{"sender":{"id"},"recipient":{"id"},"timestamp":ms,"message":{"mid","text",
  "quick_reply":{"payload"},"attachments":[{"type","payload":{"url"}}]}}`;
  attachment types: image, audio, video, file, sticker, reel, ig_reel, post, ig_post,
  appointment_booking, fallback (payload may be absent), legacy location
  (`payload.coordinates.lat/long`).
- a postback (button, Get Started, persistent menu): `"postback":{"mid","title","payload"}`.
- echoes carry `message.is_echo` (the sender is the Page); deliveries, reads
  (`messaging_seen` on Instagram), reactions, edits, optins, referrals and handover events
  are not citizen messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

TEXT = "text"
QUICK_REPLY = "quick_reply"
POSTBACK = "postback"
ATTACHMENT = "attachment"
EMPTY = "empty"

MAX_ID_CHARS = 128
MAX_PAYLOAD_CHARS = 2000
MAX_URL_CHARS = 4096
MAX_ATTACHMENTS = 10
_ID = re.compile(r"^[0-9A-Za-z_.:-]{1,128}$")

# Event keys of `messaging[]` items that are not citizen messages.
NOT_MESSAGES = (
    "delivery", "read", "reaction", "message_edit", "optin", "referral",
    "pass_thread_control", "take_thread_control", "request_thread_control", "app_roles",
    "policy_enforcement", "account_linking", "messaging_feedback", "game_play",
)


# `optin` fields of Meta's messaging_optins webhook (notification messages).
OPTIN_FIELDS = (
    "type", "payload", "notification_messages_token", "notification_messages_timezone",
    "notification_messages_status", "user_token_status", "title", "ref", "token_expiry_timestamp",
)


class NotAWebhook(ValueError):
    """The body is not a Meta webhook object."""


@dataclass
class InboundEvent:
    """One citizen message, quick-reply tap, postback or attachment."""

    kind: str
    sender: str
    recipient: str
    timestamp: int  # milliseconds, Meta's clock
    mid: str | None
    text: str = ""
    payload: str | None = None
    title: str = ""
    attachments: list[dict[str, Any]] = field(default_factory=list)
    reply_to: str | None = None
    referral: dict[str, Any] | None = None

    @property
    def dedupe_key(self) -> str:
        if self.mid:
            return self.mid
        return f"{self.kind}:{self.sender}:{self.timestamp}:{self.payload or self.text}"[:600]


@dataclass
class Ignored:
    reason: str
    sender: str = ""
    # For echoes and opt-ins: what the channel records (bot/channels/receipts.py).
    details: dict[str, Any] | None = None


@dataclass
class Batch:
    object: str
    events: list[InboundEvent] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)


def _id(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        value = str(value)
    return value if isinstance(value, str) and _ID.match(value) else None


def _str(value: Any, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _timestamp(value: Any, default: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return default
    return int(value)


def _attachment(item: Any) -> dict[str, Any] | None:
    if not isinstance(item, dict):
        return None
    kind = _str(item.get("type"), 40) or "unknown"
    found: dict[str, Any] = {"type": kind}
    payload = item.get("payload") if isinstance(item.get("payload"), dict) else {}
    if url := _str(payload.get("url"), MAX_URL_CHARS):
        found["url"] = url
    if payload.get("sticker_id") is not None and _id(payload.get("sticker_id")):
        found["sticker_id"] = _id(payload.get("sticker_id"))
    if title := _str(item.get("title") or payload.get("title"), 300):
        found["title"] = title
    coordinates = payload.get("coordinates")
    if isinstance(coordinates, dict):
        lat, long = coordinates.get("lat"), coordinates.get("long")
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lat, long)):
            if -90 <= lat <= 90 and -180 <= long <= 180:
                found["coordinates"] = {"lat": float(lat), "long": float(long)}
    return found


def _message_event(item: dict[str, Any], sender: str, recipient: str, stamp: int) -> InboundEvent | Ignored:
    message = item.get("message")
    if not isinstance(message, dict):
        return Ignored("malformed_message", sender)
    if message.get("is_echo"):
        # The Page's own message; our `metadata` in it proves a broadcast went out.
        return Ignored("echo", sender, {"mid": _str(message.get("mid"), MAX_ID_CHARS),
                                        "metadata": _str(message.get("metadata"), 1000), "recipient": recipient})
    mid = _id(message.get("mid")) if message.get("mid") is not None else None
    if mid is None and isinstance(message.get("mid"), str) and message["mid"]:
        mid = message["mid"][:MAX_ID_CHARS]  # unusual characters: still a dedupe key
    text = _str(message.get("text"), 1_000_000)
    reply_to = message.get("reply_to")
    event = InboundEvent(
        kind=TEXT, sender=sender, recipient=recipient, timestamp=stamp, mid=mid, text=text,
        reply_to=(_str(reply_to.get("mid"), MAX_ID_CHARS) or None) if isinstance(reply_to, dict) else None,
    )
    quick_reply = message.get("quick_reply")
    if isinstance(quick_reply, dict) and _str(quick_reply.get("payload"), MAX_PAYLOAD_CHARS):
        event.kind = QUICK_REPLY
        event.payload = _str(quick_reply.get("payload"), MAX_PAYLOAD_CHARS)
        event.title = text[:100]
        return event
    raw_attachments = message.get("attachments")
    if isinstance(raw_attachments, list) and raw_attachments:
        attachments = [a for a in map(_attachment, raw_attachments[:MAX_ATTACHMENTS]) if a]
        # Until 2026-08-30 Meta sends a sticker both as `sticker` and `image`: keep one.
        if any(a["type"] == "sticker" for a in attachments):
            attachments = [a for a in attachments if a["type"] != "image" or "sticker_id" not in a]
        if attachments:
            event.kind = ATTACHMENT
            event.attachments = attachments
            return event
    if not text.strip():
        event.kind = EMPTY
    return event


def _postback_event(item: dict[str, Any], sender: str, recipient: str, stamp: int) -> InboundEvent | Ignored:
    postback = item.get("postback")
    if not isinstance(postback, dict):
        return Ignored("malformed_postback", sender)
    payload = _str(postback.get("payload"), MAX_PAYLOAD_CHARS)
    title = _str(postback.get("title"), 100)
    if not payload and not title:
        return Ignored("postback_without_payload", sender)
    referral = postback.get("referral")
    return InboundEvent(
        kind=POSTBACK, sender=sender, recipient=recipient, timestamp=stamp,
        mid=_str(postback.get("mid"), MAX_ID_CHARS) or None, payload=payload or None, title=title,
        referral={k: _str(v, 300) for k, v in referral.items() if isinstance(v, str)}
        if isinstance(referral, dict) else None,
    )


def parse_item(item: Any, entry_time: int) -> InboundEvent | Ignored:
    """One `messaging[]` item."""
    if not isinstance(item, dict):
        return Ignored("malformed_item")
    sender = _id((item.get("sender") or {}).get("id") if isinstance(item.get("sender"), dict) else None)
    recipient = _id((item.get("recipient") or {}).get("id") if isinstance(item.get("recipient"), dict) else None)
    if sender is None:
        return Ignored("no_sender")
    stamp = _timestamp(item.get("timestamp"), entry_time)
    if "message" in item:
        return _message_event(item, sender, recipient or "", stamp)
    if "postback" in item:
        return _postback_event(item, sender, recipient or "", stamp)
    if isinstance(item.get("optin"), dict):
        # messaging_optins: a notification-messages opt-in, stop or resume (no reply).
        optin = item["optin"]
        return Ignored("optin", sender, {
            "page_id": recipient or "", "timestamp": stamp,
            **{key: _str(optin.get(key), 1000) for key in OPTIN_FIELDS if isinstance(optin.get(key), str)},
            **{key: optin[key] for key in ("token_expiry_timestamp",)
               if isinstance(optin.get(key), (int, float)) and not isinstance(optin.get(key), bool)},
        })
    for key in NOT_MESSAGES:
        if key in item:
            return Ignored(key, sender)
    return Ignored("unknown_event", sender)


def parse_webhook(body: Any, expected_object: str, now_ms: int) -> Batch:
    """Every citizen event of a webhook body, sorted by timestamp (stable)."""
    if not isinstance(body, dict) or not isinstance(body.get("object"), str):
        raise NotAWebhook("not a webhook object")
    batch = Batch(object=body["object"])
    if body["object"] != expected_object:
        batch.ignored.append(Ignored(f"object_{body['object'][:40]}"))
        return batch
    entries = body.get("entry")
    if not isinstance(entries, list):
        raise NotAWebhook("'entry' is not a list")
    for entry in entries:
        if not isinstance(entry, dict):
            batch.ignored.append(Ignored("malformed_entry"))
            continue
        entry_time = _timestamp(entry.get("time"), now_ms)
        standby = entry.get("standby")
        for item in standby if isinstance(standby, list) else []:
            sender = ""
            if isinstance(item, dict) and isinstance(item.get("sender"), dict):
                sender = _id(item["sender"].get("id")) or ""
            batch.ignored.append(Ignored("standby", sender))
        if "changes" in entry:
            batch.ignored.append(Ignored("changes"))
        messaging = entry.get("messaging")
        if messaging is None:
            continue
        if not isinstance(messaging, list):
            batch.ignored.append(Ignored("malformed_messaging"))
            continue
        for item in messaging:
            parsed = parse_item(item, entry_time)
            (batch.events if isinstance(parsed, InboundEvent) else batch.ignored).append(parsed)
    batch.events.sort(key=lambda e: e.timestamp)
    return batch
