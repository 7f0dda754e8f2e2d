"""Reading WhatsApp Cloud API webhooks (`"object": "whatsapp_business_account"`).

Pure functions, no I/O: `parse_webhook()` turns one (already verified) POST body into
the citizens' messages, the delivery statuses and the errors it carries, walking every
`entry[]` / `changes[]` / `value.messages[]` (Meta batches updates).

Wire facts (Meta's webhook reference for `messages`, pywa's fixtures): `from` is the
citizen's `wa_id` (digits), `id` the `wamid.…` message id, `timestamp` Unix seconds as a
string; `statuses[]` report `sent|delivered|read|failed`; `value.errors[]` system errors.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

WEBHOOK_OBJECT = "whatsapp_business_account"
WA_ID = re.compile(r"^\d{5,20}$")
MAX_ID_CHARS = 256

# Media types that are acknowledged (not read); the French noun is used in the answer.
MEDIA_TYPES = {
    "image": "votre image",
    "document": "votre document",
    "audio": "votre message vocal",
    "video": "votre vidéo",
    "sticker": "votre autocollant",
}
# Updates about a message rather than a message to answer.
SILENT_TYPES = {"reaction", "system"}


@dataclass
class Inbound:
    """One citizen message, reduced to what Rasa needs."""

    wa_id: str
    wamid: str
    timestamp: float
    # text: typed text; payload: a button/list tap (text is the payload); location, media,
    # unknown: answered by the channel unless a caption gives text; silent: not answered.
    kind: str
    text: str
    phone_number_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Status:
    wamid: str
    status: str
    recipient: str
    errors: list[dict[str, Any]] = field(default_factory=list)
    # Our `biz_opaque_callback_data`, returned by the status webhooks (broadcast receipts).
    callback_data: str = ""


@dataclass
class Batch:
    messages: list[Inbound] = field(default_factory=list)
    statuses: list[Status] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    # Parts that were skipped because they were malformed (for the logs).
    skipped: list[str] = field(default_factory=list)


class NotWhatsApp(ValueError):
    """The body is not a WhatsApp Business Account webhook."""


def _str(value: Any, limit: int = 4096) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _timestamp(value: Any) -> float:
    try:
        stamp = float(value)
    except (TypeError, ValueError):
        return time.time()
    # A clock in the future (or garbage) must not keep the service window open.
    return min(stamp, time.time()) if stamp > 0 else time.time()


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _message_content(item: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """(kind, text for Rasa, metadata) of one `messages[]` item."""
    kind = _str(item.get("type"), 64)
    if kind == "text":
        return "text", _str(_dict(item.get("text")).get("body")), {}
    if kind == "interactive":
        interactive = _dict(item.get("interactive"))
        sub = _str(interactive.get("type"), 64)
        if sub in ("button_reply", "list_reply"):
            reply = _dict(interactive.get(sub))
            payload = _str(reply.get("id"), MAX_ID_CHARS) or _str(reply.get("title"))
            return "payload", payload, {"reply_title": _str(reply.get("title"), 200)}
        return "unknown", "", {"interactive_type": sub}
    if kind == "button":  # a quick-reply button of a template
        button = _dict(item.get("button"))
        payload = _str(button.get("payload"), MAX_ID_CHARS) or _str(button.get("text"))
        return "payload", payload, {"reply_title": _str(button.get("text"), 200)}
    if kind == "location":
        where = _dict(item.get("location"))
        location = {
            key: where[key]
            for key in ("latitude", "longitude")
            if isinstance(where.get(key), (int, float)) and not isinstance(where.get(key), bool)
        }
        location.update({key: _str(where.get(key), 500) for key in ("name", "address", "url") if where.get(key)})
        return "location", "", {"location": location}
    if kind in MEDIA_TYPES:
        media = _dict(item.get(kind))
        info = {key: _str(media.get(key), 500) for key in ("id", "mime_type", "sha256", "filename") if media.get(key)}
        if media.get("voice") is True:
            info["voice"] = True
        # A caption is text the citizen wrote: Rasa reads it.
        return "media", _str(media.get("caption")), {"media": {"type": kind, **info}}
    if kind in SILENT_TYPES:
        return "silent", "", {}
    return "unknown", "", {}


def _inbound(item: Any, contacts: dict[str, str], phone_number_id: str) -> Inbound | str:
    """An `Inbound`, or the reason the item is skipped."""
    if not isinstance(item, dict):
        return "message item is not an object"
    wa_id, wamid = item.get("from"), item.get("id")
    if not isinstance(wa_id, str) or not WA_ID.match(wa_id):
        return f"message without a valid 'from' ({str(wa_id)[:40]!r})"
    if not isinstance(wamid, str) or not 0 < len(wamid) <= MAX_ID_CHARS:
        return f"message from {wa_id} without a valid 'id'"
    kind, text, extra = _message_content(item)
    metadata: dict[str, Any] = {
        "wamid": wamid,
        "type": _str(item.get("type"), 64),
        "timestamp": _timestamp(item.get("timestamp")),
        **extra,
    }
    if contacts.get(wa_id):
        metadata["profile_name"] = contacts[wa_id]
    context = _dict(item.get("context"))
    if isinstance(context.get("id"), str):
        metadata["reply_to"] = context["id"][:MAX_ID_CHARS]
    if item.get("errors"):
        metadata["errors"] = _list(item.get("errors"))[:5]
    return Inbound(
        wa_id=wa_id,
        wamid=wamid,
        timestamp=metadata["timestamp"],
        kind=kind,
        text=text,
        phone_number_id=phone_number_id,
        metadata={"whatsapp": metadata},
    )


def _status(item: Any) -> Status | str:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        return "status without an id"
    return Status(
        wamid=item["id"][:MAX_ID_CHARS],
        status=_str(item.get("status"), 64),
        recipient=_str(item.get("recipient_id"), 64),
        errors=[e for e in _list(item.get("errors")) if isinstance(e, dict)],
        callback_data=_str(item.get("biz_opaque_callback_data"), 512),
    )


def parse_webhook(body: Any) -> Batch:
    """Everything a webhook body carries; raises `NotWhatsApp` for other payloads."""
    if not isinstance(body, dict) or body.get("object") != WEBHOOK_OBJECT:
        raise NotWhatsApp("not a whatsapp_business_account webhook")
    batch = Batch()
    for entry in _list(body.get("entry")):
        for change in _list(_dict(entry).get("changes")):
            change = _dict(change)
            if change.get("field") != "messages":
                batch.skipped.append(f"change field {str(change.get('field'))[:40]!r}")
                continue
            value = _dict(change.get("value"))
            phone_number_id = _str(_dict(value.get("metadata")).get("phone_number_id"), 64)
            contacts = {
                c["wa_id"]: _str(_dict(c.get("profile")).get("name"), 200)
                for c in _list(value.get("contacts"))
                if isinstance(c, dict) and isinstance(c.get("wa_id"), str)
            }
            for item in _list(value.get("messages")):
                parsed = _inbound(item, contacts, phone_number_id)
                (batch.messages if isinstance(parsed, Inbound) else batch.skipped).append(parsed)
            for item in _list(value.get("statuses")):
                status = _status(item)
                (batch.statuses if isinstance(status, Status) else batch.skipped).append(status)
            batch.errors += [e for e in _list(value.get("errors")) if isinstance(e, dict)]
    return batch


def describe_error(error: dict[str, Any], with_code: bool = True) -> str:
    """`code <n> (<title>): <details>` for the logs."""
    details = _dict(error.get("error_data")).get("details") or error.get("message") or ""
    text = f"({error.get('title', '')}): {str(details)[:300]}"
    return f"code {error.get('code')} {text}" if with_code else text
