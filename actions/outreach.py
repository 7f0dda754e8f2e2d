"""Alerts and news, crisis mode, rumours and consultations (bot/outreach).

- Subscribing by chat ("alertes", "je veux être prévenu des travaux") records the topics
  named, or asks for them with quick replies; on Messenger it also asks for Meta's
  notification opt-in, without which nothing can be sent after 24 hours.
- While a crisis message is in force the greeting mentions it, and a question about it
  (its keywords, or close to its text) gets it first, with the official link.
- A question close to a published rumour gets the official "vrai / faux" answer, its
  source and date, when the NLU says faq, fallback, out of scope or check_rumour.
- An open consultation is offered on request and at the end of a conversation; one vote
  per citizen.

Every service call runs in a thread; the database down gets the contact details.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from bot import replies
from bot.channels import receipts
from bot.commune import load_commune
from bot.db.outreach_models import TOPICS
from bot.outreach import polls as poll_rules
from bot.outreach import texts
from bot.outreach.crisis import Crisis, CrisisService
from bot.outreach.matching import normalise
from bot.outreach.polls import Polls
from bot.outreach.rumours import VERDICT_LABELS, RumourEntry, Rumours
from bot.outreach.subscriptions import ALL, Subscriptions, topics_in
from bot.settings import get_settings

logger = logging.getLogger(__name__)

TOPIC_ENTITY = "alert_topic"
POLL_SLOT = "poll_offered"
OPTIN_AGAIN_AFTER_DAYS = 7  # Meta: one request per title per person per week


def _channel(tracker: Tracker) -> str:
    return tracker.get_latest_input_channel() or "inconnu"


def _text(tracker: Tracker) -> str:
    message = tracker.latest_message or {}
    metadata = message.get("metadata") or {}
    return str(metadata.get("full_text") or message.get("text") or "")


def _typed(tracker: Tracker) -> bool:
    """The citizen typed the message (rather than tapping a button with a payload)."""
    return bool(_text(tracker)) and not _text(tracker).startswith("/")


def _url() -> str:
    return get_settings().database_url


def _contact_problem(dispatcher: CollectingDispatcher) -> None:
    dispatcher.utter_message(text=replies.render(texts.SUBSCRIPTION_FAILED, load_commune()))


def topic_button(topic: str, intent: str = "subscribe_alerts") -> dict[str, str]:
    return {"title": texts.TOPIC_BUTTONS[topic], "payload": f'/{intent}{{"{TOPIC_ENTITY}":"{topic}"}}'}


def crisis_text(crisis: Crisis) -> str:
    until = texts.CRISIS_UNTIL.format(until=texts.local_date(crisis.ends_at, get_settings().timezone, True))
    return texts.CRISIS.format(title=crisis.title, message=crisis.message, link=crisis.link) + "\n" + until


def rumour_text(rumour: RumourEntry) -> str:
    return texts.RUMOUR.format(verdict=VERDICT_LABELS.get(rumour.verdict, rumour.verdict.upper()),
                               statement=rumour.statement, answer=rumour.answer, source=rumour.source,
                               date=rumour.source_date.strftime("%d/%m/%Y"))


async def active_crisis() -> Crisis | None:
    try:
        return await asyncio.to_thread(lambda: CrisisService(_url()).active())
    except Exception:  # noqa: BLE001 - the greeting and answers go on without it
        logger.exception("Crisis message unreadable")
        return None


async def mention_crisis(dispatcher: CollectingDispatcher) -> bool:
    """At greeting: the crisis message in force, if any."""
    crisis = await active_crisis()
    if crisis is not None:
        dispatcher.utter_message(text=crisis_text(crisis))
    return crisis is not None


async def answer_outreach_first(dispatcher: CollectingDispatcher, tracker: Tracker, answers_anyway: bool) -> bool:
    """Before an FAQ answer, a fallback or an out-of-scope reply: the crisis message when
    the question is about it, and a published rumour's answer when it matches. Returns True
    when that answered the question (the caller stops); with `answers_anyway` (an FAQ
    topic was recognised) the crisis message only comes first."""
    if not _typed(tracker):
        return False
    if await offer_unsubscribe(dispatcher, tracker):  # a bare "stop" the NLU was unsure of
        return True
    question = _text(tracker)
    crisis = await active_crisis()
    crisis_said = False
    if crisis is not None and crisis.concerns(question):
        dispatcher.utter_message(text=crisis_text(crisis))
        crisis_said = True
    intent = ((tracker.latest_message or {}).get("intent") or {}).get("name")
    try:
        rumour = await asyncio.to_thread(lambda: Rumours(_url()).match(
            question, get_settings().rumour_min_similarity, intent == "check_rumour"))
    except Exception:  # noqa: BLE001 - no rumour check: the usual answer follows
        logger.exception("Rumours unreadable")
        rumour = None
    if rumour is not None:
        dispatcher.utter_message(text=rumour_text(rumour))
        return True
    return crisis_said and not answers_anyway


STOP_WORDS = frozenset({"stop", "stopp", "stoppe", "stopper", "arret", "arreter", "arrete", "arretez"})


def _form_just_cancelled(tracker: Tracker) -> bool:
    """Whether this cancel deactivated a form (the usual "annuler" inside a form)."""
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            return False
        if event.get("event") == "action" and event.get("name") == "action_deactivate_loop":
            return True
    return False


async def offer_unsubscribe(dispatcher: CollectingDispatcher, tracker: Tracker) -> bool:
    """"stop" with nothing to cancel, from a subscriber: offer to stop the alerts."""
    if normalise(_text(tracker)) not in STOP_WORDS or _form_just_cancelled(tracker):
        return False
    try:
        topics = await asyncio.to_thread(lambda: Subscriptions(_url()).topics_of(_channel(tracker), tracker.sender_id))
    except Exception:  # noqa: BLE001 - then it is just a cancel
        logger.exception("Subscriptions unreadable")
        return False
    if not topics:
        return False
    dispatcher.utter_message(
        text=texts.OFFER_UNSUBSCRIBE.format(topics=texts.topics_text(topics)),
        buttons=[{"title": texts.STOP_ALL_BUTTON, "payload": f'/unsubscribe_alerts{{"{TOPIC_ENTITY}":"{ALL}"}}'},
                 {"title": texts.KEEP_BUTTON, "payload": "/deny"}],
    )
    return True


class ActionSubscribeAlerts(Action):
    def name(self) -> str:
        return "action_subscribe_alerts"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        channel, conversation = _channel(tracker), tracker.sender_id
        chosen = next(tracker.get_latest_entity_values(TOPIC_ENTITY), None)
        wanted = [str(chosen)] if chosen else topics_in(_text(tracker))
        try:
            service = await asyncio.to_thread(Subscriptions, _url())
            if not wanted:
                current = await asyncio.to_thread(service.topics_of, channel, conversation)
                self.ask(dispatcher, current, channel)
                return []
            now = await asyncio.to_thread(service.subscribe, channel, conversation, wanted)
        except Exception:  # noqa: BLE001 - never silent
            logger.exception("Subscription of %s failed", conversation)
            _contact_problem(dispatcher)
            return []
        others = [topic_button(t) for t in TOPICS if t not in now]
        dispatcher.utter_message(
            text=texts.SUBSCRIBED.format(topics=texts.topics_text(now),
                                         channel=texts.CHANNEL_NAMES.get(channel, "de conversation")),
            buttons=others or None,
        )
        if channel == "messenger":
            await self.ask_messenger_optin(dispatcher, tracker)
        return []

    @staticmethod
    def ask(dispatcher: CollectingDispatcher, current: list[str], channel: str) -> None:
        buttons = [topic_button(t) for t in TOPICS if t not in current]
        if not current:
            buttons.append({"title": texts.ALL_BUTTON, "payload": f'/subscribe_alerts{{"{TOPIC_ENTITY}":"{ALL}"}}'})
            dispatcher.utter_message(text=texts.ASK_TOPICS, buttons=buttons)
        elif buttons:
            dispatcher.utter_message(text=texts.ASK_MORE_TOPICS.format(topics=texts.topics_text(current)),
                                     buttons=buttons)
        else:
            dispatcher.utter_message(text=texts.SUBSCRIBED.format(
                topics=texts.topics_text(current), channel=texts.CHANNEL_NAMES.get(channel, "de conversation")))

    @staticmethod
    async def ask_messenger_optin(dispatcher: CollectingDispatcher, tracker: Tracker) -> None:
        """Meta's notification-messages request, unless already accepted or asked this week."""
        from bot.db import utcnow

        psid = tracker.sender_id
        page_id = str((((tracker.latest_message or {}).get("metadata") or {}).get("messenger") or {}).get("page_id") or "")
        url = _url()
        try:
            optin = await asyncio.to_thread(receipts.optin_of, url, psid, texts.MESSENGER_OPTIN_PAYLOAD)
            if optin is not None and optin.status == "active":
                return
            if optin is not None and optin.requested_at and (utcnow() - optin.requested_at).days < OPTIN_AGAIN_AFTER_DAYS:
                return
            await asyncio.to_thread(receipts.mark_optin_requested, url, page_id, psid,
                                    texts.MESSENGER_OPTIN_PAYLOAD, texts.MESSENGER_OPTIN_TITLE)
        except Exception:  # noqa: BLE001 - the subscription stands; the opt-in can wait
            logger.exception("Messenger opt-in state of %s unreadable", psid)
            return
        dispatcher.utter_message(text=texts.MESSENGER_OPTIN_INTRO)
        dispatcher.utter_message(json_message={"attachment": {"type": "template", "payload": {
            "template_type": "notification_messages",
            "title": texts.MESSENGER_OPTIN_TITLE,
            "payload": texts.MESSENGER_OPTIN_PAYLOAD,
            "notification_messages_timezone": get_settings().timezone,
        }}})


class ActionUnsubscribeAlerts(Action):
    def name(self) -> str:
        return "action_unsubscribe_alerts"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        channel, conversation = _channel(tracker), tracker.sender_id
        chosen = next(tracker.get_latest_entity_values(TOPIC_ENTITY), None)
        named = [str(chosen)] if chosen else topics_in(_text(tracker))
        try:
            service = await asyncio.to_thread(Subscriptions, _url())
            current = await asyncio.to_thread(service.topics_of, channel, conversation)
            if not current:
                dispatcher.utter_message(text=texts.NOT_SUBSCRIBED)
                return []
            everything = not named or ALL in named
            remaining = await asyncio.to_thread(service.unsubscribe, channel, conversation,
                                                None if everything else named)
        except Exception:  # noqa: BLE001 - never silent
            logger.exception("Unsubscription of %s failed", conversation)
            _contact_problem(dispatcher)
            return []
        if not remaining:
            dispatcher.utter_message(text=texts.UNSUBSCRIBED_ALL)
        else:
            removed = [t for t in current if t not in remaining]
            dispatcher.utter_message(text=texts.UNSUBSCRIBED_SOME.format(
                removed=texts.topics_text(removed) or "—", topics=texts.topics_text(remaining)))
        return []


class ActionCrisisInfo(Action):
    def name(self) -> str:
        return "action_crisis_info"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        crisis = await active_crisis()
        dispatcher.utter_message(text=crisis_text(crisis) if crisis else texts.NO_CRISIS)
        return []


class ActionCheckRumour(Action):
    def name(self) -> str:
        return "action_check_rumour"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        if await answer_outreach_first(dispatcher, tracker, answers_anyway=False):
            return []
        commune = load_commune()
        dispatcher.utter_message(text=commune.render(texts.NO_RUMOUR),
                                 buttons=[{"title": replies.AGENT_BUTTON, "payload": "/human_handoff"}])
        return []


class ActionOfferPoll(Action):
    """On request, and after "au revoir": the newest open consultation not yet answered."""

    def name(self) -> str:
        return "action_offer_poll"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        intent = ((tracker.latest_message or {}).get("intent") or {}).get("name")
        at_end = intent != "ask_poll"
        try:
            poll = await asyncio.to_thread(
                lambda: Polls(_url()).to_offer(_channel(tracker), tracker.sender_id, None, at_end))
        except Exception:  # noqa: BLE001 - at the end of a conversation, say nothing more
            logger.exception("Consultations unreadable")
            if not at_end:
                _contact_problem(dispatcher)
            return []
        if poll is None:
            if not at_end:
                dispatcher.utter_message(text=texts.NO_POLL)
            return []
        if at_end and tracker.get_slot(POLL_SLOT) == str(poll.id):
            return []  # offered once in this conversation is enough
        until = texts.local_date(poll.ends_at, get_settings().timezone)
        text = (texts.POLL_AT_END.format(question=poll.question) if at_end
                else texts.POLL_OFFER.format(question=poll.question, until=until))
        dispatcher.utter_message(text=text, buttons=poll_rules.vote_buttons(poll))
        return [SlotSet(POLL_SLOT, str(poll.id))]


class ActionVote(Action):
    def name(self) -> str:
        return "action_vote"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        channel, conversation = _channel(tracker), tracker.sender_id
        raw_poll = next(tracker.get_latest_entity_values("poll_id"), None)
        raw_choice = next(tracker.get_latest_entity_values("poll_choice"), None)
        try:
            service = await asyncio.to_thread(Polls, _url())
            poll_id = int(raw_poll) if str(raw_poll or "").isdigit() else None
            if poll_id is None and str(tracker.get_slot(POLL_SLOT) or "").isdigit():
                poll_id = int(tracker.get_slot(POLL_SLOT))
            if poll_id is None:
                open_polls = await asyncio.to_thread(service.open_polls)
                poll_id = open_polls[0].id if len(open_polls) == 1 else None
            poll = await asyncio.to_thread(service.get, poll_id) if poll_id else None
            if poll is None:
                dispatcher.utter_message(text=texts.VOTE_NO_POLL)
                return []
            position = poll_rules.parse_position(raw_choice)
            if position is None and _typed(tracker):
                choice = poll_rules.choice_in_text(poll, _text(tracker))
                position = choice.position if choice else None
            if position is None:
                dispatcher.utter_message(text=texts.VOTE_UNKNOWN, buttons=poll_rules.vote_buttons(poll))
                return [SlotSet(POLL_SLOT, str(poll.id))]
            outcome, poll, choice = await asyncio.to_thread(service.vote, poll.id, position, channel, conversation)
        except Exception:  # noqa: BLE001 - never silent
            logger.exception("Vote of %s failed", conversation)
            dispatcher.utter_message(text=texts.VOTE_FAILED)
            return []
        if outcome == poll_rules.RECORDED and poll and choice:
            until = texts.local_date(poll.ends_at, get_settings().timezone)
            dispatcher.utter_message(text=texts.VOTE_RECORDED.format(choice=choice.label, until=until))
        elif outcome == poll_rules.ALREADY_VOTED:
            dispatcher.utter_message(text=texts.VOTE_ALREADY)
        elif outcome == poll_rules.CLOSED:
            dispatcher.utter_message(text=texts.VOTE_CLOSED)
        else:
            dispatcher.utter_message(text=texts.VOTE_UNKNOWN, buttons=poll_rules.vote_buttons(poll) if poll else None)
        return [SlotSet(POLL_SLOT, str(poll.id))] if poll else []
