"""Custom actions of the action server (`rasa run actions --actions actions`)."""

from __future__ import annotations

import json
import logging
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from bot import replies
from bot.commune import load_commune
from bot.faq.store import get_store
from bot.faq.understanding import Understanding, understand
from bot.settings import get_settings

logger = logging.getLogger(__name__)

FALLBACK_COUNT = "fallback_count"
TOPIC_ENTITY = "faq_topic"
HANDOFF_PAYLOAD = "/human_handoff"


def topic_payload(topic_id: str) -> str:
    """The quick-reply payload that asks for one FAQ topic."""
    return "/faq" + json.dumps({TOPIC_ENTITY: topic_id}, separators=(",", ":"))


def agent_button() -> dict[str, str]:
    return {"title": replies.AGENT_BUTTON, "payload": HANDOFF_PAYLOAD}


def _understanding(tracker: Tracker) -> Understanding:
    return understand(tracker.latest_message or {}, get_settings().faq_min_confidence)


def _misses(tracker: Tracker) -> int:
    return int(tracker.get_slot(FALLBACK_COUNT) or 0)


def offer_suggestions(
    dispatcher: CollectingDispatcher, tracker: Tracker, candidates: list[tuple[str, float]]
) -> list[EventType]:
    """First miss: the likely topics and an agent; second miss in a row: the contact."""
    commune = load_commune()
    misses = _misses(tracker) + 1
    if misses >= 2:
        dispatcher.utter_message(
            text=replies.render(replies.SECOND_MISS, commune), buttons=[agent_button()]
        )
        return [SlotSet(FALLBACK_COUNT, 0.0)]
    store = get_store()
    buttons = [
        {"title": topic.label, "payload": topic_payload(topic.id)}
        for topic_id, _ in candidates[:3]
        if (topic := store.topic(topic_id)) is not None
    ]
    if buttons:
        dispatcher.utter_message(text=replies.SUGGEST, buttons=[*buttons, agent_button()])
    else:
        dispatcher.utter_message(text=replies.SUGGEST_NONE, buttons=[agent_button()])
    return [SlotSet(FALLBACK_COUNT, float(misses))]


class ActionFaq(Action):
    """Answers an FAQ topic with the staff's current text and the commune's facts."""

    def name(self) -> str:
        return "action_faq"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        chosen = next(tracker.get_latest_entity_values(TOPIC_ENTITY), None)
        if chosen:
            topic_id: str | None = str(chosen)
        else:
            understanding = _understanding(tracker)
            if understanding.kind != "faq":
                return offer_suggestions(dispatcher, tracker, understanding.candidates)
            topic_id = understanding.topic
        commune = load_commune()
        answer = get_store().answer(topic_id) if topic_id else None
        if answer is None:
            logger.error("No answer for FAQ topic %r", topic_id)
            dispatcher.utter_message(text=replies.render(replies.ANSWER_MISSING, commune))
        else:
            dispatcher.utter_message(text=commune.render(answer))
        return [SlotSet(FALLBACK_COUNT, 0.0), SlotSet("last_faq_topic", topic_id)]


class ActionFallback(Action):
    """The NLU was not confident: suggest topics, then give the contact details."""

    def name(self) -> str:
        return "action_guichet_fallback"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        return offer_suggestions(dispatcher, tracker, _understanding(tracker).candidates)


class ActionGreet(Action):
    def name(self) -> str:
        return "action_greet"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        dispatcher.utter_message(
            text=replies.render(replies.GREET, load_commune()), buttons=[agent_button()]
        )
        return []


class ActionHumanHandoff(Action):
    """The citizen asks for a person: the town hall's contact details and hours."""

    def name(self) -> str:
        return "action_human_handoff"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        dispatcher.utter_message(text=replies.render(replies.HANDOFF_CONTACT, load_commune()))
        return [SlotSet(FALLBACK_COUNT, 0.0)]


class ActionOutOfScope(Action):
    def name(self) -> str:
        return "action_out_of_scope"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        dispatcher.utter_message(
            text=replies.render(replies.OUT_OF_SCOPE, load_commune()), buttons=[agent_button()]
        )
        return []


class ActionReportProblem(Action):
    def name(self) -> str:
        return "action_report_problem"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        dispatcher.utter_message(text=replies.render(replies.REPORT_PROBLEM, load_commune()))
        return []
