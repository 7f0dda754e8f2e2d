"""Handing a conversation to a person (bot/handoff), and the callback form.

- An agent can answer now (town hall open, an agent online): "Je vous mets en relation",
  the queue position and expected wait, then `ConversationPaused` (the bot stays silent;
  the console gives the conversation back to the bot when done or on "annuler").
- Nobody can: a ticket with a reference, the next opening time, the contact details, and
  the offer to be called back (callback_form: phone or e-mail, explicit consent).
- The database unreachable: the contact details, as every dead end.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import ConversationPaused, EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from bot import replies
from bot.commune import load_commune
from bot.handoff import messages
from bot.handoff.commands import normalise
from bot.handoff.service import Availability, get_service

logger = logging.getLogger(__name__)

FALLBACK_COUNT = "fallback_count"
REFERENCE_SLOT = "handoff_reference"
CONTACT_SLOT = "callback_contact"
CONSENT_SLOT = "callback_consent"
PHONE = re.compile(r"^(?:\+33|0033|0)[1-9]\d{8}$")
INTERNATIONAL_PHONE = re.compile(r"^\+\d{8,15}$")
EMAIL = re.compile(r"^[^@\s<>\"']{1,64}@[A-Za-z0-9.-]{1,185}\.[A-Za-z]{2,24}$")
YES = {"oui", "ok", "d accord", "daccord", "j accepte", "oui j accepte", "accepte", "yes", "ouais", "volontiers"}
NO = {"non", "non merci", "nan", "je refuse", "refuse", "no", "pas d accord"}


def cancel_button() -> dict[str, str]:
    return {"title": messages.CANCEL_BUTTON, "payload": "/cancel"}


def callback_button() -> dict[str, str]:
    return {"title": messages.CALLBACK_BUTTON, "payload": "/request_callback"}


def citizen_summary(tracker: Tracker, count: int = 3) -> str:
    """The citizen's last messages, for the agent who picks up the request."""
    texts = [
        str(e.get("text") or "") for e in tracker.events
        if e.get("event") == "user" and e.get("text") and not str(e.get("text")).startswith("/")
    ]
    return "\n".join(texts[-count:])


def _why(availability: Availability) -> str:
    if availability.is_open:
        return messages.WHY_BUSY
    if availability.closed_reason:
        return messages.WHY_CLOSED.format(reason=availability.closed_reason)
    return messages.WHY_CLOSED_NOW


async def escalate(
    dispatcher: CollectingDispatcher, tracker: Tracker, reason: str, topic: str = ""
) -> list[EventType]:
    """Hands the conversation to a person, or to a ticket when nobody can answer now."""
    commune = load_commune()
    conversation = tracker.sender_id
    channel = tracker.get_latest_input_channel() or "inconnu"
    detail = (f"[{topic}] " if topic else "") + citizen_summary(tracker)
    try:
        service = await asyncio.to_thread(get_service)
        availability = await asyncio.to_thread(service.availability)
        if availability.live:
            info = await asyncio.to_thread(service.escalate, conversation, channel, reason, detail)
            template = messages.CONNECTING if info.created else messages.ALREADY_QUEUED
            text = template.format(
                position_text=messages.position_text(info.position),
                wait=messages.wait_text(info.expected_wait_minutes),
            )
            dispatcher.utter_message(
                text=text + "\n" + commune.render(messages.PHONE_TOO), buttons=[cancel_button()]
            )
            return [SlotSet(FALLBACK_COUNT, 0.0), ConversationPaused()]
        ticket = await asyncio.to_thread(service.open_ticket, conversation, channel, reason, detail)
    except Exception:  # noqa: BLE001 - the database down must not leave the citizen without contact
        logger.exception("Handoff unavailable for conversation %s", conversation)
        dispatcher.utter_message(text=replies.render(replies.HANDOFF_CONTACT, commune))
        return [SlotSet(FALLBACK_COUNT, 0.0)]
    text = messages.NO_AGENT.format(
        why=_why(availability), reference=ticket.reference,
        when=messages.when_text(availability.is_open, availability.next_opening), contact="{contact}",
    )
    dispatcher.utter_message(text=replies.render(text, commune), buttons=[callback_button()])
    return [SlotSet(FALLBACK_COUNT, 0.0), SlotSet(REFERENCE_SLOT, ticket.reference)]


class ActionHumanHandoff(Action):
    """The citizen asks for a person."""

    def name(self) -> str:
        return "action_human_handoff"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        return await escalate(dispatcher, tracker, "request")


def parse_contact(text: str) -> tuple[str, str] | None:
    """("phone", "0612345678") or ("email", "a@b.fr"), None if neither."""
    text = text.strip()
    if "@" in text:
        email = text.strip(" .;,<>").lower()
        return ("email", email) if len(email) <= 254 and EMAIL.match(email) else None
    digits = re.sub(r"[\s.\-()/]", "", text)
    if PHONE.match(digits):
        return "phone", "0" + digits[-9:]
    if INTERNATIONAL_PHONE.match(digits):
        return "phone", digits
    return None


def display_contact(value: str) -> str:
    if "@" in value or not value.isdigit() or len(value) != 10:
        return value
    return " ".join(value[i:i + 2] for i in range(0, 10, 2))


class ActionAskCallbackContact(Action):
    def name(self) -> str:
        return "action_ask_callback_contact"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        dispatcher.utter_message(text=messages.CALLBACK_ASK_CONTACT)
        return []


class ActionAskCallbackConsent(Action):
    def name(self) -> str:
        return "action_ask_callback_consent"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        contact = display_contact(str(tracker.get_slot(CONTACT_SLOT) or ""))
        dispatcher.utter_message(
            text=messages.CALLBACK_ASK_CONSENT.format(contact=contact),
            buttons=[{"title": "Oui, j'accepte", "payload": "/affirm"}, {"title": "Non", "payload": "/deny"}],
        )
        return []


class ValidateCallbackForm(FormValidationAction):
    def name(self) -> str:
        return "validate_callback_form"

    async def validate_callback_contact(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> dict[str, Any]:
        parsed = parse_contact(str(value or ""))
        if parsed is None:
            dispatcher.utter_message(text=messages.CALLBACK_BAD_CONTACT)
            return {CONTACT_SLOT: None}
        return {CONTACT_SLOT: parsed[1]}

    async def validate_callback_consent(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> dict[str, Any]:
        intent = ((tracker.latest_message or {}).get("intent") or {}).get("name")
        words = normalise(str(value or ""))
        if intent == "affirm" or words in YES or str(value).startswith("/affirm"):
            return {CONSENT_SLOT: "oui"}
        if intent == "deny" or words in NO or str(value).startswith("/deny"):
            return {CONSENT_SLOT: "non"}
        dispatcher.utter_message(text=messages.CALLBACK_YES_NO)
        return {CONSENT_SLOT: None}


class ActionSubmitCallback(Action):
    """Stores the callback request (with consent only) on the citizen's ticket."""

    def name(self) -> str:
        return "action_submit_callback"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        commune = load_commune()
        contact = str(tracker.get_slot(CONTACT_SLOT) or "")
        consent = tracker.get_slot(CONSENT_SLOT) == "oui"
        reference = tracker.get_slot(REFERENCE_SLOT)
        channel = tracker.get_latest_input_channel() or "inconnu"
        reset = [SlotSet(CONTACT_SLOT, None), SlotSet(CONSENT_SLOT, None)]
        try:
            service = await asyncio.to_thread(get_service)
            ticket = await asyncio.to_thread(service.ticket, reference) if reference else None
            if ticket is None or ticket.status != "open":
                ticket = await asyncio.to_thread(
                    service.open_ticket, tracker.sender_id, channel, "callback", citizen_summary(tracker)
                )
            parsed = parse_contact(contact) if consent else None
            if parsed is not None:
                await asyncio.to_thread(service.add_callback, ticket, parsed[0], parsed[1])
            availability = await asyncio.to_thread(service.availability)
        except Exception:  # noqa: BLE001 - never lose the citizen: give the contact instead
            logger.exception("Could not store the callback request of %s", tracker.sender_id)
            dispatcher.utter_message(text=replies.render(messages.CALLBACK_FAILED, commune))
            return reset
        if parsed is not None:
            text = messages.CALLBACK_DONE.format(
                contact=display_contact(parsed[1]), reference=ticket.reference,
                when=messages.when_text(availability.is_open, availability.next_opening),
            )
        else:
            text = replies.render(
                messages.CALLBACK_NO_CONSENT.replace("{reference}", ticket.reference), commune
            )
        dispatcher.utter_message(text=text)
        return [*reset, SlotSet(REFERENCE_SLOT, ticket.reference)]


class ActionCancel(Action):
    """ "annuler" outside a handoff (e.g. in the callback form): back to questions."""

    def name(self) -> str:
        return "action_cancel"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        from actions.outreach import offer_unsubscribe

        # "stop" from an alert subscriber, with no form to cancel: offer to stop the alerts.
        if await offer_unsubscribe(dispatcher, tracker):
            return []
        dispatcher.utter_message(text=messages.CANCEL_NOTHING)
        return [SlotSet(CONTACT_SLOT, None), SlotSet(CONSENT_SLOT, None), SlotSet("requested_slot", None)]
