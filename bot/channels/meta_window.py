"""Meta's messaging windows for Messenger and Instagram, and a record of undelivered sends.

Policy (Messenger Platform policy and message tags, Instagram send-message docs; copied
in tests/simulators/graph_api.py):
- within 24 hours of the citizen's last message: free sending, `messaging_type`
  `RESPONSE` (a reply) or `UPDATE` (proactive);
- after that, only a human agent may still write, within 7 days of that message, with
  `messaging_type: MESSAGE_TAG, tag: HUMAN_AGENT` (automated messages are disallowed);
- otherwise nothing may be sent (Meta answers error 10, subcode 2018278).

When the citizen last wrote comes from the webhooks this process received (a cache) and
otherwise from Rasa's tracker store (the last `user` event of the conversation, with
Meta's own timestamp from its metadata), so a restart or another replica forgets nothing.
The cache can only prove the standard window open; any other verdict is checked against
the tracker store.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

logger = logging.getLogger(__name__)

STANDARD_WINDOW = 24 * 3600
HUMAN_AGENT_WINDOW = 7 * 24 * 3600
# Don't start a send in the last minute of a window: it could close on the way.
MARGIN = 60

RESPONSE = "RESPONSE"
UPDATE = "UPDATE"
MESSAGE_TAG = "MESSAGE_TAG"
HUMAN_AGENT = "HUMAN_AGENT"


@dataclass(frozen=True)
class Permission:
    allowed: bool
    messaging_type: str | None
    tag: str | None
    reason: str
    last_user_message: float | None

    def age_hours(self, now: float) -> float | None:
        if self.last_user_message is None:
            return None
        return round((now - self.last_user_message) / 3600, 2)


def decide(last: float | None, now: float, *, human_agent: bool, proactive: bool) -> Permission:
    """What Meta's policy allows for a message to a citizen who last wrote at `last`."""
    if last is None:
        return Permission(False, None, None, "no_user_message", None)
    age = now - last
    if age < STANDARD_WINDOW - MARGIN:
        kind = UPDATE if proactive and not human_agent else RESPONSE
        return Permission(True, kind, None, "standard_window", last)
    if not human_agent:
        return Permission(False, None, None, "window_closed", last)
    if age < HUMAN_AGENT_WINDOW - MARGIN:
        return Permission(True, MESSAGE_TAG, HUMAN_AGENT, "human_agent_tag", last)
    return Permission(False, None, None, "human_agent_window_closed", last)


def last_user_message_time(tracker: Any, channel: str) -> float | None:
    """When the citizen last wrote on `channel`, from a Rasa tracker (Unix seconds).

    Meta's timestamp, kept in the event's metadata under the channel's name, wins over
    the time Rasa processed the message: a webhook redelivered hours later must not reopen
    the window.
    """
    if tracker is None:
        return None
    for event in reversed(list(tracker.events)):
        if getattr(event, "type_name", None) != "user":
            continue
        input_channel = getattr(event, "input_channel", None)
        if input_channel and input_channel != channel:
            continue
        metadata = getattr(event, "metadata", None) or {}
        stamp = (metadata.get(channel) or {}).get("timestamp") if isinstance(metadata, dict) else None
        if isinstance(stamp, (int, float)) and not isinstance(stamp, bool) and stamp > 0:
            return float(stamp) / 1000
        return float(event.timestamp)
    return None


Lookup = Callable[[str], Awaitable[float | None]]


class ConversationWindows:
    """When each citizen last wrote: the webhooks seen (cache), else the tracker store."""

    def __init__(self, channel: str, lookup: Lookup, max_size: int = 50_000) -> None:
        self.channel = channel
        self._lookup = lookup
        self._last: OrderedDict[str, float] = OrderedDict()
        self.max_size = max_size

    def note(self, sender: str, timestamp: float) -> None:
        """A message of `sender` written at `timestamp` (Unix seconds) was received."""
        previous = self._last.pop(sender, 0.0)
        self._last[sender] = max(previous, timestamp)
        while len(self._last) > self.max_size:
            self._last.popitem(last=False)

    async def permission(
        self, sender: str, *, human_agent: bool, proactive: bool, now: float | None = None
    ) -> Permission:
        now = time.time() if now is None else now
        verdict = decide(self._last.get(sender), now, human_agent=human_agent, proactive=proactive)
        if verdict.reason == "standard_window":
            return verdict
        try:
            stored = await self._lookup(sender)
        except Exception:  # noqa: BLE001 - an unreadable store leaves the cache as the only source
            logger.exception("%s: tracker store unreadable for %s", self.channel, sender)
            stored = None
        if stored is not None:
            self.note(sender, stored)
        return decide(self._last.get(sender), now, human_agent=human_agent, proactive=proactive)


@dataclass
class Undelivered:
    recipient: str
    reason: str  # window_closed | human_agent_window_closed | no_user_message | token_invalid | graph_error
    code: int | None
    detail: str
    sender: str  # bot | human_agent
    at: float


class DeliveryLog:
    """The last undelivered messages per recipient (bounded), newest last.

    Each one is also logged as one structured line: `<reason> {json}`.
    """

    def __init__(self, channel: str, per_recipient: int = 20, recipients: int = 10_000) -> None:
        self.channel = channel
        self.per_recipient = per_recipient
        self.recipients = recipients
        self._items: OrderedDict[str, deque[Undelivered]] = OrderedDict()

    def record(self, recipient: str, reason: str, *, code: int | None = None, detail: str = "",
               human_agent: bool = False, extra: dict[str, Any] | None = None) -> None:
        item = Undelivered(recipient, reason, code, detail[:500], "human_agent" if human_agent else "bot", time.time())
        line = {"channel": self.channel, **asdict(item), **(extra or {})}
        logger.warning("%s %s", reason, json.dumps(line, ensure_ascii=False))
        items = self._items.pop(recipient, None) or deque(maxlen=self.per_recipient)
        items.append(item)
        self._items[recipient] = items
        while len(self._items) > self.recipients:
            self._items.popitem(last=False)

    def for_recipient(self, recipient: str) -> list[dict[str, Any]]:
        return [asdict(item) for item in self._items.get(recipient, ())]
