"""The handoff's custom actions with real rasa_sdk trackers and a real database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.actions import ActionFaq
from actions.handoff import (
    ActionCancel,
    ActionHumanHandoff,
    ActionSubmitCallback,
    ValidateCallbackForm,
    parse_contact,
)
from bot.console.accounts import Accounts
from bot.db.migrate import upgrade
from bot.handoff.service import get_service
from tests.handoff_support import PASSWORD

PHONE = "02 54 00 00 00"


@pytest.fixture(autouse=True)
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'guichet.db'}"
    monkeypatch.setenv("GUICHET_DATABASE_URL", url)
    monkeypatch.setenv("GUICHET_NOW", "2026-03-03T10:00")  # Tuesday morning: open
    upgrade(url)
    return url


def tracker(intent: str = "human_handoff", slots: dict | None = None, text: str = "je veux un agent",
            entities: list | None = None, sender: str = "citizen-1") -> Tracker:
    latest = {"intent": {"name": intent, "confidence": 0.99}, "entities": entities or [], "text": text}
    events = [{"event": "user", "text": text, "input_channel": "messenger", "parse_data": latest}]
    return Tracker(sender, slots or {}, latest, events, False, None, {}, "action_listen")


def run(action, track: Tracker):
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, track, {}))
    return dispatcher.messages, events


def online_agent(url: str) -> None:
    accounts = Accounts(url)
    accounts.set_presence(accounts.create("marie", "Marie", PASSWORD), "online")


def test_agent_available_pauses_the_conversation_with_position_and_wait(database):
    online_agent(database)
    messages, events = run(ActionHumanHandoff(), tracker())
    text = messages[0]["text"]
    assert text.startswith("Je vous mets en relation") and "attente estimée" in text and PHONE in text
    assert messages[0]["buttons"] == [{"title": "Annuler", "payload": "/cancel"}]
    assert events[-1]["event"] == "pause"
    escalation = get_service().active_escalation("citizen-1")
    assert (escalation.channel, escalation.reason) == ("messenger", "request")
    assert "je veux un agent" in escalation.reason_detail
    second, _ = run(ActionHumanHandoff(), tracker(sender="citizen-2"))
    assert "n° 2 dans la file" in second[0]["text"]


def test_no_agent_gives_a_reference_the_callback_offer_and_the_contact(database):
    messages, events = run(ActionHumanHandoff(), tracker())
    text = messages[0]["text"]
    assert "Aucun agent n'est disponible" in text and "tous les agents sont occupés" in text
    assert "dès que possible" in text and PHONE in text
    assert messages[0]["buttons"] == [{"title": "Être recontacté", "payload": "/request_callback"}]
    reference = events[-1]["value"]
    assert events[-1]["name"] == "handoff_reference" and reference in text
    assert get_service().ticket(reference).conversation_id == "citizen-1"
    assert not any(e["event"] == "pause" for e in events)


def test_closed_town_hall_says_why_and_when_it_opens(database, monkeypatch):
    online_agent(database)
    monkeypatch.setenv("GUICHET_NOW", "2026-03-07T15:00")  # Saturday afternoon
    messages, _ = run(ActionHumanHandoff(), tracker())
    assert "la mairie est fermée" in messages[0]["text"]
    assert "dès la réouverture, le lundi 9 mars à 8 h 30" in messages[0]["text"]


def test_database_down_still_gives_the_contact(monkeypatch, tmp_path):
    monkeypatch.setenv("GUICHET_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    messages, events = run(ActionHumanHandoff(), tracker())
    assert PHONE in messages[0]["text"]
    assert events[0]["name"] == "fallback_count"


def test_always_human_topic_answers_then_escalates(database):
    online_agent(database)
    entities = [{"entity": "faq_topic", "value": "urgence"}]
    messages, events = run(ActionFaq(), tracker("faq", entities=entities, text="/faq"))
    assert "112" in messages[0]["text"]  # the emergency numbers come first
    assert messages[1]["text"].startswith("Je vous mets en relation")
    assert events[-1]["event"] == "pause"
    assert get_service().active_escalation("citizen-1").reason == "topic"


def test_ordinary_topic_does_not_escalate(database):
    online_agent(database)
    entities = [{"entity": "faq_topic", "value": "horaires_mairie"}]
    messages, events = run(ActionFaq(), tracker("faq", entities=entities, text="/faq"))
    assert len(messages) == 1 and not any(e["event"] == "pause" for e in events)


@pytest.mark.parametrize(("text", "expected"), [
    ("06 12 34 56 78", ("phone", "0612345678")), ("06.12.34.56.78", ("phone", "0612345678")),
    ("+33 6 12 34 56 78", ("phone", "0612345678")), ("0033612345678", ("phone", "0612345678")),
    ("+32 470 12 34 56", ("phone", "+32470123456")), ("Prenom.Nom@Exemple.fr", ("email", "prenom.nom@exemple.fr")),
    ("12", None), ("mon numéro", None), ("a@b", None), ("<script>@x.fr", None), ("", None),
])
def test_contact_parsing(text, expected):
    assert parse_contact(text) == expected


def validate(slot: str, value: str, intent: str = "inform") -> tuple[list, dict]:
    dispatcher = CollectingDispatcher()
    track = tracker(intent, text=value)
    method = getattr(ValidateCallbackForm(), f"validate_{slot}")
    result = asyncio.run(method(value, dispatcher, track, {}))
    return dispatcher.messages, result


def test_form_validation_of_contact_and_consent():
    messages, result = validate("callback_contact", "pas de numéro")
    assert result == {"callback_contact": None} and "pas reconnu" in messages[0]["text"]
    assert validate("callback_contact", "06 12 34 56 78")[1] == {"callback_contact": "0612345678"}
    assert validate("callback_consent", "/affirm", "affirm")[1] == {"callback_consent": "oui"}
    assert validate("callback_consent", "oui j'accepte")[1] == {"callback_consent": "oui"}
    assert validate("callback_consent", "non", "deny")[1] == {"callback_consent": "non"}
    messages, result = validate("callback_consent", "peut-être")
    assert result == {"callback_consent": None} and "oui" in messages[0]["text"]


def test_submit_with_consent_stores_the_callback_on_the_ticket(database):
    _, events = run(ActionHumanHandoff(), tracker())
    reference = events[-1]["value"]
    slots = {"callback_contact": "0612345678", "callback_consent": "oui", "handoff_reference": reference}
    messages, events = run(ActionSubmitCallback(), tracker("affirm", slots))
    assert reference in messages[0]["text"] and "06 12 34 56 78" in messages[0]["text"]
    [(ticket, callbacks)] = get_service().open_tickets()
    assert ticket.reference == reference and callbacks[0].contact == "0612345678" and callbacks[0].consent
    assert {"event": "slot", "timestamp": None, "name": "callback_contact", "value": None} in events


def test_submit_without_consent_keeps_nothing(database):
    slots = {"callback_contact": "a@b.fr", "callback_consent": "non"}
    messages, _ = run(ActionSubmitCallback(), tracker("deny", slots))
    assert "je ne conserve pas" in messages[0]["text"] and PHONE in messages[0]["text"]
    [(ticket, callbacks)] = get_service().open_tickets()
    assert callbacks == [] and ticket.reference in messages[0]["text"]


def test_cancel_outside_a_handoff():
    messages, events = run(ActionCancel(), tracker("cancel", text="annuler"))
    assert messages[0]["text"].startswith("D'accord")
    assert {"event": "slot", "timestamp": None, "name": "requested_slot", "value": None} in events
