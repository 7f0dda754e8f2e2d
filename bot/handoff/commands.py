"""What a citizen's message means while their conversation is with the handoff.

While the conversation is paused, Rasa still reads each message (NLU) but says nothing;
the console's watcher reads it from the tracker store and acts on "annuler". While an
agent is talking with the citizen, a long sentence such as « je veux annuler mon
rendez-vous » is for the agent: only a short message (or the quick reply) gives the bot back.
"""

from __future__ import annotations

import re
import unicodedata

from bot.handoff.tracker_feed import TrackerEvent

CANCEL_PAYLOAD = "/cancel"
CANCEL_WORDS = {
    "annuler", "annule", "annul", "anuler", "j annule", "stop", "quitter", "laisse tomber",
    "laissez tomber", "annuler svp", "annuler stp", "annuler s il vous plait",
}
MAX_CANCEL_WORDS = 3
MIN_CANCEL_CONFIDENCE = 0.8


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^\w]+", " ", text).split())


def is_cancel(event: TrackerEvent) -> bool:
    if event.type != "user":
        return False
    raw = event.text.strip()
    if raw.startswith(CANCEL_PAYLOAD):
        return True
    words = normalise(raw)
    if words in CANCEL_WORDS:
        return True
    return (
        event.intent == "cancel"
        and event.intent_confidence >= MIN_CANCEL_CONFIDENCE
        and len(words.split()) <= MAX_CANCEL_WORDS
    )
