"""Building WhatsApp Cloud API message bodies from what Rasa says (pure functions).

Limits (Meta's WhatsApp message docs and the official Node.js SDK's type docs):
- text `body` ≤ 4096 characters;
- interactive `body.text` ≤ 1024 characters (third-party SDK docs; not on Meta's page);
- reply buttons: ≤ 3, `title` ≤ 20 characters and unique, `id` ≤ 256 characters;
- list: ≤ 10 rows in all, row `title` ≤ 24, `description` ≤ 72, `id` ≤ 200 characters,
  `action.button` ≤ 20 characters.
Lengths are measured in UTF-16 code units, which is never less than the number of
characters, so an emoji-rich text stays within the limit however Meta counts.
"""

from __future__ import annotations

import re
from typing import Any

TEXT_LIMIT = 4096
INTERACTIVE_BODY_LIMIT = 1024
MAX_BUTTONS = 3
BUTTON_TITLE_LIMIT = 20
BUTTON_ID_LIMIT = 256
MAX_ROWS = 10
ROW_TITLE_LIMIT = 24
ROW_DESCRIPTION_LIMIT = 72
ROW_ID_LIMIT = 200
LIST_BUTTON_LABEL = "Voir les choix"
DEFAULT_BODY = "Choisissez une option :"
MORE_BODY = "Autres choix :"
ELLIPSIS = "…"

_BOUNDARIES = (re.compile(r"\n\s*\n"), re.compile(r"\n"), re.compile(r"(?<=[.!?…;:])\s+"), re.compile(r"\s+"))


def length(text: str) -> int:
    """Length in UTF-16 code units (≥ the number of characters)."""
    return len(text.encode("utf-16-le")) // 2


def _fit(text: str, limit: int) -> int:
    """The longest prefix length (in characters) of `text` within `limit` UTF-16 units."""
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return index
    return len(text)


def shorten(text: str, limit: int) -> str:
    """`text` cut to `limit` with an ellipsis if it is longer."""
    text = " ".join(text.split())
    if length(text) <= limit:
        return text
    return text[: _fit(text, limit - 1)].rstrip() + ELLIPSIS


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Pieces of at most `limit`, cut at a paragraph, line, sentence or word if possible."""
    text = text.strip()
    pieces: list[str] = []
    while length(text) > limit:
        window = text[: _fit(text, limit) + 1]
        cut = 0
        for boundary in _BOUNDARIES:
            ends = [m for m in boundary.finditer(window) if 0 < m.start() <= len(window) - 1]
            # Only accept a boundary that keeps a reasonably full piece.
            if ends and ends[-1].start() >= limit // 3:
                cut = ends[-1].start()
                rest_from = ends[-1].end()
                break
        if not cut:
            cut = rest_from = _fit(text, limit)
        pieces.append(text[:cut].rstrip())
        text = text[rest_from:].lstrip()
    if text:
        pieces.append(text)
    return pieces


def base(to: str, kind: str, content: dict[str, Any]) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": kind, kind: content}


def text_messages(to: str, text: str) -> list[dict[str, Any]]:
    return [base(to, "text", {"preview_url": False, "body": piece}) for piece in split_text(text)]


def image_message(to: str, link: str, caption: str = "") -> dict[str, Any]:
    image: dict[str, Any] = {"link": link}
    if caption:
        image["caption"] = shorten(caption, INTERACTIVE_BODY_LIMIT)
    return base(to, "image", image)


def read_receipt(wamid: str) -> dict[str, Any]:
    """Marks the citizen's message as read and shows the typing indicator."""
    return {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": wamid,
        "typing_indicator": {"type": "text"},
    }


def _choices(buttons: list[dict[str, Any]]) -> tuple[list[tuple[str, str]], list[str]]:
    """(title, payload) choices, and link lines for URL buttons (WhatsApp has no place for them)."""
    choices: list[tuple[str, str]] = []
    links: list[str] = []
    seen: set[str] = set()
    for button in buttons:
        if not isinstance(button, dict):
            continue
        title = " ".join(str(button.get("title") or "").split())
        url = button.get("url") or (button.get("payload") if button.get("type") == "web_url" else None)
        if url:
            links.append(f"{title} : {url}" if title else str(url))
            continue
        if not title:
            continue
        reply_id = _reply_id(str(button.get("payload") or title), title)
        if reply_id in seen:  # WhatsApp refuses duplicate ids
            continue
        seen.add(reply_id)
        choices.append((title, reply_id))
    return choices, links


def _reply_id(payload: str, title: str) -> str:
    """The id WhatsApp sends back on a tap: the payload, within the row id limit (the
    stricter one); a longer payload degrades to the title, which Rasa reads as text."""
    return payload if length(payload) <= ROW_ID_LIMIT else shorten(title, ROW_ID_LIMIT)


def _fits_reply_buttons(choices: list[tuple[str, str]]) -> bool:
    titles = [title for title, _ in choices]
    return (
        len(choices) <= MAX_BUTTONS
        and all(length(t) <= BUTTON_TITLE_LIMIT for t in titles)
        and len(set(titles)) == len(titles)
    )


def _body_and_lead(text: str) -> tuple[list[str], str]:
    """Text messages to send first, and the interactive body (≤ 1024)."""
    pieces = split_text(text) if text.strip() else []
    if not pieces:
        return [], DEFAULT_BODY
    if length(pieces[-1]) > INTERACTIVE_BODY_LIMIT:
        pieces = pieces[:-1] + split_text(pieces[-1], INTERACTIVE_BODY_LIMIT)
    return pieces[:-1], pieces[-1]


def buttons_messages(to: str, text: str, buttons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Reply buttons when ≤ 3 short choices, else lists of ≤ 10 rows (several if needed)."""
    choices, links = _choices(buttons)
    if links:
        text = "\n".join([text.rstrip(), *links]).strip()
    lead, body = _body_and_lead(text)
    messages = [base(to, "text", {"preview_url": False, "body": piece}) for piece in lead]
    if not choices:
        return messages + [base(to, "text", {"preview_url": False, "body": body})]
    if _fits_reply_buttons(choices):
        action = {
            "buttons": [
                {"type": "reply", "reply": {"id": reply_id, "title": t}}
                for t, reply_id in choices
            ]
        }
        return messages + [base(to, "interactive", {"type": "button", "body": {"text": body}, "action": action})]
    for start in range(0, len(choices), MAX_ROWS):
        rows = []
        for title, reply_id in choices[start : start + MAX_ROWS]:
            row = {"id": reply_id, "title": shorten(title, ROW_TITLE_LIMIT)}
            if row["title"] != title:
                row["description"] = shorten(title, ROW_DESCRIPTION_LIMIT)
            rows.append(row)
        interactive = {
            "type": "list",
            "body": {"text": body if start == 0 else MORE_BODY},
            "action": {"button": LIST_BUTTON_LABEL, "sections": [{"rows": rows}]},
        }
        messages.append(base(to, "interactive", interactive))
    return messages
