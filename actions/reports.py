"""Reports (signalements) and complaints (réclamations) as Rasa forms, and their tracking.

- `report_form`: category (quick replies), place (typed, a Messenger/WhatsApp location, or
  "see the photo"), description, optional photo, optional contact with explicit consent,
  then a summary to send, correct or cancel. `complaint_form`: subject (the service
  concerned), description, optional contact with consent, summary. Both end with a ticket
  and its reference (`SIG-7K2P`, `REC-4MZ9`, bot/reports) and what happens next; a
  complaint quotes the commune's response deadline (commune.yml `delais.reclamation`).
- Every slot is filled by this module (custom mappings): the validation actions read the
  citizen's text and the attachments the channels put in the message metadata (a photo
  or a location may arrive at any step). "annuler", "corriger"/"modifier" and "agent" are
  left to the rules (data/reports_rules.yml), which the form's rejection lets run.
- Tracking: "où en est SIG-7K2P ?" gives the status; without a reference, the citizen's
  own requests. An attachment outside a form offers to report a problem.
"""

from __future__ import annotations

import asyncio
import logging
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType, FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.handoff import display_contact, parse_contact
from bot import replies
from bot.commune import Commune, format_date, load_commune
from bot.db import Ticket, session_scope
from bot.handoff.commands import normalise
from bot.privacy.notice import privacy_link
from bot.reports import catalog
from bot.reports import messages as text
from bot.reports.references import find_references
from bot.reports.service import NewRequest, get_request_service

logger = logging.getLogger(__name__)

REQUESTED = "requested_slot"
LOCATION_SLOT = "report_location"
FIELD_ENTITY = "request_field"
COMMANDS = ("cancel", "correct", "human_handoff")
COMMAND_WORDS = {
    "cancel": {"annuler", "annule", "annul", "anuler", "j annule", "stop", "laisse tomber", "laissez tomber",
               "abandonner", "j abandonne"},
    "correct": {"corriger", "modifier", "correction", "rectifier", "modif", "je me suis trompe",
                "je me suis trompee", "erreur", "oups"},
    "human_handoff": {"agent", "un agent", "parler a un agent", "humain", "conseiller"},
}
MAX_COMMAND_WORDS = 6
MIN_COMMAND_CONFIDENCE = 0.6
YES = {"oui", "ok", "d accord", "daccord", "j accepte", "oui j accepte", "accepte", "yes", "ouais", "volontiers",
       "oui merci", "c est bon", "ok merci", "parfait", "envoyer", "envoie", "valider", "je valide", "confirmer",
       "je confirme", "oui envoyer", "oui tout supprimer", "supprimer", "oui supprimer"}
NO = {"non", "non merci", "nan", "je refuse", "refuse", "no", "pas d accord", "pas de photo", "aucune", "aucun",
      "sans photo", "pas de contact", "non garder", "garder", "je n en ai pas", "j en ai pas", "pas besoin",
      "non pas de photo", "nope"}
MIN_DESCRIPTION_CHARS = 8
MIN_PREFILL_WORDS = 7
WHATSAPP_MEDIA = {"image": "votre image", "video": "votre vidéo", "audio": "votre message vocal",
                  "document": "votre document", "sticker": "votre autocollant"}
MESSENGER_MEDIA = {"image": "votre photo", "video": "votre vidéo", "audio": "votre message vocal",
                   "file": "votre fichier", "sticker": "votre autocollant"}


@dataclass(frozen=True)
class FormSpec:
    form: str
    kind: str
    fields: tuple[tuple[str, str], ...]  # (field, slot) in the order they are asked

    @property
    def slots(self) -> dict[str, str]:
        return dict(self.fields)

    def slot(self, field: str) -> str:
        return self.slots[field]


REPORT = FormSpec("report_form", "report", (
    ("category", "report_category"), ("place", "report_place"), ("description", "report_description"),
    ("photo", "report_photo"), ("contact", "report_contact"), ("consent", "report_consent"),
    ("confirm", "report_confirm"),
))
COMPLAINT = FormSpec("complaint_form", "complaint", (
    ("subject", "complaint_subject"), ("description", "complaint_description"),
    ("contact", "complaint_contact"), ("consent", "complaint_consent"), ("confirm", "complaint_confirm"),
))
FORMS = {REPORT.form: REPORT, COMPLAINT.form: COMPLAINT}
# Keywords that name a field in "je veux modifier le lieu".
FIELD_WORDS = {
    "category": ("categorie", "type", "genre"), "subject": ("service", "sujet", "objet"),
    "place": ("lieu", "adresse", "endroit", "position", "localisation", "rue"),
    "description": ("description", "decrire", "texte", "explication", "message"),
    "photo": ("photo", "image"), "contact": ("contact", "telephone", "numero", "mail", "courriel", "coordonnees"),
}


# Reading the citizen's message --------------------------------------------------------------
def last_user_event(tracker: Tracker) -> dict[str, Any]:
    for event in reversed(tracker.events or []):
        if event.get("event") == "user":
            return event
    return {}


def message_text(tracker: Tracker) -> str:
    latest = tracker.latest_message or {}
    return str(latest.get("text") or "").strip()


def typed_text(tracker: Tracker) -> str:
    """What the citizen typed ("" for a quick-reply payload or a bare attachment marker)."""
    value = message_text(tracker)
    if value.startswith("/") or re.fullmatch(r"(\[[^\]]{1,60}\]\s*)+", value):
        return ""
    return value


def intent_of(tracker: Tracker) -> tuple[str, float]:
    intent = (tracker.latest_message or {}).get("intent") or {}
    return str(intent.get("name") or ""), float(intent.get("confidence") or 0.0)


def command_of(tracker: Tracker) -> str | None:
    """cancel · correct · human_handoff when the message is one of these commands."""
    raw = message_text(tracker)
    if raw.startswith("/"):
        name = re.match(r"/([\w-]+)", raw)
        return name.group(1) if name and name.group(1) in COMMANDS else None
    if not re.search(r"[^\W\d_]", raw) or "@" in raw:
        return None  # a phone number, an e-mail, a number: an answer, whatever the NLU says
    words = normalise(raw)
    for command, vocabulary in COMMAND_WORDS.items():
        if words in vocabulary:
            return command
    intent, confidence = intent_of(tracker)
    if intent in COMMANDS and confidence >= MIN_COMMAND_CONFIDENCE and len(words.split()) <= MAX_COMMAND_WORDS:
        return intent
    return None


def yes_no(tracker: Tracker) -> str | None:
    """"oui", "non" or None from a button, a known intent or the words."""
    raw = message_text(tracker)
    if raw.startswith("/affirm"):
        return "oui"
    if raw.startswith("/deny"):
        return "non"
    words = normalise(raw)
    if words in YES:
        return "oui"
    if words in NO:
        return "non"
    intent, confidence = intent_of(tracker)
    if confidence >= MIN_COMMAND_CONFIDENCE and len(words.split()) <= MAX_COMMAND_WORDS:
        if intent == "affirm":
            return "oui"
        if intent == "deny":
            return "non"
    return None


def attachments(event: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any] | None, str | None]:
    """(photos, location, other media label) carried by a user event's metadata."""
    metadata = event.get("metadata") or {}
    photos: list[dict[str, Any]] = []
    location: dict[str, Any] | None = None
    other: str | None = None
    whatsapp = metadata.get("whatsapp") if isinstance(metadata.get("whatsapp"), dict) else None
    if whatsapp:
        media = whatsapp.get("media") if isinstance(whatsapp.get("media"), dict) else {}
        if media.get("type") == "image" and media.get("id"):
            photos.append({"type": "image", "channel": "whatsapp", "media_id": str(media["id"])[:200],
                           "mime_type": str(media.get("mime_type") or "")[:100]})
        elif media.get("type"):
            other = WHATSAPP_MEDIA.get(str(media["type"]), "votre fichier")
        where = whatsapp.get("location") if isinstance(whatsapp.get("location"), dict) else {}
        if _coordinate(where.get("latitude"), 90) is not None and _coordinate(where.get("longitude"), 180) is not None:
            location = {"lat": float(where["latitude"]), "lon": float(where["longitude"]),
                        "name": str(where.get("name") or "")[:200], "address": str(where.get("address") or "")[:300]}
    for channel in ("messenger", "instagram"):
        details = metadata.get(channel) if isinstance(metadata.get(channel), dict) else None
        if not details:
            continue
        for item in details.get("attachments") or []:
            if not isinstance(item, dict):
                continue
            if item.get("type") == "image" and item.get("url") and "sticker_id" not in item:
                photos.append({"type": "image", "channel": channel, "url": str(item["url"])[:2000]})
            elif item.get("type") == "location" or "coordinates" in item:
                continue
            else:
                other = MESSENGER_MEDIA.get(str(item.get("type")), "votre pièce jointe")
        where = details.get("location") if isinstance(details.get("location"), dict) else {}
        if _coordinate(where.get("lat"), 90) is not None and _coordinate(where.get("long"), 180) is not None:
            location = {"lat": float(where["lat"]), "lon": float(where["long"]), "name": "", "address": ""}
    return photos, location, other


def _coordinate(value: Any, limit: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not -limit <= value <= limit:
        return None
    return float(value)


def place_label(location: dict[str, Any]) -> str:
    named = ", ".join(p for p in (location.get("name"), location.get("address")) if p)
    return named or text.PLACE_FROM_LOCATION.format(lat=location["lat"], lon=location["lon"])


def delay_days(commune: Commune, kind: str) -> int | None:
    delays = commune.facts.get("delais") if isinstance(commune.facts.get("delais"), dict) else {}
    value = delays.get("reclamation" if kind == "complaint" else "signalement")
    try:
        days = int(value)
    except (TypeError, ValueError):
        return None
    return days if days > 0 else None


def days_text(days: int | None) -> str:
    if not days:
        return "dès que possible"
    return "1 jour" if days == 1 else f"{days} jours"


def _buttons(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"title": title, "payload": payload} for title, payload in pairs]


# The forms' validation ----------------------------------------------------------------------
class RequestFormValidation(FormValidationAction):
    """Shared by both forms: reads each answer, or leaves commands to the rules."""

    @property
    @abstractmethod
    def spec(self) -> FormSpec:
        """The form validated (abstract: the action server registers the subclasses only)."""

    def name(self) -> str:
        return f"validate_{self.spec.form}"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        requested = tracker.get_slot(REQUESTED)
        if requested and command_of(tracker) and not self._is_choice(requested, tracker):
            return []  # nothing extracted: the form is rejected and a rule handles the command
        extracted = await self.get_extraction_events(dispatcher, tracker, domain)
        tracker.add_slots(extracted)
        events = await self._extract_validation_events(dispatcher, tracker, domain)
        if requested and not any(e["name"] != REQUESTED for e in events):
            # Not an answer (a sticker, an audio message, a stray button): say so and ask
            # again, rather than leaving the form for the rules' fallback.
            dispatcher.utter_message(text=text.NOT_AN_ANSWER)
            return [SlotSet(requested, None)]
        # Slots outside the form's questions (the coordinates) are not returned by rasa_sdk.
        return [*events, *(e for e in extracted if e["name"] == LOCATION_SLOT)]

    def _is_choice(self, requested: str, tracker: Tracker) -> bool:
        """A category/subject typed exactly (never mistaken for a command)."""
        chosen = typed_text(tracker)
        if requested == REPORT.slot("category"):
            return bool(chosen) and catalog.report_category(chosen) is not None and normalise(chosen) not in COMMAND_WORDS["cancel"]
        if requested == COMPLAINT.slot("subject"):
            return bool(chosen) and catalog.complaint_subject(chosen) is not None and normalise(chosen) not in COMMAND_WORDS["cancel"]
        return False

    async def required_slots(self, domain_slots: list[str], dispatcher: CollectingDispatcher,
                             tracker: Tracker, domain: dict[str, Any]) -> list[str]:
        slots = [slot for _, slot in self.spec.fields]
        if tracker.get_slot(self.spec.slot("contact")) == "non":
            slots.remove(self.spec.slot("consent"))
        return slots

    # The answer to one question -----------------------------------------------------------
    def _asked(self, tracker: Tracker, field: str) -> bool:
        return tracker.get_slot(REQUESTED) == self.spec.slot(field)

    def extract_choice(self, field: str, parse: Any, error: str, dispatcher: CollectingDispatcher,
                       tracker: Tracker) -> dict[str, Any]:
        if not self._asked(tracker, field):
            return {}
        value = typed_text(tracker)
        if not value:
            return {}  # a bare attachment: kept by the photo/place questions, this one is asked again
        code = parse(value)
        if code is None:
            dispatcher.utter_message(text=error)
        return {self.spec.slot(field): code}

    def extract_description_of(self, dispatcher: CollectingDispatcher, tracker: Tracker) -> dict[str, Any]:
        slot = self.spec.slot("description")
        value = typed_text(tracker)
        if self._asked(tracker, "description"):
            if not value:
                return {}
            if len(value) < MIN_DESCRIPTION_CHARS:
                dispatcher.utter_message(text=text.BAD_DESCRIPTION)
                return {slot: None}
            return {slot: value[:2000]}
        # The message that started the form already describes the problem: keep it.
        intent, _ = intent_of(tracker)
        if (tracker.get_slot(REQUESTED) is None and tracker.get_slot(slot) is None
                and intent in ("report_problem", "faq") and len(value.split()) >= MIN_PREFILL_WORDS):
            return {slot: value[:2000]}
        return {}

    def extract_contact_of(self, dispatcher: CollectingDispatcher, tracker: Tracker) -> dict[str, Any]:
        if not self._asked(tracker, "contact"):
            return {}
        slot = self.spec.slot("contact")
        if yes_no(tracker) == "non":
            return {slot: "non"}
        parsed = parse_contact(typed_text(tracker))
        if parsed is None:
            dispatcher.utter_message(text=text.BAD_CONTACT)
            return {slot: None}
        return {slot: parsed[1], self.spec.slot("consent"): None}

    def extract_yes_no(self, field: str, error: str, dispatcher: CollectingDispatcher,
                       tracker: Tracker) -> dict[str, Any]:
        if not self._asked(tracker, field):
            return {}
        answer = yes_no(tracker)
        if answer is None or (field == "confirm" and answer == "non"):
            dispatcher.utter_message(text=error)
            return {self.spec.slot(field): None}
        return {self.spec.slot(field): answer}


def _keep(slot: str) -> Any:
    def validate(self: Any, value: Any, dispatcher: Any, tracker: Any, domain: Any) -> dict[str, Any]:
        return {slot: value}

    validate.__name__ = f"validate_{slot}"
    return validate


class ValidateReportForm(RequestFormValidation):
    spec = REPORT

    def extract_report_category(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Any) -> dict[str, Any]:
        return self.extract_choice("category", catalog.report_category, text.BAD_CATEGORY, dispatcher, tracker)

    def extract_report_place(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Any) -> dict[str, Any]:
        slot = self.spec.slot("place")
        photos, location, _ = attachments(last_user_event(tracker))
        if location and (self._asked(tracker, "place") or tracker.get_slot(slot) is None):
            if not self._asked(tracker, "place"):
                dispatcher.utter_message(text=text.LOCATION_OK)
            return {slot: place_label(location), LOCATION_SLOT: {"lat": location["lat"], "lon": location["lon"]}}
        if not self._asked(tracker, "place"):
            return {}
        value = typed_text(tracker)
        if not value and photos:
            return {slot: text.PLACE_FROM_PHOTO, LOCATION_SLOT: None}
        if len(value) < 3 or not re.search(r"\w", value):
            dispatcher.utter_message(text=text.BAD_PLACE)
            return {slot: None}
        return {slot: value[:300], LOCATION_SLOT: None}

    def extract_report_description(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Any) -> dict[str, Any]:
        return self.extract_description_of(dispatcher, tracker)

    def extract_report_photo(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Any) -> dict[str, Any]:
        slot = self.spec.slot("photo")
        photos, _, _ = attachments(last_user_event(tracker))
        if photos:
            if not self._asked(tracker, "photo") and not self._asked(tracker, "place"):
                dispatcher.utter_message(text=text.PHOTO_OK)
            return {slot: photos[:3]}
        if not self._asked(tracker, "photo"):
            return {}
        if yes_no(tracker) == "non":
            return {slot: text.NO_PHOTO}
        dispatcher.utter_message(text=text.NO_PHOTO_RECEIVED)
        return {slot: None}

    def extract_report_contact(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Any) -> dict[str, Any]:
        return self.extract_contact_of(dispatcher, tracker)

    def extract_report_consent(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Any) -> dict[str, Any]:
        return self.extract_yes_no("consent", text.YES_NO, dispatcher, tracker)

    def extract_report_confirm(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Any) -> dict[str, Any]:
        return self.extract_yes_no("confirm", text.CONFIRM_AGAIN, dispatcher, tracker)


class ValidateComplaintForm(RequestFormValidation):
    spec = COMPLAINT

    def extract_complaint_subject(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Any) -> dict[str, Any]:
        return self.extract_choice("subject", catalog.complaint_subject, text.BAD_SUBJECT, dispatcher, tracker)

    def extract_complaint_description(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Any) -> dict[str, Any]:
        return self.extract_description_of(dispatcher, tracker)

    def extract_complaint_contact(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Any) -> dict[str, Any]:
        return self.extract_contact_of(dispatcher, tracker)

    def extract_complaint_consent(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Any) -> dict[str, Any]:
        return self.extract_yes_no("consent", text.YES_NO, dispatcher, tracker)

    def extract_complaint_confirm(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Any) -> dict[str, Any]:
        return self.extract_yes_no("confirm", text.CONFIRM_AGAIN, dispatcher, tracker)


for _spec, _class in ((REPORT, ValidateReportForm), (COMPLAINT, ValidateComplaintForm)):
    for _, _slot in _spec.fields:
        if not hasattr(_class, f"validate_{_slot}"):
            setattr(_class, f"validate_{_slot}", _keep(_slot))


# The questions --------------------------------------------------------------------------------
def _filled(spec: FormSpec, tracker: Tracker) -> list[str]:
    return [field for field, slot in spec.fields
            if field not in ("consent", "confirm") and tracker.get_slot(slot) is not None]


def ask_category(dispatcher: CollectingDispatcher, tracker: Tracker) -> None:
    if not _filled(REPORT, tracker) or _filled(REPORT, tracker) == ["description"]:
        dispatcher.utter_message(text=text.REPORT_INTRO)
    labels = [label for label, _ in catalog.REPORT_CATEGORIES.values()]
    dispatcher.utter_message(text=text.ASK_CATEGORY, buttons=_buttons([(label, label) for label in labels]))


def ask_subject(dispatcher: CollectingDispatcher, tracker: Tracker) -> None:
    if not _filled(COMPLAINT, tracker) or _filled(COMPLAINT, tracker) == ["description"]:
        dispatcher.utter_message(text=text.COMPLAINT_INTRO)
    labels = [label for label, _ in catalog.COMPLAINT_SUBJECTS.values()]
    dispatcher.utter_message(text=text.ASK_SUBJECT, buttons=_buttons([(label, label) for label in labels]))


def ask_contact(dispatcher: CollectingDispatcher, tracker: Tracker) -> None:
    dispatcher.utter_message(text=text.ASK_CONTACT, buttons=_buttons([(text.NO_CONTACT_BUTTON, "/deny")]))


def ask_consent(spec: FormSpec) -> Any:
    def ask(dispatcher: CollectingDispatcher, tracker: Tracker) -> None:
        contact = display_contact(str(tracker.get_slot(spec.slot("contact")) or ""))
        dispatcher.utter_message(
            text=text.ASK_CONSENT.format(contact=contact, privacy=privacy_link(load_commune())),
            buttons=_buttons([(text.CONSENT_YES, "/affirm"), ("Non", "/deny")]),
        )

    return ask


def contact_summary(spec: FormSpec, tracker: Tracker) -> str:
    contact = tracker.get_slot(spec.slot("contact"))
    if contact and contact != "non" and tracker.get_slot(spec.slot("consent")) == "oui":
        return display_contact(str(contact))
    return text.NO_CONTACT


def ask_confirm(spec: FormSpec) -> Any:
    def ask(dispatcher: CollectingDispatcher, tracker: Tracker) -> None:
        if spec.kind == "report":
            photo = tracker.get_slot(spec.slot("photo"))
            summary = text.SUMMARY_REPORT.format(
                category=catalog.category_label("report", str(tracker.get_slot(spec.slot("category")))),
                place=tracker.get_slot(spec.slot("place")) or "",
                description=tracker.get_slot(spec.slot("description")) or "",
                photo=text.PHOTO_ATTACHED if isinstance(photo, list) and photo else text.NO_PHOTO,
                contact=contact_summary(spec, tracker),
            )
        else:
            summary = text.SUMMARY_COMPLAINT.format(
                category=catalog.category_label("complaint", str(tracker.get_slot(spec.slot("subject")))),
                description=tracker.get_slot(spec.slot("description")) or "",
                contact=contact_summary(spec, tracker),
            )
        dispatcher.utter_message(text=summary, buttons=_buttons([
            (text.SEND_BUTTON, "/affirm"), (text.CORRECT_BUTTON, "/correct"), (text.CANCEL_BUTTON, "/cancel"),
        ]))

    return ask


def _say(message: str, buttons: list[tuple[str, str]] | None = None) -> Any:
    def ask(dispatcher: CollectingDispatcher, tracker: Tracker) -> None:
        dispatcher.utter_message(text=message, buttons=_buttons(buttons) if buttons else [])

    return ask


QUESTIONS: dict[str, Any] = {
    "report_category": ask_category,
    "report_place": _say(text.ASK_PLACE),
    "report_description": _say(text.ASK_DESCRIPTION),
    "report_photo": _say(text.ASK_PHOTO, [(text.NO_PHOTO_BUTTON, "/deny")]),
    "report_contact": ask_contact,
    "report_consent": ask_consent(REPORT),
    "report_confirm": ask_confirm(REPORT),
    "complaint_subject": ask_subject,
    "complaint_description": _say(text.ASK_COMPLAINT_DESCRIPTION),
    "complaint_contact": ask_contact,
    "complaint_consent": ask_consent(COMPLAINT),
    "complaint_confirm": ask_confirm(COMPLAINT),
}


class AskAction(Action, ABC):
    """`action_ask_<slot>`: one class per question, made below."""

    @property
    @abstractmethod
    def slot(self) -> str:
        """The slot asked for."""

    def name(self) -> str:
        return f"action_ask_{self.slot}"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        QUESTIONS[self.slot](dispatcher, tracker)
        return []


for _slot in QUESTIONS:
    globals()[f"ActionAsk_{_slot}"] = type(f"ActionAsk_{_slot}", (AskAction,), {"slot": _slot})


# Submitting, cancelling, correcting ------------------------------------------------------------
def reset_form(spec: FormSpec) -> list[EventType]:
    events: list[EventType] = [SlotSet(slot, None) for _, slot in spec.fields]
    if spec.kind == "report":
        events.append(SlotSet(LOCATION_SLOT, None))
    return events


class SubmitRequest(Action, ABC):
    @property
    @abstractmethod
    def spec(self) -> FormSpec:
        """The form submitted."""

    def name(self) -> str:
        return f"action_submit_{self.spec.kind}"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        spec = self.spec
        commune = load_commune()
        reset = [*reset_form(spec), SlotSet(REQUESTED, None)]
        if tracker.get_slot(spec.slot("confirm")) != "oui":
            dispatcher.utter_message(text=text.CANCELLED)
            return reset
        contact = tracker.get_slot(spec.slot("contact"))
        consent = tracker.get_slot(spec.slot("consent")) == "oui"
        parsed = parse_contact(str(contact)) if contact and contact != "non" and consent else None
        location = tracker.get_slot(LOCATION_SLOT) if spec.kind == "report" else None
        photos = tracker.get_slot(spec.slot("photo")) if spec.kind == "report" else None
        days = delay_days(commune, spec.kind)
        category_field = "category" if spec.kind == "report" else "subject"
        new = NewRequest(
            kind=spec.kind, category=str(tracker.get_slot(spec.slot(category_field)) or "autre"),
            description=str(tracker.get_slot(spec.slot("description")) or ""),
            place=str(tracker.get_slot(spec.slot("place")) or "") if spec.kind == "report" else "",
            latitude=location.get("lat") if isinstance(location, dict) else None,
            longitude=location.get("lon") if isinstance(location, dict) else None,
            photos=tuple(p for p in photos if isinstance(p, dict)) if isinstance(photos, list) else (),
            contact_kind=parsed[0] if parsed else None, contact=parsed[1] if parsed else None,
            consent=parsed is not None, conversation_id=tracker.sender_id,
            channel=tracker.get_latest_input_channel() or "inconnu", due_days=days,
        )
        try:
            service = await asyncio.to_thread(get_request_service)
            request = await asyncio.to_thread(service.create, new)
        except Exception:  # noqa: BLE001 - never lose the citizen: give the contact instead
            logger.exception("Could not store a %s of conversation %s", spec.kind, tracker.sender_id)
            dispatcher.utter_message(text=replies.render(text.SAVE_FAILED, commune))
            return reset
        note = text.CONTACT_NOTE.format(contact=display_contact(parsed[1])) if parsed else ""
        if spec.kind == "report":
            message = text.REPORT_DONE.format(reference=request.reference, delay=days_text(days), contact_note=note)
        else:
            due = format_date(request.due_at.date()) if request.due_at else "dès que possible"
            message = text.COMPLAINT_DONE.format(reference=request.reference, delay=days_text(days), due=due,
                                                 contact_note=note)
        dispatcher.utter_message(text=message)
        logger.info("%s %s created from a %s conversation", spec.kind, request.reference, new.channel)
        return reset


class ActionSubmitReport(SubmitRequest):
    spec = REPORT


class ActionSubmitComplaint(SubmitRequest):
    spec = COMPLAINT


class ActionCancelRequestForm(Action):
    """ "annuler" in a form: nothing is sent, the answers are forgotten."""

    def name(self) -> str:
        return "action_cancel_request_form"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        dispatcher.utter_message(text=text.ERASE_CANCELLED if last_form(tracker) == "erase_form" else text.CANCELLED)
        return [*reset_form(REPORT), *reset_form(COMPLAINT), SlotSet("privacy_erase_confirm", None),
                SlotSet(REQUESTED, None)]


def last_form(tracker: Tracker) -> str | None:
    """The form active last (still known after `action_deactivate_loop`)."""
    for event in reversed(tracker.events or []):
        if event.get("event") == "active_loop" and event.get("name"):
            return str(event["name"])
    return None


def field_named(spec: FormSpec, tracker: Tracker) -> str | None:
    """The field the citizen wants to change: a button's entity, or a word of the message."""
    chosen = next(tracker.get_latest_entity_values(FIELD_ENTITY), None)
    if chosen in spec.slots and chosen not in ("consent", "confirm"):
        return str(chosen)
    words = f" {normalise(message_text(tracker))} "
    for field, keywords in FIELD_WORDS.items():
        if field in spec.slots and any(f" {k} " in words for k in keywords):
            return field
    return None


class ActionCorrectRequestForm(Action):
    """ "corriger": asks again the question named (or offers the answers to change)."""

    def name(self) -> str:
        return "action_correct_request_form"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        spec = FORMS.get(tracker.active_loop_name or "")
        if spec is None:
            dispatcher.utter_message(text=text.NO_FORM_TO_CORRECT)
            return []
        field = field_named(spec, tracker)
        if field is not None:
            dispatcher.utter_message(text=text.CORRECT_FIELD.format(field=text.FIELD_NAMES[field]))
            events: list[EventType] = [SlotSet(spec.slot(field), None), SlotSet(spec.slot("confirm"), None)]
            if field == "contact":
                events.append(SlotSet(spec.slot("consent"), None))
            if field == "place":
                events.append(SlotSet(LOCATION_SLOT, None))
            return events
        filled = _filled(spec, tracker)
        if not filled:
            dispatcher.utter_message(text=text.NOTHING_TO_CORRECT)
            return []
        buttons = [(text.FIELD_BUTTONS[f], f'/correct{{"{FIELD_ENTITY}":"{f}"}}') for f in filled]
        dispatcher.utter_message(text=text.WHAT_TO_CORRECT,
                                 buttons=_buttons([*buttons, (text.CANCEL_BUTTON, "/cancel")]))
        # Wait for the choice (the form's question is still pending if the citizen answers it).
        return [FollowupAction("action_listen")]


# Tracking -------------------------------------------------------------------------------------
def _status_line(request: Any) -> str:
    template = text.TRACK_STATUS if request.kind == "report" else text.TRACK_STATUS_F
    line = template.format(
        kind=catalog.KIND_LABELS.get(request.kind, ""), reference=request.reference,
        category=catalog.category_label(request.kind, request.category),
        created=format_date(request.created_at.date()),
        status=catalog.STATUS_LABELS.get(request.status, request.status).lower(),
    )
    if request.kind == "complaint" and request.due_at and request.status in ("new", "in_progress"):
        line += text.TRACK_DUE.format(due=format_date(request.due_at.date()))
    return line


def _handoff_line(ticket: Ticket) -> str:
    return text.TRACK_HANDOFF.format(
        reference=ticket.reference, created=format_date(ticket.created_at.date()),
        status=text.HANDOFF_OPEN if ticket.status == "open" else text.HANDOFF_CLOSED,
    )


def _handoff_tickets(url: str, references: list[str] | None, conversation_id: str | None) -> list[Ticket]:
    from sqlalchemy import select

    with session_scope(url) as s:
        query = select(Ticket)
        if references is not None:
            query = query.where(Ticket.reference.in_(references))
        else:
            query = query.where(Ticket.conversation_id == conversation_id)
        return list(s.execute(query.order_by(Ticket.id.desc()).limit(5)).scalars())


def track(conversation_id: str, message: str) -> list[str]:
    """The lines answering a tracking question (synchronous: run in a thread)."""
    service = get_request_service()
    references = find_references(message)[:3]
    lines: list[str] = []
    if references:
        handoff = {t.reference: t for t in _handoff_tickets(service.url, references, None)}
        for reference in references:
            request = service.by_reference(reference)
            if request is not None:
                lines.append(_status_line(request))
            elif reference in handoff:
                lines.append(_handoff_line(handoff[reference]))
            else:
                lines.append(text.TRACK_UNKNOWN.format(reference=reference, telephone=load_commune().phone))
        return lines
    own = service.for_conversation(conversation_id, limit=5)
    tickets = _handoff_tickets(service.url, None, conversation_id)
    if not own and not tickets:
        return [text.TRACK_ASK]
    return [text.TRACK_YOURS, *(_status_line(r) for r in own), *(_handoff_line(t) for t in tickets)]


class ActionTrackRequest(Action):
    def name(self) -> str:
        return "action_track_request"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        try:
            lines = await asyncio.to_thread(track, tracker.sender_id, message_text(tracker))
        except Exception:  # noqa: BLE001 - the database down: the contact details instead
            logger.exception("Tracking unavailable for conversation %s", tracker.sender_id)
            dispatcher.utter_message(text=replies.render(text.TRACK_FAILED, load_commune()))
            return []
        dispatcher.utter_message(text="\n".join(lines))
        return [SlotSet("fallback_count", 0.0)]


# Attachments outside a form --------------------------------------------------------------------
class ActionAttachment(Action):
    """A photo or a location sent outside a form: offers to report a problem."""

    def name(self) -> str:
        return "action_attachment"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        photos, location, other = attachments(last_user_event(tracker))
        agent = ("Parler à un agent", "/human_handoff")
        report = (text.REPORT_BUTTON, "/report_problem")
        if location:
            where = ", ".join(p for p in (location.get("name"), location.get("address")) if p)
            message = text.ATTACHMENT_LOCATION.format(where=f" ({where})" if where else "")
            dispatcher.utter_message(text=message, buttons=_buttons([report, agent]))
        elif photos:
            what = "votre image" if photos[0].get("channel") == "whatsapp" else "votre photo"
            dispatcher.utter_message(text=text.ATTACHMENT_PHOTO.format(what=what), buttons=_buttons([report, agent]))
        else:
            dispatcher.utter_message(text=text.ATTACHMENT_OTHER.format(what=other or "votre message"),
                                     buttons=_buttons([agent]))
        return []


def form_for_topic(topic_id: str | None) -> str | None:
    """The form an FAQ topic leads to: the answer says the assistant can record it."""
    return {"signalement_voirie": REPORT.form, "reclamation": COMPLAINT.form}.get(topic_id or "")


def quoted_reference(tracker: Tracker) -> bool:
    return bool(find_references(message_text(tracker)))

