"""Building Messenger / Instagram Send API `message` objects from Rasa's responses.

Pure functions. Limits (Meta's Send API reference, copied in tests/simulators/graph_api.py):
Messenger text < 2000 characters, Instagram text <= 1000 UTF-8 bytes; <= 13 quick replies
with titles of 20 characters and payloads of 1000; button template text <= 640
characters with 1-3 buttons (Messenger only); generic template <= 10 elements, title and
subtitle 80 characters, <= 3 buttons each.

Choices:
- long texts are split at paragraph, then line, then sentence, then word boundaries;
  quick replies ride on the last part;
- Rasa buttons become quick replies; buttons with a URL become a button template on
  Messenger when there are at most 3 buttons and the text fits, otherwise the links are
  written in the text (quick replies cannot open a URL);
- over 13 buttons, the first 12 and the last (the "talk to an agent" one) are kept.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

MAX_QUICK_REPLIES = 13
MAX_TITLE_CHARS = 20
MAX_PAYLOAD_CHARS = 1000
MAX_TEMPLATE_TEXT_CHARS = 640
MAX_TEMPLATE_BUTTONS = 3
MAX_ELEMENTS = 10
MAX_ELEMENT_TEXT = 80
DEFAULT_CHOICE_TEXT = "Que souhaitez-vous faire ?"


def utf16_len(text: str) -> int:
    """Characters as JavaScript counts them (an emoji counts 2): the cautious measure."""
    return len(text.encode("utf-16-le")) // 2


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


@dataclass(frozen=True)
class Limits:
    text_max: int
    measure: Callable[[str], int]
    button_template: bool
    generic_template: bool


# Messenger: "< 2000 characters", counted cautiously in UTF-16 units.
MESSENGER = Limits(text_max=1999, measure=utf16_len, button_template=True, generic_template=True)
# Instagram: "UTF-8, <= 1000 bytes"; no button templates.
INSTAGRAM = Limits(text_max=1000, measure=utf8_len, button_template=False, generic_template=False)

_SPLITTERS: list[Callable[[str], list[str]]] = [
    lambda t: re.split(r"(?<=\n\n)", t),  # paragraphs
    lambda t: re.split(r"(?<=\n)", t),  # lines
    lambda t: re.split(r"(?<=[.!?…;:])(?=\s)", t),  # sentences
    lambda t: re.split(r"(?=\s)", t),  # words
]


def _hard_cut(text: str, limit: int, measure: Callable[[str], int]) -> list[str]:
    chunks, current = [], ""
    for char in text:
        if current and measure(current + char) > limit:
            chunks.append(current)
            current = ""
        current += char
    return [*chunks, current] if current else chunks


def _split(text: str, limit: int, measure: Callable[[str], int], level: int) -> list[str]:
    if measure(text) <= limit:
        return [text]
    if level >= len(_SPLITTERS):
        return _hard_cut(text, limit, measure)
    parts = [p for p in _SPLITTERS[level](text) if p]
    if len(parts) <= 1:
        return _split(text, limit, measure, level + 1)
    chunks: list[str] = []
    current = ""
    for part in parts:
        if measure(current + part) <= limit:
            current += part
            continue
        if current.strip():
            chunks.append(current)
        if measure(part) <= limit:
            current = part
        else:
            pieces = _split(part, limit, measure, level + 1)
            chunks.extend(pieces[:-1])
            current = pieces[-1]
    if current.strip():
        chunks.append(current)
    return chunks


def split_text(text: str, limits: Limits) -> list[str]:
    """`text` in parts that each fit the platform's limit, cut at natural boundaries."""
    text = text.strip()
    if not text:
        return []
    parts = (part.strip() for part in _split(text, limits.text_max, limits.measure, 0))
    return [part for part in parts if part]


def shorten(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0] if " " in text[: limit - 1] else text[: limit - 1]
    return cut.rstrip(" ,;:'") + "…"


def _button_url(button: dict[str, Any]) -> str | None:
    """The link of a URL button (`url`, or a payload that is a web address)."""
    for key in ("url", "payload"):
        value = button.get(key)
        if isinstance(value, str) and re.fullmatch(r"https?://\S+", value.strip()):
            return value.strip()[:2000]
    return None


def _payload(button: dict[str, Any]) -> str:
    payload = button.get("payload")
    if not isinstance(payload, str) or not payload.strip():
        payload = str(button.get("title") or "")
    return payload[:MAX_PAYLOAD_CHARS]


def _keep_buttons(buttons: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    if len(buttons) <= limit:
        return buttons
    logger.warning("%d buttons for a maximum of %d: kept the first %d and the last", len(buttons), limit, limit - 1)
    return [*buttons[: limit - 1], buttons[-1]]


def quick_reply(button: dict[str, Any]) -> dict[str, Any]:
    return {
        "content_type": "text",
        "title": shorten(str(button.get("title") or _payload(button)), MAX_TITLE_CHARS),
        "payload": _payload(button),
    }


def text_messages(text: str, limits: Limits, quick_replies: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Text split to fit, quick replies on the last part."""
    parts = split_text(text, limits)
    if quick_replies and not parts:
        parts = [DEFAULT_CHOICE_TEXT]
    messages: list[dict[str, Any]] = [{"text": part} for part in parts]
    if quick_replies:
        messages[-1]["quick_replies"] = quick_replies[:MAX_QUICK_REPLIES]
    return messages


def button_messages(text: str, buttons: list[dict[str, Any]], limits: Limits) -> list[dict[str, Any]]:
    """Rasa buttons as quick replies, or as a button template when links are involved."""
    buttons = [b for b in buttons if isinstance(b, dict)]
    links = [(b, url) for b in buttons if (url := _button_url(b))]
    if not links:
        return text_messages(text, limits, [quick_reply(b) for b in _keep_buttons(buttons, MAX_QUICK_REPLIES)])
    text = text.strip() or DEFAULT_CHOICE_TEXT
    if limits.button_template and len(buttons) <= MAX_TEMPLATE_BUTTONS and len(text) <= MAX_TEMPLATE_TEXT_CHARS:
        template_buttons = []
        for button in buttons:
            title = shorten(str(button.get("title") or "Ouvrir"), MAX_TITLE_CHARS)
            url = _button_url(button)
            if url:
                template_buttons.append({"type": "web_url", "url": url, "title": title})
            else:
                template_buttons.append({"type": "postback", "title": title, "payload": _payload(button)})
        return [{"attachment": {"type": "template", "payload": {
            "template_type": "button", "text": text, "buttons": template_buttons,
        }}}]
    link_lines = "\n".join(f"{b.get('title') or 'Lien'} : {url}" for b, url in links)
    others = [b for b in buttons if not _button_url(b)]
    replies = [quick_reply(b) for b in _keep_buttons(others, MAX_QUICK_REPLIES)]
    return text_messages(f"{text}\n\n{link_lines}", limits, replies or None)


def image_message(url: str) -> dict[str, Any]:
    return {"attachment": {"type": "image", "payload": {"url": url, "is_reusable": True}}}


def file_message(url: str, kind: str = "file") -> dict[str, Any]:
    if kind not in {"image", "audio", "video", "file"}:
        kind = "file"
    return {"attachment": {"type": kind, "payload": {"url": url, "is_reusable": True}}}


def element_messages(elements: list[dict[str, Any]], limits: Limits) -> list[dict[str, Any]]:
    """Rasa elements (carousel) as a generic template, or as text where unsupported."""
    elements = [e for e in elements if isinstance(e, dict)][:MAX_ELEMENTS]
    if not elements:
        return []
    if limits.generic_template:
        converted = []
        for element in elements:
            item: dict[str, Any] = {"title": shorten(str(element.get("title") or "…"), MAX_ELEMENT_TEXT)}
            if element.get("subtitle"):
                item["subtitle"] = shorten(str(element["subtitle"]), MAX_ELEMENT_TEXT)
            if isinstance(element.get("image_url"), str):
                item["image_url"] = element["image_url"]
            buttons = []
            for button in (element.get("buttons") or [])[:MAX_TEMPLATE_BUTTONS]:
                if not isinstance(button, dict):
                    continue
                title = shorten(str(button.get("title") or "Ouvrir"), MAX_TITLE_CHARS)
                url = _button_url(button)
                buttons.append({"type": "web_url", "url": url, "title": title} if url
                               else {"type": "postback", "title": title, "payload": _payload(button)})
            if buttons:
                item["buttons"] = buttons
            converted.append(item)
        return [{"attachment": {"type": "template", "payload": {"template_type": "generic", "elements": converted}}}]
    messages: list[dict[str, Any]] = []
    for element in elements:
        text = "\n".join(str(element.get(k)) for k in ("title", "subtitle") if element.get(k))
        messages += button_messages(text, element.get("buttons") or [], limits)
    return messages
