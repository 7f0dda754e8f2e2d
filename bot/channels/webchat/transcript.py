"""What the widget shows again after a page reload, read from the conversation's tracker."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rasa.shared.core.events import BotUttered, Event, UserUttered

MAX_MESSAGES = 100
# Metadata key of the text to show for a quick reply (its title rather than its payload).
DISPLAY_KEY = "display"


def _buttons(data: dict[str, Any]) -> list[dict[str, str]]:
    raw = data.get("buttons") or data.get("quick_replies") or []
    return [
        {"title": str(b.get("title")), "payload": str(b.get("payload") or b.get("title"))}
        for b in raw
        if isinstance(b, dict) and b.get("title")
    ]


def transcript(events: Iterable[Event]) -> list[dict[str, Any]]:
    """`[{"sender": "user"|"bot", "text": …, "quick_replies": [...]}]`, oldest first.

    Messages the citizen did not type (the widget's automatic greeting, an intent
    payload without a title) are left out; quick replies are kept on the last bot
    message only, where they can still be used.
    """
    messages: list[dict[str, Any]] = []
    for event in events:
        if isinstance(event, UserUttered):
            metadata = event.metadata or {}
            shown = metadata.get(DISPLAY_KEY)
            text = shown if isinstance(shown, str) and shown else event.text or ""
            if text and not (text.startswith("/") and not shown):
                messages.append({"sender": "user", "text": metadata.get("full_text") or text})
        elif isinstance(event, BotUttered) and (event.text or event.data):
            message: dict[str, Any] = {"sender": "bot", "text": event.text or ""}
            buttons = _buttons(event.data or {})
            if buttons:
                message["quick_replies"] = buttons
            messages.append(message)
    messages = messages[-MAX_MESSAGES:]
    for message in messages[:-1]:
        message.pop("quick_replies", None)
    return messages
