"""The safety net every Guichet channel goes through: nobody is left in silence.

Whatever fails behind Rasa (the action server down, a policy predicting nothing, an
exception), a citizen's message gets at least the town hall's contact details, unless an
agent has taken the conversation over (it is then paused on purpose).
"""

from __future__ import annotations

import logging
import time
import unicodedata
from collections.abc import Awaitable, Callable
from typing import Any

from rasa.core.channels.channel import OutputChannel, UserMessage

from bot import metrics, replies
from bot.commune import load_commune

logger = logging.getLogger(__name__)

# Longer messages are cut for understanding; the whole text is kept in the metadata.
MAX_TEXT_CHARS = 2000


class CountingOutputChannel:
    """Wraps the real output channel and counts every message the bot sends through it."""

    def __init__(self, inner: OutputChannel) -> None:
        self.inner = inner
        self.sent = 0

    def name(self) -> str:
        return self.inner.name()

    def __getattr__(self, item: str) -> Any:
        attribute = getattr(self.inner, item)
        if not item.startswith("send_"):
            return attribute

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.sent += 1
            return await attribute(*args, **kwargs)

        return counted


def clean_text(text: str) -> str:
    """Unicode-normalised text without control characters (newlines and tabs kept)."""
    text = unicodedata.normalize("NFC", text)
    return "".join(
        ch for ch in text if ch in "\n\t" or unicodedata.category(ch)[0] != "C" or ch == "\u200d"
    ).strip()


def prepare_text(text: str, metadata: dict[str, Any]) -> str:
    """The text Rasa reads; a cut message keeps its full text in `metadata`."""
    text = clean_text(text)
    if len(text) > MAX_TEXT_CHARS:
        metadata["full_text"] = text
        return text[:MAX_TEXT_CHARS]
    return text


async def _is_paused(agent: Any, sender_id: str) -> bool:
    try:
        tracker = await agent.tracker_store.retrieve(sender_id)
    except Exception:  # noqa: BLE001 - the store being down is exactly when to answer
        logger.exception("Tracker store unreachable while checking conversation %s", sender_id)
        return False
    return bool(tracker and tracker.is_paused())


async def handle_with_safety_net(
    on_new_message: Callable[[UserMessage], Awaitable[Any]], message: UserMessage, agent: Any
) -> None:
    """Lets Rasa handle `message`; if the bot said nothing, sends the contact details."""
    counting = CountingOutputChannel(message.output_channel)
    message.output_channel = counting  # type: ignore[assignment]
    channel = message.input_channel or "unknown"
    metrics.MESSAGES.labels(channel).inc()
    failed = False
    started = time.perf_counter()
    try:
        await on_new_message(message)
    except Exception:  # noqa: BLE001 - never leave the citizen without an answer
        logger.exception("Rasa failed on a message of conversation %s", message.sender_id)
        failed = True
    metrics.MESSAGE_SECONDS.labels(channel).observe(time.perf_counter() - started)
    if counting.sent:
        return
    if not failed and agent is not None and await _is_paused(agent, message.sender_id):
        return
    metrics.NO_REPLY.labels(channel).inc()
    logger.warning(
        "No reply for conversation %s (action server down?): sent the contact details",
        message.sender_id,
    )
    try:
        text = replies.render(replies.TECHNICAL_PROBLEM, load_commune())
    except Exception:  # noqa: BLE001 - a broken settings file must not silence us either
        logger.exception("Commune settings unreadable")
        text = "Désolé, je rencontre un problème technique. Merci de contacter directement votre mairie."
    await counting.inner.send_text_message(message.sender_id, text)
