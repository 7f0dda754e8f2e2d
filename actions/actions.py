"""Custom actions of the action server (`rasa run actions --actions actions`)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.handoff import ActionHumanHandoff, escalate  # noqa: F401 - re-exported for tests
from actions.outreach import answer_outreach_first, mention_crisis
from actions.privacy import first_contact_notice
from actions.reports import form_for_topic, quoted_reference
from bot import replies
from bot.channels.messenger_setup import domain_title
from bot.commune import load_commune
from bot.db.migrate import ensure_upgraded
from bot.faq import ratings
from bot.faq.store import get_store
from bot.faq.understanding import Understanding, understand
from bot.handoff import messages
from bot.settings import get_settings

logger = logging.getLogger(__name__)

FALLBACK_COUNT = "fallback_count"
TOPIC_ENTITY = "faq_topic"
RATING_ENTITY = "rating"
THEME_ENTITY = "faq_theme"
# Messenger shows at most 13 quick replies: 12 topics and "Parler à un agent".
MAX_THEME_TOPICS = 12
USEFUL, NOT_USEFUL = "utile", "pas_utile"
HANDOFF_PAYLOAD = "/human_handoff"
MISUNDERSTOOD = "Désolé, je n'arrive pas à vous répondre."
EMERGENCY_FIRST = messages.EMERGENCY_FIRST


def faq_payload(**entities: str) -> str:
    """A quick-reply payload on the `faq` intent with its entities (topic, rating, theme)."""
    return "/faq" + json.dumps(entities, separators=(",", ":"))


def topic_payload(topic_id: str) -> str:
    """The quick-reply payload that asks for one FAQ topic."""
    return faq_payload(**{TOPIC_ENTITY: topic_id})


def agent_button() -> dict[str, str]:
    return {"title": replies.AGENT_BUTTON, "payload": HANDOFF_PAYLOAD}


def rating_payload(topic_id: str, useful: bool) -> str:
    return faq_payload(**{TOPIC_ENTITY: topic_id, RATING_ENTITY: USEFUL if useful else NOT_USEFUL})


def rating_buttons(topic_id: str) -> list[dict[str, str]]:
    """The quick replies under an FAQ answer: rate it, or reach a person."""
    return [
        {"title": replies.RATE_USEFUL_BUTTON, "payload": rating_payload(topic_id, True)},
        {"title": replies.RATE_NOT_USEFUL_BUTTON, "payload": rating_payload(topic_id, False)},
        agent_button(),
    ]


def offer_theme(dispatcher: CollectingDispatcher, theme: str) -> list[EventType]:
    """A theme of the persistent menu: its topics as quick replies, and a person."""
    topics = [t for t in get_store().catalog.topics.values() if t.domain == theme]
    if not topics:
        dispatcher.utter_message(text=replies.SUGGEST_NONE, buttons=[agent_button()])
        return []
    text = replies.THEME_TOPICS.format(theme=domain_title(theme))
    if len(topics) > MAX_THEME_TOPICS:
        text += " " + replies.THEME_MORE
    buttons = [{"title": t.label, "payload": topic_payload(t.id)} for t in topics[:MAX_THEME_TOPICS]]
    dispatcher.utter_message(text=text, buttons=[*buttons, agent_button()])
    return []


async def record_rating(dispatcher: CollectingDispatcher, tracker: Tracker, topic_id: str, rating: str) -> None:
    """Stores the citizen's rating of an answer and thanks them; a database problem never
    reaches the citizen (the rating is lost, the conversation goes on)."""
    useful, url = rating == USEFUL, get_settings().database_url

    def store() -> None:
        ensure_upgraded(url)
        ratings.rate(url, tracker.sender_id, topic_id, useful, tracker.get_latest_input_channel() or "")

    try:
        await asyncio.to_thread(store)
    except Exception:  # noqa: BLE001 - any storage failure: log it, keep answering
        logger.exception("Could not record the rating of topic %r", topic_id)
    if useful:
        dispatcher.utter_message(text=replies.RATED_USEFUL)
    else:
        dispatcher.utter_message(text=replies.RATED_NOT_USEFUL, buttons=[agent_button()])


def _understanding(tracker: Tracker) -> Understanding:
    return understand(tracker.latest_message or {}, get_settings().faq_min_confidence)


def _misses(tracker: Tracker) -> int:
    return int(tracker.get_slot(FALLBACK_COUNT) or 0)


async def offer_suggestions(
    dispatcher: CollectingDispatcher, tracker: Tracker, candidates: list[tuple[str, float]]
) -> list[EventType]:
    """First miss: the likely topics and an agent; second miss in a row: a person."""
    misses = _misses(tracker) + 1
    if misses >= 2:
        dispatcher.utter_message(text=MISUNDERSTOOD)
        return await escalate(dispatcher, tracker, "misunderstanding")
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
        rating = next(tracker.get_latest_entity_values(RATING_ENTITY), None)
        if chosen and rating in (USEFUL, NOT_USEFUL) and get_store().topic(str(chosen)) is not None:
            await record_rating(dispatcher, tracker, str(chosen), str(rating))
            return []
        if not chosen and (theme := next(tracker.get_latest_entity_values(THEME_ENTITY), None)):
            return offer_theme(dispatcher, str(theme))
        if not chosen and quoted_reference(tracker):
            return [FollowupAction("action_track_request")]  # "où en est SIG-7K2P ?"
        if chosen:
            topic_id: str | None = str(chosen)
        else:
            understanding = _understanding(tracker)
            # A published rumour, or the crisis in force, is answered first (actions/outreach.py).
            if await answer_outreach_first(dispatcher, tracker, answers_anyway=understanding.kind == "faq"):
                return [SlotSet(FALLBACK_COUNT, 0.0)]
            if understanding.kind != "faq":
                return await offer_suggestions(dispatcher, tracker, understanding.candidates)
            topic_id = understanding.topic
        commune = load_commune()
        answer = get_store().answer(topic_id) if topic_id else None
        if answer is None:
            logger.error("No answer for FAQ topic %r", topic_id)
            dispatcher.utter_message(text=replies.render(replies.ANSWER_MISSING, commune))
        events: list[EventType] = [SlotSet(FALLBACK_COUNT, 0.0), SlotSet("last_faq_topic", topic_id)]
        form = form_for_topic(topic_id)
        escalates = topic_id in get_settings().always_human_topics
        if answer is not None:
            # An answer the conversation goes on from (a form, a person) is not rated.
            buttons = [] if form or escalates else rating_buttons(str(topic_id))
            dispatcher.utter_message(text=commune.render(answer), buttons=buttons)
        if form:
            # The answer says the assistant records reports and complaints: start the form.
            return [*events, FollowupAction(form)]
        if escalates:
            # Emergencies and complaints always reach a person, after the answer (which, for
            # an emergency, gives the emergency numbers first).
            if answer is None and topic_id == "urgence":
                dispatcher.utter_message(text=EMERGENCY_FIRST)
            events += await escalate(dispatcher, tracker, "topic", topic=str(topic_id))
        return events


class ActionFallback(Action):
    """The NLU was not confident: suggest topics, then give the contact details."""

    def name(self) -> str:
        return "action_guichet_fallback"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        if quoted_reference(tracker):
            return [FollowupAction("action_track_request")]  # a bare "SIG-7K2P"
        if await answer_outreach_first(dispatcher, tracker, answers_anyway=False):
            return [SlotSet(FALLBACK_COUNT, 0.0)]
        return await offer_suggestions(dispatcher, tracker, _understanding(tracker).candidates)


class ActionGreet(Action):
    def name(self) -> str:
        return "action_greet"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        commune = load_commune()
        await mention_crisis(dispatcher)  # the crisis message in force, first
        text = replies.render(replies.GREET, commune)
        if notice := await first_contact_notice(tracker, commune):
            text += "\n" + notice  # the privacy notice, at the first contact only
        dispatcher.utter_message(text=text, buttons=[agent_button()])
        return []


class ActionOutOfScope(Action):
    def name(self) -> str:
        return "action_out_of_scope"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        if await answer_outreach_first(dispatcher, tracker, answers_anyway=False):
            return []
        dispatcher.utter_message(
            text=replies.render(replies.OUT_OF_SCOPE, load_commune()), buttons=[agent_button()]
        )
        return []

