"""The `instagram` channel: same machinery as Messenger, Instagram's own limits and events."""

from __future__ import annotations

import pytest
import requests

from bot.channels import meta_send
from bot.channels.instagram import InstagramInput
from bot.settings import get_settings
from tests.meta_helpers import DAY, HOUR, agent_says, settle, undelivered
from tests.simulators.graph_api import (
    Citizen,
    GraphApiSimulator,
    echo_item,
    new_mid,
    now_ms,
    webhook,
)

IG_ACCOUNT = "17841405822304914"


def test_instagram_secrets_default_to_messengers(monkeypatch):
    monkeypatch.setenv("GUICHET_MESSENGER_PAGE_TOKEN", "page-token")
    monkeypatch.setenv("GUICHET_MESSENGER_APP_SECRET", "secret")
    monkeypatch.setenv("GUICHET_MESSENGER_VERIFY_TOKEN", "verify")
    monkeypatch.setenv("GUICHET_INSTAGRAM_ACCESS_TOKEN", "")
    monkeypatch.setenv("GUICHET_INSTAGRAM_APP_SECRET", "ig-secret")
    monkeypatch.delenv("GUICHET_INSTAGRAM_VERIFY_TOKEN", raising=False)
    config = InstagramInput.config_from_settings(get_settings())
    assert (config.access_token, config.app_secret, config.verify_token) == ("page-token", "ig-secret", "verify")


def test_instagram_has_its_own_name_object_and_limits():
    assert (InstagramInput.name(), InstagramInput.webhook_object) == ("instagram", "instagram")
    assert InstagramInput.limits is meta_send.INSTAGRAM
    text = "Démarche à effectuer en mairie, avec pièces justificatives. " * 40
    parts = meta_send.split_text(text, meta_send.INSTAGRAM)
    assert len(parts) > 2 and all(len(p.encode()) <= 1000 for p in parts)


# ===================================================================== the real stack
@pytest.fixture
def graph(stack) -> GraphApiSimulator:
    sim: GraphApiSimulator = stack.graph
    sim.clear_faults()
    return sim


@pytest.fixture
def igsid(graph: GraphApiSimulator) -> Citizen:
    return graph.citizen("instagram")


@pytest.mark.slow
def test_instagram_handshake(stack, graph):
    url = f"{stack.url}/webhooks/instagram/webhook"
    ok = requests.get(url, params={"hub.mode": "subscribe", "hub.verify_token": graph.verify_token,
                                   "hub.challenge": "42"}, timeout=10)
    assert (ok.status_code, ok.text) == (200, "42")
    assert requests.get(url, params={"hub.mode": "subscribe", "hub.verify_token": "x", "hub.challenge": "42"},
                        timeout=10).status_code == 403


@pytest.mark.slow
def test_an_instagram_message_is_answered_within_1000_bytes(igsid):
    assert igsid.say("c'est quoi les horaires de la mairie ?").status_code == 200
    sent = igsid.wait(1)
    assert "8 h 30" in " ".join(s.text for s in sent)
    assert all(s.platform == "instagram" and len(s.text.encode()) <= 1000 for s in sent)
    assert sent[0].messaging_type == "RESPONSE"


@pytest.mark.slow
def test_instagram_quick_replies_and_no_button_template(igsid):
    igsid.say("Bonjour")
    greeting = igsid.wait(1)[0]
    assert greeting.message["quick_replies"][-1]["payload"] == "/human_handoff"
    igsid.tap("Carte d'identité", '/faq{"faq_topic":"cni"}')
    igsid.sim.wait_for(lambda: any("ants.gouv.fr" in t for t in igsid.texts()))
    assert all("attachment" not in s.message for s in igsid.sent())


@pytest.mark.slow
def test_instagram_seen_echo_and_signature(igsid, graph):
    seen = {"sender": {"id": igsid.id}, "recipient": {"id": IG_ACCOUNT}, "timestamp": now_ms(),
            "read": {"mid": new_mid("instagram")}}
    echo = echo_item(IG_ACCOUNT, igsid.id, text="Bonjour !")
    assert igsid.send(seen, echo).status_code == 200
    assert igsid.say("Bonjour", signature="forged").status_code == 403
    settle(igsid)
    assert len(igsid.sent()) == 1


@pytest.mark.slow
def test_instagram_webhooks_on_the_messenger_url_are_ignored(stack, igsid, graph):
    body = webhook("instagram", [{"id": IG_ACCOUNT, "messaging": [igsid.item_text("Bonjour")]}])
    assert graph.deliver(body, platform="messenger").status_code == 200
    settle(igsid)
    assert len(igsid.sent()) == 1
    assert "this URL is the messenger webhook" in stack.log("rasa")


@pytest.mark.slow
def test_a_long_agent_answer_is_split_by_bytes(stack, igsid):
    igsid.say("Bonjour")
    igsid.wait(1)
    text = "\n\n".join(["Votre dossier d'état civil a été transmis au service compétent. " * 8] * 4)
    agent_says(stack, igsid.id, text, channel="instagram")
    igsid.sim.wait_for(lambda: len(igsid.sent()) >= 4)
    parts = igsid.sent()[1:]
    assert all(len(p.text.encode()) <= 1000 for p in parts)
    assert " ".join(" ".join(p.text for p in parts).split()) == " ".join(text.split())


@pytest.mark.slow
def test_instagram_windows(stack, graph):
    late, gone = graph.citizen("instagram"), graph.citizen("instagram")
    late.say("Bonjour", ago=30 * HOUR)
    gone.say("Bonjour", ago=9 * DAY)
    graph.wait_for(lambda: undelivered(stack, late.id, "instagram") and undelivered(stack, gone.id, "instagram"))
    agent_says(stack, late.id, "Bonjour, ici Marie.", channel="instagram")
    agent_says(stack, gone.id, "Bonjour, ici Marie.", channel="instagram")
    (sent,) = late.wait(1)
    assert (sent.messaging_type, sent.tag) == ("MESSAGE_TAG", "HUMAN_AGENT")
    graph.wait_for(lambda: any(r["reason"] == "human_agent_window_closed"
                               for r in undelivered(stack, gone.id, "instagram")))
    assert gone.sent() == []
