"""Reading Telegram Bot API updates and shaping what the bot sends. Pure functions, no I/O.

Wire facts (core.telegram.org/bots/api, checked against the Bot API reference):
- An `Update` has an integer `update_id` and at most one of `message`, `edited_message`,
  `callback_query`, `my_chat_member`… A private chat's `chat.id` is the user's id.
- `sendMessage.text` is 1-4096 characters (Telegram counts UTF-16 code units);
  `InlineKeyboardButton.callback_data` is 1-64 bytes (else `400 BUTTON_DATA_INVALID`).
- After a callback button is pressed the app shows a progress bar until the bot calls
  `answerCallbackQuery`, which is why every callback query is answered.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

MAX_MESSAGE_UTF16 = 4096
MAX_CALLBACK_BYTES = 64
SENDER_PREFIX = "telegram-"

# Commands the Telegram app sends by itself or shows in the bot's menu: a greeting.
GREETING_COMMANDS = {"/start", "/aide", "/help", "/bonjour"}
GREETING_PAYLOAD = "/greet"

# Kinds of an inbound update.
TEXT, BUTTON, MEDIA, IGNORED = "text", "button", "media", "ignored"


@dataclass
class Inbound:
    """One update reduced to what the channel needs."""

    update_id: int
    kind: str
    chat_id: int = 0
    text: str = ""
    callback_query_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    reason: str = ""  # why an update is ignored (for the logs)

    @property
    def sender_id(self) -> str:
        return sender_id(self.chat_id)


class NotAnUpdate(ValueError):
    """The body is not a Telegram `Update` object."""


def sender_id(chat_id: int) -> str:
    """The Rasa conversation id of a Telegram private chat (prefixed: ids of other
    channels are numbers too)."""
    return f"{SENDER_PREFIX}{chat_id}"


def chat_id_of(recipient_id: str) -> str:
    """The Telegram chat id of a Rasa conversation id (accepts a bare chat id too)."""
    text = str(recipient_id)
    return text[len(SENDER_PREFIX):] if text.startswith(SENDER_PREFIX) else text


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _fits(text: str, limit: int) -> int:
    """The largest prefix length (in code points) of `text` within `limit` UTF-16 units."""
    if utf16_len(text) <= limit:
        return len(text)
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return index
    return len(text)


def split_text(text: str, limit: int = MAX_MESSAGE_UTF16) -> list[str]:
    """Cuts `text` into messages Telegram accepts, at paragraph, line or word breaks
    when possible (never inside a character)."""
    text = text.strip()
    parts: list[str] = []
    while text:
        end = _fits(text, limit)
        if end == len(text):
            parts.append(text)
            break
        cut = end
        for separator in ("\n\n", "\n", " "):
            position = text.rfind(separator, 0, end)
            if position > end // 2:
                cut = position
                break
        part, text = text[:cut].rstrip(), text[cut:].lstrip()
        if part:
            parts.append(part)
    return parts


class CallbackPayloads:
    """Rasa payloads too long for `callback_data` are sent as a short key kept here."""

    PREFIX = "k:"

    def __init__(self, max_size: int = 20_000) -> None:
        self.max_size = max_size
        self._payloads: OrderedDict[str, str] = OrderedDict()

    def encode(self, payload: str) -> str:
        if 0 < len(payload.encode()) <= MAX_CALLBACK_BYTES and not payload.startswith(self.PREFIX):
            return payload
        key = self.PREFIX + hashlib.sha256(payload.encode()).hexdigest()[:32]
        self._payloads[key] = payload
        self._payloads.move_to_end(key)
        while len(self._payloads) > self.max_size:
            self._payloads.popitem(last=False)
        return key

    def decode(self, data: str) -> str | None:
        """The payload of `data`; None for a key this process does not know (restart)."""
        if data.startswith(self.PREFIX):
            return self._payloads.get(data)
        return data


def inline_keyboard(buttons: list[dict[str, Any]], payloads: CallbackPayloads) -> dict[str, Any]:
    """One button per row: topic labels are long and a phone screen is narrow."""
    rows = []
    for button in buttons:
        title = str(button.get("title") or "").strip()
        if not title:
            continue
        if button.get("url"):
            rows.append([{"text": title, "url": str(button["url"])}])
        else:
            payload = str(button.get("payload") or title)
            rows.append([{"text": title, "callback_data": payloads.encode(payload)}])
    return {"inline_keyboard": rows}


def _button_title(message: dict[str, Any], data: str) -> str:
    """The title of the pressed button, read back from the message that carried it."""
    markup = message.get("reply_markup") if isinstance(message, dict) else None
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    for row in rows if isinstance(rows, list) else []:
        for button in row if isinstance(row, list) else []:
            if isinstance(button, dict) and button.get("callback_data") == data:
                return str(button.get("text") or "")
    return ""


def _typed_text(text: str) -> str:
    """What Rasa reads for typed text: commands of the menu greet, and a leading `/` is
    dropped so that a citizen cannot type an intent (`/restart`, `/faq{…}`)."""
    command = text.split(maxsplit=1)[0].split("@", 1)[0].lower() if text.strip() else ""
    if command in GREETING_COMMANDS:
        return GREETING_PAYLOAD
    return text.lstrip().lstrip("/") if text.lstrip().startswith("/") else text


def _chat(message: dict[str, Any]) -> tuple[int, str]:
    chat = message.get("chat")
    if not isinstance(chat, dict) or not isinstance(chat.get("id"), int) or isinstance(chat.get("id"), bool):
        raise NotAnUpdate("message.chat.id must be an integer")
    return chat["id"], str(chat.get("type") or "")


def parse_update(body: Any, payloads: CallbackPayloads) -> Inbound:
    """Reads one webhook body. Raises `NotAnUpdate` if it is not an Update object."""
    if not isinstance(body, dict):
        raise NotAnUpdate("the body must be a JSON object")
    update_id = body.get("update_id")
    if not isinstance(update_id, int) or isinstance(update_id, bool):
        raise NotAnUpdate("'update_id' must be an integer")

    query = body.get("callback_query")
    if isinstance(query, dict):
        message = query.get("message") if isinstance(query.get("message"), dict) else {}
        if not message:
            return Inbound(update_id, IGNORED, reason="callback query without its message")
        chat_id, chat_type = _chat(message)
        inbound = Inbound(update_id, BUTTON, chat_id, callback_query_id=str(query.get("id") or ""))
        if chat_type != "private":
            inbound.kind, inbound.reason = IGNORED, f"{chat_type} chat"
            return inbound
        data = query.get("data") if isinstance(query.get("data"), str) else ""
        payload = payloads.decode(data) if data else None
        inbound.text = payload if payload is not None else _button_title(message, data)
        inbound.metadata = {"telegram": {"callback_data": data}}
        return inbound

    for key in ("message", "edited_message"):
        message = body.get(key)
        if not isinstance(message, dict):
            continue
        chat_id, chat_type = _chat(message)
        inbound = Inbound(update_id, TEXT, chat_id)
        inbound.metadata = {"telegram": {"message_id": message.get("message_id"), "edited": key == "edited_message"}}
        if chat_type != "private":
            inbound.kind, inbound.reason = IGNORED, f"{chat_type} chat"
        elif isinstance(message.get("text"), str):
            inbound.text = _typed_text(message["text"])
        elif isinstance(message.get("caption"), str) and message["caption"].strip():
            inbound.text = _typed_text(message["caption"])
        else:
            inbound.kind = MEDIA
        return inbound

    kinds = sorted(k for k in body if k != "update_id")
    return Inbound(update_id, IGNORED, reason=f"update of type {', '.join(kinds) or 'unknown'}")
