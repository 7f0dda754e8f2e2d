"""What counts as "annuler" while a conversation is with the handoff."""

from __future__ import annotations

import pytest

from bot.handoff.commands import is_cancel
from bot.handoff.tracker_feed import TrackerEvent


def user(text: str, intent: str = "faq", confidence: float = 0.9) -> TrackerEvent:
    data = {"text": text, "parse_data": {"intent": {"name": intent, "confidence": confidence}}}
    return TrackerEvent(1, "c1", "user", 0.0, data)


@pytest.mark.parametrize("text", ["annuler", "Annuler !", "ANNULÉ", "annule", "stop", "laisse tomber", "/cancel",
                                  "annuler svp"])
def test_short_cancel_messages(text):
    assert is_cancel(user(text))


def test_the_cancel_intent_on_a_short_message():
    assert is_cancel(user("j'abandonne", "cancel", 0.95))
    assert not is_cancel(user("j'abandonne", "cancel", 0.5))


@pytest.mark.parametrize("text", [
    "je voudrais annuler mon rendez-vous de jeudi",
    "comment annuler une procuration",
    "le panneau stop est tombé",
])
def test_sentences_about_cancelling_something_are_for_the_agent(text):
    assert not is_cancel(user(text, "cancel", 0.99))


def test_only_citizen_messages():
    assert not is_cancel(TrackerEvent(1, "c1", "bot", 0.0, {"text": "annuler"}))


def test_agent_messages_are_told_apart():
    agent = TrackerEvent(2, "c1", "bot", 0.0, {"text": "Bonjour", "metadata": {"human_agent": True, "agent_name": "Marie"}})
    assert agent.author == "agent" and agent.agent_name == "Marie"
    assert TrackerEvent(3, "c1", "bot", 0.0, {"text": "Bonjour"}).author == "bot"
    long = TrackerEvent(4, "c1", "user", 0.0, {"text": "x" * 10, "metadata": {"full_text": "x" * 3000}})
    assert len(long.text) == 3000
