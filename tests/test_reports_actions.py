"""The report, complaint, tracking and privacy actions, with real rasa_sdk trackers and
dispatchers on a real SQLite database (no Rasa server)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.actions import ActionFaq, ActionGreet
from actions.privacy import ActionPrivacyErase, ActionPrivacyExport, ValidateEraseForm
from actions.reports import (
    ActionAttachment,
    ActionCorrectRequestForm,
    ActionSubmitComplaint,
    ActionSubmitReport,
    ActionTrackRequest,
    ValidateComplaintForm,
    ValidateReportForm,
    attachments,
    command_of,
)
from bot.privacy.export_links import conversation_for
from bot.reports.service import get_request_service

SENDER = "psid-123"
IMAGE = {"messenger": {"attachments": [{"type": "image", "url": "https://cdn.example/trou.jpg"}], "kind": "attachment"}}
LOCATION = {"messenger": {"attachments": [{"type": "location", "coordinates": {"lat": 47.59, "long": 1.33}}],
                          "location": {"lat": 47.59, "long": 1.33}}}
WA_LOCATION = {"whatsapp": {"type": "location", "location": {"latitude": 48.85, "longitude": 2.35,
                                                              "name": "Mairie", "address": "1 place de la Mairie"}}}
WA_IMAGE = {"whatsapp": {"type": "image", "media": {"type": "image", "id": "98765", "mime_type": "image/jpeg"}}}


@pytest.fixture(autouse=True)
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'guichet.db'}"
    monkeypatch.setenv("GUICHET_DATABASE_URL", url)
    return url


def tracker(text: str, intent: str = "nlu_fallback", confidence: float = 0.9, slots: dict | None = None,
            metadata: dict | None = None, entities: list | None = None, loop: str | None = None,
            channel: str = "messenger", earlier: list[dict] | None = None) -> Tracker:
    latest = {"text": text, "intent": {"name": intent, "confidence": confidence}, "entities": entities or []}
    events = [*(earlier or []), {"event": "user", "text": text, "parse_data": latest, "metadata": metadata or {},
                                 "input_channel": channel}]
    return Tracker(SENDER, slots or {}, latest, events, False, None, {"name": loop} if loop else {}, "action_listen")


def run(action: Any, t: Tracker, domain: dict | None = None) -> tuple[list[dict], list[dict]]:
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, t, domain or DOMAIN))
    return dispatcher.messages, events


def slots_of(events: list[dict]) -> dict[str, Any]:
    return {e["name"]: e["value"] for e in events if e.get("event") == "slot"}


DOMAIN = {
    "slots": {name: {"type": "text", "mappings": [{"type": "custom"}]} for name in (
        "report_category", "report_place", "report_description", "report_photo", "report_contact",
        "report_consent", "report_confirm", "report_location", "complaint_subject", "complaint_description",
        "complaint_contact", "complaint_consent", "complaint_confirm", "privacy_erase_confirm")},
    "forms": {
        "report_form": {"required_slots": ["report_category", "report_place", "report_description", "report_photo",
                                           "report_contact", "report_consent", "report_confirm"]},
        "complaint_form": {"required_slots": ["complaint_subject", "complaint_description", "complaint_contact",
                                              "complaint_consent", "complaint_confirm"]},
        "erase_form": {"required_slots": ["privacy_erase_confirm"]},
    },
}


def ask(slot: str, text: str, **kwargs: Any) -> tuple[list[dict], dict[str, Any]]:
    slots = {"requested_slot": slot, **kwargs.pop("slots", {})}
    form = ValidateComplaintForm() if slot.startswith("complaint") else ValidateReportForm()
    messages, events = run(form, tracker(text, slots=slots, loop=form.form_name(), **kwargs))
    return messages, slots_of(events)


# Reading answers ---------------------------------------------------------------------------------------
def test_the_category_is_read_from_a_tap_or_typed_words():
    assert ask("report_category", "Éclairage")[1]["report_category"] == "eclairage"
    assert ask("report_category", "depot sauvage")[1]["report_category"] == "depot_sauvage"
    messages, slots = ask("report_category", "bof")
    assert slots["report_category"] is None and "Choisissez" in messages[0]["text"]


def test_the_place_comes_from_text_a_location_or_a_photo():
    assert ask("report_place", "devant le 12 rue des Lilas")[1]["report_place"] == "devant le 12 rue des Lilas"
    _, slots = ask("report_place", "/attachment", intent="attachment", metadata=LOCATION)
    assert slots["report_location"] == {"lat": 47.59, "lon": 1.33} and "47.59000" in slots["report_place"]
    _, slots = ask("report_place", "/attachment", intent="attachment", metadata=WA_LOCATION, channel="whatsapp")
    assert slots["report_place"] == "Mairie, 1 place de la Mairie" and slots["report_location"]["lat"] == 48.85
    _, slots = ask("report_place", "/attachment", intent="attachment", metadata=IMAGE)
    assert slots["report_place"] == "voir la photo jointe"
    assert slots["report_photo"] == [{"type": "image", "channel": "messenger", "url": "https://cdn.example/trou.jpg"}]
    messages, slots = ask("report_place", "?")
    assert slots["report_place"] is None and "lieu" in messages[0]["text"]


def test_a_photo_is_taken_at_any_step_and_no_photo_is_an_answer():
    messages, slots = ask("report_description", "/attachment", intent="attachment", metadata=WA_IMAGE, channel="whatsapp")
    assert slots["report_photo"] == [{"type": "image", "channel": "whatsapp", "media_id": "98765", "mime_type": "image/jpeg"}]
    assert "Photo bien reçue" in messages[0]["text"]
    assert ask("report_photo", "/deny", intent="deny")[1]["report_photo"] == "aucune"
    assert ask("report_photo", "pas de photo")[1]["report_photo"] == "aucune"
    messages, slots = ask("report_photo", "le trou est grand")
    assert slots["report_photo"] is None and "Pas de photo" in messages[0]["text"]


def test_a_location_at_another_step_fills_an_empty_place():
    messages, slots = ask("report_category", "/attachment", intent="attachment", metadata=LOCATION)
    assert "report_category" not in slots or slots["report_category"] is None
    assert slots["report_location"] == {"lat": 47.59, "lon": 1.33}
    assert any("Position bien reçue" in m["text"] for m in messages)


def test_contact_needs_a_valid_number_or_email_then_explicit_consent():
    assert ask("report_contact", "06 12 34 56 78")[1]["report_contact"] == "0612345678"
    assert ask("report_contact", "Non merci")[1]["report_contact"] == "non"
    messages, slots = ask("report_contact", "appelez moi")
    assert slots["report_contact"] is None and "06 12 34 56 78" in messages[0]["text"]
    assert ask("report_consent", "/affirm", intent="affirm")[1]["report_consent"] == "oui"
    messages, slots = ask("report_consent", "peut-être")
    assert slots["report_consent"] is None and "oui" in messages[0]["text"]


def test_without_contact_consent_is_not_asked():
    form = ValidateReportForm()
    t = tracker("non", slots={"report_contact": "non"})
    required = asyncio.run(form.required_slots([], CollectingDispatcher(), t, DOMAIN))
    assert "report_consent" not in required and required[-1] == "report_confirm"


def test_commands_are_left_to_the_rules():
    for text, intent in (("annuler", "cancel"), ("/cancel", "cancel"), ("corriger", "correct"),
                         ("je me suis trompé", "correct"), ("agent", "human_handoff")):
        messages, events = run(ValidateReportForm(), tracker(text, intent=intent,
                                                            slots={"requested_slot": "report_place"}, loop="report_form"))
        assert events == [] and messages == [], text
    # A long sentence mentioning a command word is an answer.
    t = tracker("il faudrait corriger le marquage effacé devant l'école", intent="correct", confidence=0.7)
    assert command_of(t) is None
    # "Autre" as a category is never a command.
    assert ask("report_category", "Autre", intent="cancel")[1]["report_category"] == "autre"


def test_the_first_message_describes_the_problem_when_it_is_long_enough():
    form = ValidateReportForm()
    _, events = run(form, tracker("il y a un très gros nid de poule devant le 12 rue des Lilas", intent="report_problem",
                                  loop="report_form"))
    assert slots_of(events)["report_description"].startswith("il y a un très gros nid")
    _, events = run(form, tracker("signaler un problème", intent="report_problem", loop="report_form"))
    assert "report_description" not in slots_of(events)


def test_confirmation():
    assert ask("report_confirm", "/affirm", intent="affirm")[1]["report_confirm"] == "oui"
    messages, slots = ask("report_confirm", "non", intent="deny")
    assert slots["report_confirm"] is None and "Corriger" in messages[0]["text"]


def test_correcting_a_named_field_resets_it():
    t = tracker('/correct{"request_field":"place"}', intent="correct", loop="report_form",
                entities=[{"entity": "request_field", "value": "place"}],
                slots={"requested_slot": "report_confirm", "report_place": "rue X", "report_confirm": None})
    messages, events = run(ActionCorrectRequestForm(), t)
    assert slots_of(events)["report_place"] is None and "le lieu" in messages[0]["text"]
    t = tracker("je veux modifier la description", intent="correct", loop="complaint_form",
                slots={"requested_slot": "complaint_confirm", "complaint_description": "x"})
    assert slots_of(run(ActionCorrectRequestForm(), t)[1])["complaint_description"] is None


def test_correcting_without_a_field_offers_the_answers_given():
    t = tracker("corriger", intent="correct", loop="report_form",
                slots={"requested_slot": "report_description", "report_category": "voirie", "report_place": "rue X"})
    messages, events = run(ActionCorrectRequestForm(), t)
    payloads = [b["payload"] for b in messages[0]["buttons"]]
    assert payloads == ['/correct{"request_field":"category"}', '/correct{"request_field":"place"}', "/cancel"]
    assert events == [{"event": "followup", "timestamp": None, "name": "action_listen"}]
    messages, _ = run(ActionCorrectRequestForm(), tracker("corriger", intent="correct"))
    assert "pas de demande en cours" in messages[0]["text"]


# Submitting and tracking ----------------------------------------------------------------------------------
REPORT_SLOTS = {
    "report_category": "eclairage", "report_place": "position envoyée (47.59000, 1.33000)",
    "report_location": {"lat": 47.59, "lon": 1.33}, "report_description": "Le lampadaire clignote toute la nuit",
    "report_photo": [{"type": "image", "channel": "messenger", "url": "https://cdn.example/l.jpg"}],
    "report_contact": "0612345678", "report_consent": "oui", "report_confirm": "oui",
}


def test_a_report_becomes_a_ticket_with_its_reference_and_what_happens_next(database):
    messages, events = run(ActionSubmitReport(), tracker("/affirm", intent="affirm", slots=REPORT_SLOTS))
    text = messages[0]["text"]
    reference = text.split("référence ")[1][:8]
    assert reference.startswith("SIG-") and "10 jours" in text and f"où en est {reference}" in text
    assert "06 12 34 56 78" in text
    stored = get_request_service(database).by_reference(reference)
    assert (stored.latitude, stored.longitude, stored.contact, stored.conversation_id) == (47.59, 1.33, "0612345678", SENDER)
    assert stored.consent_at is not None and "l.jpg" in stored.photos
    assert all(v is None for k, v in slots_of(events).items())

    messages, _ = run(ActionTrackRequest(), tracker(f"ou en est {reference.lower()} ?", intent="track_request"))
    assert reference in messages[0]["text"] and "reçu" in messages[0]["text"]
    messages, _ = run(ActionTrackRequest(), tracker("où en sont mes signalements", intent="track_request"))
    assert "Vos demandes" in messages[0]["text"] and reference in messages[0]["text"]
    messages, _ = run(ActionTrackRequest(), tracker("où en est SIG-ZZZZ", intent="track_request"))
    assert "aucune demande" in messages[0]["text"]


def test_consent_refused_keeps_no_contact(database):
    slots = {**REPORT_SLOTS, "report_consent": "non"}
    messages, _ = run(ActionSubmitReport(), tracker("/affirm", intent="affirm", slots=slots))
    reference = messages[0]["text"].split("référence ")[1][:8]
    assert get_request_service(database).by_reference(reference).contact is None


def test_a_complaint_quotes_the_communes_deadline(database):
    slots = {"complaint_subject": "accueil", "complaint_description": "Personne ne répond au téléphone depuis 2 semaines",
             "complaint_contact": "non", "complaint_confirm": "oui"}
    messages, _ = run(ActionSubmitComplaint(), tracker("/affirm", intent="affirm", slots=slots))
    text = messages[0]["text"]
    assert "REC-" in text and "sous 30 jours" in text and "au plus tard le" in text


def test_the_faq_answers_on_reports_and_complaints_start_the_forms():
    parse = {"intent": {"name": "faq", "confidence": 0.9}, "entities": [], "text": "…",
             "response_selector": {"faq": {"ranking": [{"intent_response_key": "faq/reclamation", "confidence": 0.9}]}}}
    t = Tracker(SENDER, {}, parse, [], False, None, {}, "action_listen")
    dispatcher = CollectingDispatcher()
    events = asyncio.run(ActionFaq().run(dispatcher, t, {}))
    assert {"event": "followup", "timestamp": None, "name": "complaint_form"} in events
    t = tracker("où en est SIG-7K2P ?", intent="faq")
    assert run(ActionFaq(), t, {})[1] == [{"event": "followup", "timestamp": None, "name": "action_track_request"}]


# Attachments and personal data ------------------------------------------------------------------------------
def test_attachments_out_of_a_form_offer_a_report():
    messages, _ = run(ActionAttachment(), tracker("/attachment", intent="attachment", metadata=WA_LOCATION, channel="whatsapp"))
    assert "1 place de la Mairie" in messages[0]["text"]
    assert [b["payload"] for b in messages[0]["buttons"]] == ["/report_problem", "/human_handoff"]
    messages, _ = run(ActionAttachment(), tracker("/attachment", intent="attachment", metadata=IMAGE))
    assert "reformuler" in messages[0]["text"] and messages[0]["buttons"][-1]["payload"] == "/human_handoff"
    photos, location, other = attachments({"metadata": {"messenger": {"attachments": [{"type": "audio", "url": "u"}]}}})
    assert photos == [] and location is None and other == "votre message vocal"


def test_privacy_notice_at_first_contact_only():
    messages, _ = run(ActionGreet(), tracker("bonjour", intent="greet"))
    assert "mes données" in messages[0]["text"] and "donnees-personnelles" in messages[0]["text"]
    earlier = [{"event": "user", "text": "salut"}]
    messages, _ = run(ActionGreet(), tracker("bonjour", intent="greet", earlier=earlier))
    assert "mes données" not in messages[0]["text"]


def test_my_data_and_erasure(database):
    run(ActionSubmitReport(), tracker("/affirm", intent="affirm", slots=REPORT_SLOTS))
    messages, _ = run(ActionPrivacyExport(), tracker("mes données", intent="my_data"))
    assert "SIG-" in messages[0]["text"] and "0612345678" in messages[0]["text"]
    link = re.search(r"http://127\.0\.0\.1:5005/webhooks/donnees/(\S+)", messages[1]["text"])
    assert link and "24 heures" in messages[1]["text"] and "dpo@" in messages[2]["text"]
    assert conversation_for(database, link.group(1))[0] == SENDER

    _, events = run(ValidateEraseForm(), tracker("/affirm", intent="affirm",
                                                 slots={"requested_slot": "privacy_erase_confirm"}, loop="erase_form"))
    assert slots_of(events)["privacy_erase_confirm"] == "oui"
    messages, events = run(ActionPrivacyErase(), tracker("/affirm", intent="affirm", slots={"privacy_erase_confirm": "oui"}))
    assert "C'est fait" in messages[0]["text"] and events == [{"event": "reset_slots", "timestamp": None}]
    assert get_request_service(database).for_conversation(SENDER) == []
    assert conversation_for(database, link.group(1)) is None
    messages, _ = run(ActionPrivacyErase(), tracker("non", intent="deny", slots={"privacy_erase_confirm": "non"}))
    assert "je ne supprime rien" in messages[0]["text"]


def test_a_database_down_never_leaves_the_citizen_without_a_contact(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("GUICHET_DATABASE_URL", "postgresql://nobody@127.0.0.1:9/guichet?connect_timeout=2")
    phone = "02 54 00 00 00"
    messages, events = run(ActionSubmitReport(), tracker("/affirm", intent="affirm", slots=REPORT_SLOTS))
    assert "problème technique" in messages[0]["text"] and phone in messages[0]["text"]
    assert all(v is None for v in slots_of(events).values())  # the form is reset, nothing half-stored
    messages, _ = run(ActionTrackRequest(), tracker("où en est SIG-7K2P", intent="track_request"))
    assert phone in messages[0]["text"]
    messages, _ = run(ActionPrivacyExport(), tracker("mes données", intent="my_data"))
    assert "dpo@" in messages[0]["text"] and phone in messages[0]["text"]
    messages, _ = run(ActionPrivacyErase(), tracker("/affirm", intent="affirm", slots={"privacy_erase_confirm": "oui"}))
    assert "n'a pas pu être faite" in messages[0]["text"] and phone in messages[0]["text"]
