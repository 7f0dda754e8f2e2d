"""The real stack: Rasa server + action server, through the authenticated `api` channel."""

from __future__ import annotations

import os
import time
import uuid

import pytest
import yaml

pytestmark = pytest.mark.slow
PHONE = "02 54 00 00 00"


def sender() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


def texts(messages: list[dict]) -> str:
    return "\n".join(m.get("text", "") for m in messages)


def test_greeting_then_an_faq_answer_with_the_communes_facts(stack):
    who = sender()
    greeting = stack.say(who, "Bonjour")
    assert "assistant automatique" in texts(greeting)
    answer = stack.say(who, "c'est quoi les horaires de la mairie ?")
    assert "8 h 30" in texts(answer) and "{" not in texts(answer)


def test_quick_reply_payload_answers_the_chosen_topic(stack):
    answer = stack.say(sender(), '/faq{"faq_topic":"collecte_ordures"}')
    assert "mardi" in texts(answer)


def test_fallback_offers_topics_then_gives_the_contact(stack):
    who = sender()
    first = stack.say(who, "zrgl bfft qwxx")
    assert first[0]["text"].startswith("Je ne suis pas sûr")
    assert first[0]["buttons"][-1]["payload"] == "/human_handoff"
    second = stack.say(who, "vvvkz plorm")
    assert PHONE in texts(second)


def test_handoff_and_out_of_scope(stack):
    assert PHONE in texts(stack.say(sender(), "je veux parler à un agent de la mairie"))
    assert "ne relève pas de la mairie" in texts(stack.say(sender(), "c'est quoi la meilleure recette de crêpes"))


def test_editing_the_commune_file_changes_answers_without_retraining(stack):
    facts = yaml.safe_load(stack.commune_file.read_text(encoding="utf-8"))
    old = facts["collecte"]["ordures_menageres"]
    facts["collecte"]["ordures_menageres"] = "le jeudi soir"
    try:
        stack.commune_file.write_text(yaml.safe_dump(facts, allow_unicode=True), encoding="utf-8")
        future = time.time() + 5
        os.utime(stack.commune_file, (future, future))
        answer = stack.say(sender(), '/faq{"faq_topic":"collecte_ordures"}')
        assert "le jeudi soir" in texts(answer)
    finally:
        facts["collecte"]["ordures_menageres"] = old
        stack.commune_file.write_text(yaml.safe_dump(facts, allow_unicode=True), encoding="utf-8")


@pytest.mark.parametrize(
    "text",
    [
        "x" * 10_000,
        "🙂🙂 bonjour 👋",
        "<script>alert('x')</script> horaires mairie",
        "' OR 1=1; DROP TABLE events; --",
    ],
)
def test_odd_messages_get_an_answer(stack, text):
    messages = stack.say(sender(), text)
    assert messages and all(m.get("text") for m in messages)


def test_bad_requests_get_clear_errors(stack):
    assert stack.post(sender(), "bonjour", token="wrong").status_code == 401
    empty = stack.post(sender(), "   ")
    assert empty.status_code == 400 and "empty" in empty.json()["error"]
    assert stack.post(sender(), 42).status_code == 400
    assert stack.post("", "bonjour").status_code == 400
    import requests

    raw = requests.post(
        f"{stack.url}/webhooks/api/webhook",
        data=b"{not json",
        headers={"Authorization": f"Bearer {stack.env['GUICHET_API_TOKEN']}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert raw.status_code == 400


def test_rasa_http_api_requires_the_token(stack):
    import requests

    assert requests.post(f"{stack.url}/model/parse", json={"text": "bonjour"}, timeout=30).status_code == 401
    ok = requests.post(
        f"{stack.url}/model/parse",
        params={"token": stack.env["GUICHET_RASA_TOKEN"]},
        json={"text": "carte d'identité perdue"},
        timeout=30,
    )
    assert ok.status_code == 200 and ok.json()["response_selector"]["faq"]["response"]["intent_response_key"] == "faq/cni"


def test_zz_action_server_down_still_answers_with_the_contact(stack):
    """Runs last in this module: stops the action server, then restarts it."""
    stack.stop("actions")
    try:
        messages = stack.say(sender(), "horaires de la mairie ?")
        assert PHONE in texts(messages) and "problème technique" in texts(messages)
    finally:
        stack.start_actions()
    assert "8 h 30" in texts(stack.say(sender(), "horaires de la mairie ?"))
