"""WhatsApp's customer service window, and a record of what could not be delivered.

WhatsApp lets a business send free-form messages only within 24 hours of the citizen's
last message; after that, only a pre-approved *template* may be sent (error 131047
"Re-engagement message" otherwise). Guichet sends no templates (out of scope): outside
the window it does not send, logs it and records the reason here, where staff tools can
read it (`GET /webhooks/whatsapp/deliveries`).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 24 * 3600
# Don't start a send in the last minute of the window: it could close on the way.
WINDOW_MARGIN = 60


@dataclass
class Failure:
    recipient: str
    reason: str  # window_closed | token_invalid | undeliverable | rejected | unreachable
    code: int | None
    detail: str
    message_type: str
    at: float


class DeliveryLog:
    """The last failures per recipient (bounded), newest last."""

    def __init__(self, per_recipient: int = 20, recipients: int = 10_000) -> None:
        self.per_recipient = per_recipient
        self.recipients = recipients
        self._failures: OrderedDict[str, deque[Failure]] = OrderedDict()

    def record(self, recipient: str, reason: str, code: int | None, detail: str, message_type: str) -> None:
        logger.warning(
            "whatsapp: message (%s) to %s not delivered: %s (code %s) %s",
            message_type, recipient, reason, code, detail,
        )
        failures = self._failures.pop(recipient, None) or deque(maxlen=self.per_recipient)
        failures.append(Failure(recipient, reason, code, detail[:500], message_type, time.time()))
        self._failures[recipient] = failures
        while len(self._failures) > self.recipients:
            self._failures.popitem(last=False)

    def failures(self, recipient: str) -> list[dict[str, Any]]:
        return [asdict(f) for f in self._failures.get(recipient, ())]


TrackerLookup = Callable[[str], Any]  # async (sender_id) -> float | None


class ServiceWindow:
    """When each citizen last wrote: from the webhooks seen, else Rasa's tracker store.

    The cache can only prove the window open: a "closed" verdict is checked again against
    the tracker store (another Rasa replica may have received the citizen's last message).
    """

    def __init__(self, lookup: TrackerLookup, max_size: int = 50_000) -> None:
        self._lookup = lookup
        self._last: OrderedDict[str, float] = OrderedDict()
        self.max_size = max_size

    def note(self, wa_id: str, timestamp: float) -> None:
        """A message of `wa_id` written at `timestamp` (Unix seconds) was received."""
        previous = self._last.pop(wa_id, 0.0)
        self._last[wa_id] = max(previous, timestamp)
        while len(self._last) > self.max_size:
            self._last.popitem(last=False)

    @staticmethod
    def _open(last: float | None, now: float) -> bool:
        return last is not None and now - last < WINDOW_SECONDS - WINDOW_MARGIN

    async def last_message(self, wa_id: str) -> float | None:
        """The time of the citizen's last message, from the store (refreshing the cache)."""
        try:
            stored = await self._lookup(wa_id)
        except Exception:  # noqa: BLE001 - an unreadable store leaves the cache as the only source
            logger.exception("whatsapp: tracker store unreadable for %s", wa_id)
            stored = None
        if stored is not None:
            self.note(wa_id, stored)
        return self._last.get(wa_id)

    async def is_open(self, wa_id: str) -> tuple[bool, float | None]:
        now = time.time()
        cached = self._last.get(wa_id)
        if self._open(cached, now):
            return True, cached
        last = await self.last_message(wa_id)
        return self._open(last, now), last


def last_user_message_time(tracker: Any) -> float | None:
    """The time the citizen wrote their last message in a Rasa tracker.

    WhatsApp's own timestamp (kept in the metadata) wins over the time Rasa processed the
    message: a webhook redelivered hours later must not reopen the window.
    """
    if tracker is None:
        return None
    for event in reversed(list(tracker.events)):
        if getattr(event, "type_name", None) != "user":
            continue
        metadata = getattr(event, "metadata", None) or {}
        stamp = (metadata.get("whatsapp") or {}).get("timestamp") if isinstance(metadata, dict) else None
        if isinstance(stamp, (int, float)):
            return float(stamp)
        return float(event.timestamp)
    return None
