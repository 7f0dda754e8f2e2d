"""The citizen's personal data in the chat: the privacy notice at first contact, "mes
données" (a summary of what is kept, and a personal link to all of it), "supprimer mes données"
(`erase_form`: an explicit confirmation, then bot/privacy erases it)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import AllSlotsReset, EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.reports import command_of, yes_no
from bot import replies
from bot.commune import Commune, format_date, load_commune
from bot.privacy import messages
from bot.privacy.data import request_erasure, summary
from bot.privacy.export_links import create_link, link_url
from bot.privacy.notice import (
    dpo_contact,
    is_first_contact,
    notice,
    privacy_link,
    retention_text,
    validity_text,
)
from bot.reports import catalog
from bot.settings import get_settings

logger = logging.getLogger(__name__)

CONFIRM_SLOT = "privacy_erase_confirm"
CHANNEL_LABELS = {
    "messenger": "Messenger", "instagram": "Instagram", "whatsapp": "WhatsApp", "telegram": "Telegram",
    "webchat": "site web", "api": "API",
}


async def first_contact_notice(tracker: Tracker, commune: Commune) -> str | None:
    """The notice if this is the conversation's first message, else None."""
    earlier = [e for e in tracker.events or [] if e.get("event") == "user"][:-1]
    if earlier:
        return None
    settings = get_settings()
    try:
        first = await asyncio.to_thread(is_first_contact, settings.database_url, tracker.sender_id)
    except Exception:  # noqa: BLE001 - never block a greeting on the notice
        logger.exception("Could not tell whether conversation %s is new", tracker.sender_id)
        return None
    return notice(commune, settings.retention_days) if first else None


def _export_lines(tracker: Tracker, commune: Commune) -> list[str]:
    settings = get_settings()
    data = summary(settings.database_url, tracker.sender_id)
    channel = tracker.get_latest_input_channel() or ""
    lines = [messages.EXPORT_INTRO.format(commune=commune.name, channel=CHANNEL_LABELS.get(channel, channel or "chat"))]
    if data["messages"]:
        first = dt.datetime.fromisoformat(data["first"]).date()
        lines.append(messages.EXPORT_MESSAGES.format(count=data["messages"], first=format_date(first)))
    else:
        lines.append(messages.EXPORT_NO_MESSAGES)
    for request in data["requests"]:
        contact = messages.EXPORT_CONTACT.format(contact=request.contact) if request.contact else ""
        lines.append(messages.EXPORT_REQUEST.format(
            kind=catalog.KIND_LABELS.get(request.kind, ""), reference=request.reference,
            category=catalog.category_label(request.kind, request.category),
            status=catalog.STATUS_LABELS.get(request.status, request.status).lower(),
            created=format_date(request.created_at.date()), contact=contact,
        ))
    if data["escalations"]:
        lines.append(messages.EXPORT_HANDOFF.format(count=data["escalations"]))
    if data["callbacks"]:
        lines.append(messages.EXPORT_CALLBACK.format(count=data["callbacks"]))
    if data["other"]:
        lines.append(messages.EXPORT_SUBSCRIPTIONS.format(count=data["other"]))
    return lines


class ActionPrivacyExport(Action):
    """ "mes données": what is kept about this conversation, and the way to a full copy."""

    def name(self) -> str:
        return "action_privacy_export"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        commune = load_commune()
        try:
            lines = await asyncio.to_thread(_export_lines, tracker, commune)
        except Exception:  # noqa: BLE001 - the database down: say how to ask otherwise
            logger.exception("Data summary unavailable for conversation %s", tracker.sender_id)
            dispatcher.utter_message(text=replies.render(
                messages.EXPORT_FAILED.replace("{dpo}", dpo_contact(commune)), commune))
            return []
        dispatcher.utter_message(text="\n".join(lines))
        settings = get_settings()
        facts = {"retention": retention_text(settings.retention_days), "dpo": dpo_contact(commune),
                 "privacy": privacy_link(commune), "key": tracker.sender_id}
        try:
            token = await asyncio.to_thread(create_link, settings.database_url, tracker.sender_id,
                                            settings.export_link_hours)
        except Exception:  # noqa: BLE001 - no link: the DPO's address instead
            logger.exception("No data export link for conversation %s", tracker.sender_id)
            dispatcher.utter_message(text=messages.EXPORT_OUTRO_NO_LINK.format(**facts))
            return []
        dispatcher.utter_message(text=messages.EXPORT_LINK.format(
            validity=validity_text(settings.export_link_hours), link=link_url(settings.public_url, token)))
        dispatcher.utter_message(text=messages.EXPORT_OUTRO.format(**facts))
        return []


class ValidateEraseForm(FormValidationAction):
    def name(self) -> str:
        return "validate_erase_form"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        if tracker.get_slot("requested_slot") and command_of(tracker) in ("cancel", "human_handoff"):
            return []  # left to the rules
        return await super().run(dispatcher, tracker, domain)

    def extract_privacy_erase_confirm(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                                      domain: Any) -> dict[str, Any]:
        if tracker.get_slot("requested_slot") != CONFIRM_SLOT:
            return {}
        answer = yes_no(tracker)
        if answer is None:
            dispatcher.utter_message(text=messages.YES_NO)
        return {CONFIRM_SLOT: answer}

    def validate_privacy_erase_confirm(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                                       domain: Any) -> dict[str, Any]:
        return {CONFIRM_SLOT: value}


class ActionAskPrivacyEraseConfirm(Action):
    def name(self) -> str:
        return "action_ask_privacy_erase_confirm"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        dispatcher.utter_message(text=messages.ASK_ERASE, buttons=[
            {"title": messages.ERASE_YES, "payload": "/affirm"}, {"title": messages.ERASE_NO, "payload": "/deny"},
        ])
        return []


class ActionPrivacyErase(Action):
    """Erases the conversation's data once the citizen has said yes."""

    def name(self) -> str:
        return "action_privacy_erase"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        if tracker.get_slot(CONFIRM_SLOT) != "oui":
            dispatcher.utter_message(text=messages.ERASE_KEPT)
            return [SlotSet(CONFIRM_SLOT, None), SlotSet("requested_slot", None)]
        settings, commune = get_settings(), load_commune()
        channel = tracker.get_latest_input_channel() or "inconnu"
        try:
            await asyncio.to_thread(request_erasure, settings.database_url, tracker.sender_id, channel,
                                    settings.erase_grace_seconds)
        except Exception:  # noqa: BLE001 - tell the citizen it failed, never pretend
            logger.exception("Erasure failed for conversation %s", tracker.sender_id)
            dispatcher.utter_message(text=replies.render(
                messages.ERASE_FAILED.replace("{dpo}", dpo_contact(commune)), commune))
            return [SlotSet(CONFIRM_SLOT, None), SlotSet("requested_slot", None)]
        dispatcher.utter_message(text=messages.ERASE_DONE)
        return [AllSlotsReset()]
