"""Custom actions, run with real rasa_sdk trackers and dispatchers."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import pytest
import yaml
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.actions import (
    ActionFallback,
    ActionFaq,
    ActionGreet,
    ActionHumanHandoff,
    ActionOutOfScope,
    rating_payload,
    topic_payload,
)
from bot.faq import ratings
from bot.settings import PROJECT_ROOT

PHONE = "02 54 00 00 00"


def parse(intent: str, confidence: float = 0.95, ranking=(), entities=()) -> dict:
    return {
        "intent": {"name": intent, "confidence": confidence},
        "entities": list(entities),
        "response_selector": {
            "faq": {
                "ranking": [
                    {"intent_response_key": f"faq/{topic}", "confidence": conf} for topic, conf in ranking
                ]
            }
        },
        "text": "…",
    }


def tracker(latest: dict, slots: dict | None = None) -> Tracker:
    return Tracker("citizen-1", slots or {}, latest, [], False, None, {}, "action_listen")


def run(action, latest: dict, slots: dict | None = None):
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, tracker(latest, slots), {}))
    return dispatcher.messages, events


def test_faq_answer_is_the_staff_text_with_the_communes_facts():
    messages, events = run(ActionFaq(), parse("faq", ranking=[("horaires_mairie", 0.9), ("contact_mairie", 0.05)]))
    assert len(messages) == 1
    assert "8 h 30" in messages[0]["text"] and "{" not in messages[0]["text"]
    assert {"event": "slot", "timestamp": None, "name": "fallback_count", "value": 0.0} in events


def test_quick_reply_payload_chooses_the_topic_directly():
    entities = [{"entity": "faq_topic", "value": "collecte_ordures"}]
    messages, _ = run(ActionFaq(), parse("faq", 1.0, entities=entities))
    assert "mardi" in messages[0]["text"]  # collection day of the demo commune


def test_unsure_faq_offers_the_likely_topics_and_an_agent():
    latest = parse("faq", 0.9, ranking=[("cni", 0.12), ("passeport", 0.11), ("suivi_titre", 0.1), ("pacs", 0.01)])
    messages, events = run(ActionFaq(), latest)
    buttons = messages[0]["buttons"]
    assert messages[0]["text"].startswith("Je ne suis pas sûr")
    assert [b["payload"] for b in buttons[:3]] == [topic_payload(t) for t in ("cni", "passeport", "suivi_titre")]
    assert buttons[-1] == {"title": "Parler à un agent", "payload": "/human_handoff"}
    assert all(len(b["title"]) <= 20 for b in buttons), "Messenger limits titles to 20 characters"
    assert events[0]["name"] == "fallback_count" and events[0]["value"] == 1.0


@pytest.fixture(autouse=True)
def handoff_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The handoff (actions/handoff.py) writes tickets: a database of the test's own."""
    monkeypatch.setenv("GUICHET_DATABASE_URL", f"sqlite:///{tmp_path / 'guichet.db'}")


def test_second_miss_in_a_row_hands_over_to_a_person():
    latest = parse("nlu_fallback", 0.3, ranking=[("cni", 0.2)])
    messages, events = run(ActionFallback(), latest, {"fallback_count": 1.0})
    # No agent online: a ticket reference, the offer to be called back and the contact.
    text = "\n".join(m["text"] for m in messages)
    assert messages[0]["text"].startswith("Désolé")
    assert PHONE in text and "📍" in text and "RAP-" in text
    assert events[0]["value"] == 0.0


def test_fallback_without_any_candidate_still_offers_an_agent():
    messages, _ = run(ActionFallback(), parse("nlu_fallback", 0.2))
    assert messages[0]["buttons"] == [{"title": "Parler à un agent", "payload": "/human_handoff"}]


def test_greeting_says_it_is_a_bot_and_how_to_reach_a_person():
    messages, _ = run(ActionGreet(), parse("greet"))
    text = messages[0]["text"]
    assert "assistant automatique" in text and "Bellerive-sur-Ondine" in text and "agent" in text


def test_handoff_and_out_of_scope_always_give_a_real_contact():
    handoff, _ = run(ActionHumanHandoff(), parse("human_handoff"))
    assert PHONE in handoff[0]["text"]
    oos, _ = run(ActionOutOfScope(), parse("out_of_scope"))
    assert "service-public.fr" in oos[0]["text"]
    assert oos[0]["buttons"][-1]["payload"] == "/human_handoff"


@pytest.fixture
def edited_commune(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "commune.yml"
    shutil.copy(PROJECT_ROOT / "commune.yml", path)
    monkeypatch.setenv("GUICHET_COMMUNE_FILE", str(path))
    return path


def test_changing_the_settings_file_changes_the_answer(edited_commune: Path):
    latest = parse("faq", ranking=[("contact_mairie", 0.9)])
    before, _ = run(ActionFaq(), latest)
    assert PHONE in before[0]["text"]
    facts = yaml.safe_load(edited_commune.read_text(encoding="utf-8"))
    facts["mairie"]["telephone"] = "05 99 99 99 99"
    edited_commune.write_text(yaml.safe_dump(facts, allow_unicode=True), encoding="utf-8")
    future = time.time() + 5
    os.utime(edited_commune, (future, future))
    after, _ = run(ActionFaq(), latest)
    assert "05 99 99 99 99" in after[0]["text"] and PHONE not in after[0]["text"]


def test_an_faq_answer_can_be_rated_and_offers_a_person():
    messages, _ = run(ActionFaq(), parse("faq", 1.0, entities=[{"entity": "faq_topic", "value": "cni"}]))
    buttons = messages[0]["buttons"]
    assert [b["payload"] for b in buttons] == [
        '/faq{"faq_topic":"cni","rating":"utile"}', '/faq{"faq_topic":"cni","rating":"pas_utile"}', "/human_handoff"
    ]
    assert all(len(b["title"]) <= 20 for b in buttons), "Messenger limits titles to 20 characters"


def test_tapping_a_rating_records_it_once_per_conversation_and_thanks(tmp_path: Path):
    def rate(useful: bool):
        payload = rating_payload("cni", useful)
        entities = [{"entity": "faq_topic", "value": "cni"}, {"entity": "rating", "value": payload.split('"')[-2]}]
        return run(ActionFaq(), parse("faq", 1.0, entities=entities))

    messages, events = rate(False)
    assert messages[0]["text"].startswith("Merci de nous l'avoir dit")
    assert messages[0]["buttons"] == [{"title": "Parler à un agent", "payload": "/human_handoff"}]
    assert events == []  # the answer is not repeated, the conversation's state is unchanged
    url = os.environ["GUICHET_DATABASE_URL"]
    assert (ratings.by_topic(url)["cni"].useful, ratings.by_topic(url)["cni"].not_useful) == (0, 1)

    messages, _ = rate(True)  # the citizen changes their mind: the rating is replaced
    assert messages[0]["text"].startswith("Merci pour votre retour")
    assert (ratings.by_topic(url)["cni"].useful, ratings.by_topic(url)["cni"].not_useful) == (1, 0)


def test_a_rating_that_cannot_be_stored_still_thanks_the_citizen(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("GUICHET_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    entities = [{"entity": "faq_topic", "value": "cni"}, {"entity": "rating", "value": "utile"}]
    messages, _ = run(ActionFaq(), parse("faq", 1.0, entities=entities))
    assert messages[0]["text"].startswith("Merci pour votre retour")


def test_answers_that_lead_to_a_person_or_a_form_are_not_rated():
    for topic in ("urgence", "reclamation"):
        messages, _ = run(ActionFaq(), parse("faq", 1.0, entities=[{"entity": "faq_topic", "value": topic}]))
        assert not any("rating" in b["payload"] for m in messages for b in m.get("buttons") or []), topic


def test_a_theme_of_the_persistent_menu_lists_its_topics_and_a_person():
    messages, _ = run(ActionFaq(), parse("faq", 1.0, entities=[{"entity": "faq_theme", "value": "dechets"}]))
    assert "Déchets et collecte" in messages[0]["text"]
    payloads = [b["payload"] for b in messages[0]["buttons"]]
    assert topic_payload("collecte_ordures") in payloads and payloads[-1] == "/human_handoff"
    assert all(p.startswith('/faq{"faq_topic":') for p in payloads[:-1])
    # État civil has more topics than Messenger's 13 quick replies: 12 and a person.
    messages, _ = run(ActionFaq(), parse("faq", 1.0, entities=[{"entity": "faq_theme", "value": "etat_civil"}]))
    assert len(messages[0]["buttons"]) == 13 and "Écrivez-la" in messages[0]["text"]
    messages, _ = run(ActionFaq(), parse("faq", 1.0, entities=[{"entity": "faq_theme", "value": "inconnu"}]))
    assert messages[0]["buttons"] == [{"title": "Parler à un agent", "payload": "/human_handoff"}]
