"""What the citizen's message means, from Rasa's parse result.

One function decides between "answer this FAQ topic", "not sure: offer the likely
topics" and "another intent", so that the action server and `make eval` measure and do
exactly the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.faq.store import RETRIEVAL_INTENT

FALLBACK = "nlu_fallback"
# Topics answered even below the usual confidence threshold when they rank first: giving
# the emergency numbers to someone who did not need them costs little; missing a person
# in distress does not.
SAFETY_TOPICS = {"urgence": 0.1}


@dataclass(frozen=True)
class Understanding:
    # "faq": answer `topic`; "fallback": unsure, offer `candidates`; "intent": `intent`.
    kind: str
    intent: str
    topic: str | None = None
    confidence: float = 0.0
    candidates: list[tuple[str, float]] = field(default_factory=list)

    @property
    def label(self) -> str:
        """One word for evaluation: the topic id, `fallback`, or the intent name."""
        if self.kind == "faq":
            return self.topic or FALLBACK
        return "fallback" if self.kind == "fallback" else self.intent


def topic_ranking(parse: dict[str, Any]) -> list[tuple[str, float]]:
    """FAQ topics by decreasing confidence of the topic selector."""
    selectors = parse.get("response_selector") or {}
    # Rasa names a ResponseSelector's output after its `retrieval_intent`, or "default"
    # when none is set (Rasa's default recipe, compared with ours by `make eval`).
    selector = selectors.get(RETRIEVAL_INTENT) or selectors.get("default") or {}
    ranking = []
    for item in selector.get("ranking") or []:
        key = item.get("intent_response_key") or ""
        if key.startswith(RETRIEVAL_INTENT + "/"):
            ranking.append((key.split("/", 1)[1], float(item.get("confidence") or 0.0)))
    if not ranking:
        response = selector.get("response") or {}
        key = response.get("intent_response_key") or ""
        if key.startswith(RETRIEVAL_INTENT + "/"):
            ranking.append((key.split("/", 1)[1], float(response.get("confidence") or 0.0)))
    return ranking


def understand(parse: dict[str, Any], min_topic_confidence: float) -> Understanding:
    intent = (parse.get("intent") or {}).get("name") or FALLBACK
    confidence = float((parse.get("intent") or {}).get("confidence") or 0.0)
    ranking = topic_ranking(parse)
    if ranking and intent in (RETRIEVAL_INTENT, FALLBACK):
        top, top_confidence = ranking[0]
        if top in SAFETY_TOPICS and top_confidence >= SAFETY_TOPICS[top]:
            return Understanding("faq", RETRIEVAL_INTENT, top, top_confidence, ranking[:3])
    if intent == RETRIEVAL_INTENT:
        if ranking and ranking[0][1] >= min_topic_confidence:
            topic, topic_confidence = ranking[0]
            return Understanding("faq", intent, topic, topic_confidence, ranking[:3])
        return Understanding("fallback", FALLBACK, None, confidence, ranking[:3])
    if intent == FALLBACK:
        return Understanding("fallback", FALLBACK, None, confidence, ranking[:3])
    return Understanding("intent", intent, None, confidence, ranking[:3])
