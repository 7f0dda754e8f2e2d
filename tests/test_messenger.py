"""The `messenger` channel: its parts alone, then the real stack (Rasa + action server)
behind signed webhooks from the local Graph API simulator."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import requests
from rasa.shared.core.events import BotUttered, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from bot.channels import meta_send
from bot.channels.messenger import MessengerInput
from bot.channels.meta_channel import MetaConfig
from bot.channels.meta_events import (
    ATTACHMENT,
    EMPTY,
    POSTBACK,
    QUICK_REPLY,
    TEXT,
    NotAWebhook,
    parse_webhook,
)
from bot.channels.meta_window import decide, last_user_message_time
from tests.meta_helpers import CNI, COLLECTE, DAY, HOUR, agent_says, rasa_api, settle, undelivered
from tests.simulators.graph_api import (
    Citizen,
    Fault,
    GraphApiSimulator,
    attachment_item,
    delivery_item,
    echo_item,
    get_started_item,
    new_mid,
    now_ms,
    postback_item,
    quick_reply_item,
    reaction_item,
    read_item,
    text_item,
    webhook,
)

PAGE = "104729483921045"
PHONE = "02 54 00 00 00"


# --------------------------------------------------------------------- reading webhooks
def test_every_entry_and_item_of_a_batch_is_read_and_sorted_by_timestamp():
    body = webhook("page", [
        {"id": PAGE, "messaging": [text_item("1", PAGE, "second", timestamp=2000),
                                   quick_reply_item("2", PAGE, "CNI", CNI, timestamp=1500)]},
        {"id": PAGE, "messaging": [text_item("1", PAGE, "first", timestamp=1000),
                                   postback_item("3", PAGE, "Menu", "/greet", timestamp=3000)]},
    ])
    batch = parse_webhook(json.loads(json.dumps(body)), "page", now_ms())
    assert [(e.sender, e.kind, e.timestamp) for e in batch.events] == [
        ("1", TEXT, 1000), ("2", QUICK_REPLY, 1500), ("1", TEXT, 2000), ("3", POSTBACK, 3000)]
    assert batch.events[1].payload == CNI and batch.events[1].title == "CNI"


def test_echoes_receipts_reactions_standby_and_unknown_events_are_ignored():
    mid = new_mid()
    body = webhook("page", [
        {"id": PAGE, "messaging": [
            echo_item(PAGE, "1", text="Bonjour"), echo_item(PAGE, "1", attachment_url="https://x.example/a.png"),
            delivery_item("1", PAGE, [mid]), read_item("1", PAGE), reaction_item("1", PAGE, mid),
            {"sender": {"id": "1"}, "recipient": {"id": PAGE}, "timestamp": 1, "message_edit": {"mid": mid}},
            {"sender": {"id": "1"}, "recipient": {"id": PAGE}, "timestamp": 1, "something_new": {}},
            "not an object", {"recipient": {"id": PAGE}, "message": {"text": "no sender"}},
        ]},
        {"id": PAGE, "standby": [text_item("1", PAGE, "to the other app")]},
    ])
    batch = parse_webhook(body, "page", now_ms())
    assert batch.events == []
    assert [i.reason for i in batch.ignored] == [
        "echo", "echo", "delivery", "read", "reaction", "message_edit", "unknown_event",
        "malformed_item", "no_sender", "standby"]


def test_attachments_locations_and_empty_messages():
    body = webhook("page", [{"id": PAGE, "messaging": [
        attachment_item("1", PAGE, "image", "https://cdn.example/photo.jpg"),
        attachment_item("1", PAGE, "location", coordinates=(47.59, 1.33)),
        text_item("1", PAGE, "   "),
        {"sender": {"id": "1"}, "recipient": {"id": PAGE}, "timestamp": now_ms() + 10, "message": {"mid": "m_1"}},
    ]}])
    image, location, blank, bare = parse_webhook(body, "page", now_ms()).events
    assert image.kind == ATTACHMENT and image.attachments == [{"type": "image", "url": "https://cdn.example/photo.jpg"}]
    assert location.attachments[0]["coordinates"] == {"lat": 47.59, "long": 1.33}
    assert blank.kind == EMPTY and bare.kind == EMPTY


@pytest.mark.parametrize("body", [[], "x", {"object": "page", "entry": "nope"}, {"entry": []}])
def test_what_is_not_a_webhook_is_refused_by_the_parser(body):
    with pytest.raises(NotAWebhook):
        parse_webhook(body, "page", now_ms())


def test_another_object_is_ignored():
    assert parse_webhook({"object": "instagram", "entry": []}, "page", now_ms()).ignored[0].reason == "object_instagram"


# --------------------------------------------------------------------- building messages
def test_long_text_is_split_at_paragraphs_then_sentences():
    paragraph = ("La mairie vous accueille du lundi au samedi. " * 20).strip()
    text = "\n\n".join([paragraph] * 6)
    parts = meta_send.split_text(text, meta_send.MESSENGER)
    assert len(parts) > 1 and all(meta_send.utf16_len(p) < 2000 for p in parts)
    assert all(p.endswith(".") for p in parts)
    assert " ".join(" ".join(parts).split()) == " ".join(text.split())


def test_a_text_without_spaces_is_cut_hard_and_emoji_count_double():
    parts = meta_send.split_text("🙂" * 1500, meta_send.MESSENGER)
    assert [len(p) for p in parts] == [999, 501]
    assert "".join(parts) == "🙂" * 1500


def test_instagram_counts_bytes():
    parts = meta_send.split_text("é" * 1500, meta_send.INSTAGRAM)
    assert all(len(p.encode()) <= 1000 for p in parts) and "".join(parts) == "é" * 1500


def test_buttons_become_quick_replies_within_limits():
    buttons = [{"title": f"Sujet numéro {i} très long", "payload": f"/faq{{\"faq_topic\":\"t{i}\"}}"} for i in range(15)]
    buttons.append({"title": "Parler à un agent", "payload": "/human_handoff"})
    (message,) = meta_send.button_messages("Vouliez-vous dire…", buttons, meta_send.MESSENGER)
    replies = message["quick_replies"]
    assert len(replies) == 13 and all(len(r["title"]) <= 20 for r in replies)
    assert replies[-1]["payload"] == "/human_handoff" and replies[0]["title"].endswith("…")


def test_link_buttons_use_a_button_template_on_messenger_and_text_on_instagram():
    buttons = [{"title": "Prendre rendez-vous", "url": "https://rdv.example/"}, {"title": "Agent", "payload": "/human_handoff"}]
    (template,) = meta_send.button_messages("Pour votre carte :", buttons, meta_send.MESSENGER)
    payload = template["attachment"]["payload"]
    assert payload["template_type"] == "button"
    assert payload["buttons"][0] == {"type": "web_url", "url": "https://rdv.example/", "title": "Prendre rendez-vous"}
    (text,) = meta_send.button_messages("Pour votre carte :", buttons, meta_send.INSTAGRAM)
    assert "https://rdv.example/" in text["text"] and text["quick_replies"][0]["payload"] == "/human_handoff"


# --------------------------------------------------------------------- windows
def test_the_window_rules():
    now = 1_000_000_000.0
    bot, agent = {"human_agent": False}, {"human_agent": True}
    assert decide(now - HOUR, now, proactive=False, **bot).messaging_type == "RESPONSE"
    assert decide(now - HOUR, now, proactive=True, **bot).messaging_type == "UPDATE"
    assert decide(now - 25 * HOUR, now, proactive=False, **bot).reason == "window_closed"
    late = decide(now - 3 * DAY, now, proactive=True, **agent)
    assert (late.allowed, late.messaging_type, late.tag) == (True, "MESSAGE_TAG", "HUMAN_AGENT")
    assert decide(now - 8 * DAY, now, proactive=True, **agent).reason == "human_agent_window_closed"
    assert decide(None, now, proactive=True, **agent).reason == "no_user_message"


def test_the_last_message_comes_from_metas_timestamp_in_the_tracker():
    tracker = DialogueStateTracker.from_events("1", [
        UserUttered("a", input_channel="messenger", metadata={"messenger": {"timestamp": 1_000_000}}, timestamp=5000),
        BotUttered("b"),
        UserUttered("c", input_channel="telegram", timestamp=9000),
    ])
    assert last_user_message_time(tracker, "messenger") == 1000.0
    assert last_user_message_time(tracker, "instagram") is None


# --------------------------------------------------------------------- inbound mapping
def channel_with_domain(*intents: str, **secrets: str) -> MessengerInput:
    config = MetaConfig(secrets.get("access_token", "t"), secrets.get("app_secret", "s"), secrets.get("verify_token", "v"),
                        "http://127.0.0.1:9", "v26.0", 1.0, 1, 0.1)
    channel = MessengerInput(config)
    domain = SimpleNamespace(intents=list(intents))
    channel.app = SimpleNamespace(ctx=SimpleNamespace(agent=SimpleNamespace(domain=domain)))
    return channel


def first_event(item: dict):
    return parse_webhook(webhook("page", [{"id": PAGE, "messaging": [item]}]), "page", now_ms()).events[0]


def test_what_rasa_reads_for_each_kind_of_event():
    channel = channel_with_domain("greet", "faq", "human_handoff", "nlu_fallback")
    read = lambda item: channel.rasa_text(first_event(item), {})  # noqa: E731
    assert read(get_started_item("1", PAGE)) == "/greet"
    assert read(quick_reply_item("1", PAGE, "CNI", CNI)) == CNI
    assert read(postback_item("1", PAGE, "Parler à un agent", "/human_handoff")) == "/human_handoff"
    assert read(postback_item("1", PAGE, "État civil", '/faq{"faq_theme":"etat_civil"}')) == '/faq{"faq_theme":"etat_civil"}'
    # A payload the model doesn't know (an old menu): its title goes to the NLU.
    assert read(postback_item("1", PAGE, "Ancien menu", '/old_menu{"x":"y"}')) == "Ancien menu"
    assert read(text_item("1", PAGE, "/restart")) == "restart"
    assert read(attachment_item("1", PAGE, "image", "https://cdn.example/p.jpg", text="trou sur la route")) == "trou sur la route"
    assert read(attachment_item("1", PAGE, "image", "https://cdn.example/p.jpg")) == "/nlu_fallback"
    markers = channel_with_domain("greet")  # neither intent known: a readable marker
    assert markers.rasa_text(first_event(attachment_item("1", PAGE, "image", "https://x.example/p.jpg")), {}) == "[photo]"
    location = attachment_item("1", PAGE, "location", coordinates=(47.5, 1.25))
    assert markers.rasa_text(first_event(location), {}) == "[position 47.50000, 1.25000]"
    assert read(text_item("1", PAGE, "\u200b\u200b")) is None
    with_intent = channel_with_domain("attachment")
    assert with_intent.rasa_text(first_event(attachment_item("1", PAGE, "image", "https://x.example/i.png")), {}) == "/attachment"


def test_an_unconfigured_channel_refuses_with_403():
    channel = channel_with_domain(app_secret="")
    refused = channel._refuse_unconfigured(("app_secret", "access_token"))
    assert refused is not None and refused.status == 403
    assert channel_with_domain()._refuse_unconfigured(("app_secret", "access_token")) is None


# ===================================================================== the real stack
@pytest.fixture
def graph(stack) -> GraphApiSimulator:
    sim: GraphApiSimulator = stack.graph
    sim.clear_faults()
    return sim


@pytest.fixture
def citizen(graph: GraphApiSimulator) -> Citizen:
    return graph.citizen("messenger")


@pytest.mark.slow
def test_the_verification_handshake(stack, graph):
    url = f"{stack.url}/webhooks/messenger/webhook"
    ok = requests.get(url, params={"hub.mode": "subscribe", "hub.verify_token": graph.verify_token,
                                   "hub.challenge": "1158201444"}, timeout=10)
    assert (ok.status_code, ok.text) == (200, "1158201444")
    for params in ({"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
                   {"hub.mode": "unsubscribe", "hub.verify_token": graph.verify_token, "hub.challenge": "1"},
                   {}):
        assert requests.get(url, params=params, timeout=10).status_code == 403


@pytest.mark.slow
def test_text_gets_an_answer_with_typing_first(citizen):
    assert citizen.say("c'est quoi les horaires de la mairie ?").status_code == 200
    (answer,) = citizen.wait()
    assert "8 h 30" in answer.text and answer.messaging_type == "RESPONSE" and answer.version == "v26.0"
    assert citizen.sim.actions_to(citizen.id) == ["typing_on"]


@pytest.mark.slow
def test_quick_reply_postback_and_get_started(citizen):
    citizen.get_started()
    greeting = citizen.wait(1)[0]
    assert "assistant automatique" in greeting.text
    assert {"content_type": "text", "title": "Parler à un agent", "payload": "/human_handoff"} in greeting.message["quick_replies"]
    citizen.tap("Carte d'identité", CNI)
    citizen.wait(2)
    assert "ants.gouv.fr" in citizen.texts()[1]
    citizen.postback("Collecte des déchets", COLLECTE)
    citizen.wait(3)
    assert "bac gris" in citizen.texts()[2]
    citizen.tap("Parler à un agent", "/human_handoff")
    citizen.wait(4)


@pytest.mark.slow
def test_forged_unsigned_and_sha1_only_webhooks_are_refused(citizen):
    for signature in ("forged", "none", "sha1"):
        assert citizen.say("Bonjour", signature=signature).status_code == 403
    settle(citizen)
    assert len(citizen.sent()) == 1 and citizen.sim.actions_to(citizen.id) == ["typing_on"]


@pytest.mark.slow
def test_a_redelivered_message_is_answered_once(citizen):
    item = citizen.item_text("Bonjour")
    assert citizen.send(item).status_code == 200
    assert citizen.send(item).status_code == 200
    settle(citizen)
    assert sum("assistant automatique" in t for t in citizen.texts()) == 1
    assert citizen.sim.actions_to(citizen.id) == ["typing_on", "typing_on"]


@pytest.mark.slow
def test_malformed_payloads_are_acknowledged_and_dropped(citizen, graph):
    for raw in (b"{not json", b"[]", json.dumps({"object": "page", "entry": "x"}).encode(), "é".encode("latin-1")):
        assert graph.deliver(None, raw=raw).status_code == 200
    mixed = {"object": "page", "entry": [{"id": PAGE, "time": now_ms(), "messaging": ["junk", {"sender": "nope"}, None]},
                                         "junk-entry", {"id": PAGE, "messaging": {"not": "a list"}}]}
    assert graph.deliver(mixed).status_code == 200
    settle(citizen)
    assert len(citizen.sent()) == 1


@pytest.mark.slow
def test_unknown_event_types_and_objects_are_ignored(citizen, graph):
    unknown = {"sender": {"id": citizen.id}, "recipient": {"id": PAGE}, "timestamp": now_ms(), "optin": {"ref": "x"}}
    novel = {"sender": {"id": citizen.id}, "recipient": {"id": PAGE}, "timestamp": now_ms(), "brand_new_event": {"a": 1}}
    assert citizen.send(unknown, novel).status_code == 200
    assert graph.deliver({"object": "user", "entry": [{"id": "1", "changes": [{"field": "feed"}]}]}).status_code == 200
    settle(citizen)
    assert len(citizen.sent()) == 1


@pytest.mark.slow
def test_echoes_receipts_reactions_and_standby_are_not_answered(citizen, graph):
    mid = new_mid()
    items = [echo_item(PAGE, citizen.id, text="Bonjour !"), echo_item(PAGE, citizen.id, attachment_url="https://x.example/i.png"),
             delivery_item(citizen.id, PAGE, [mid]), read_item(citizen.id, PAGE), reaction_item(citizen.id, PAGE, mid)]
    standby = webhook("page", [{"id": PAGE, "standby": [text_item(citizen.id, PAGE, "Bonjour, autre appli")]}])
    assert citizen.send(*items).status_code == 200
    assert graph.deliver(standby).status_code == 200
    settle(citizen)
    assert len(citizen.sent()) == 1 and not graph.sent_to(PAGE)
    assert citizen.sim.actions_to(citizen.id) == ["typing_on"]


@pytest.mark.slow
def test_a_batched_post_answers_everyone_in_order(graph):
    alice, bob, chloe = (graph.citizen("messenger") for _ in range(3))
    t = now_ms()
    body = webhook("page", [
        {"id": PAGE, "messaging": [quick_reply_item(alice.id, PAGE, "Carte d'identité", CNI, timestamp=t + 2),
                                   quick_reply_item(bob.id, PAGE, "Collecte", COLLECTE, timestamp=t + 1)]},
        {"id": PAGE, "messaging": [text_item(alice.id, PAGE, "Bonjour", timestamp=t),
                                   get_started_item(chloe.id, PAGE, timestamp=t + 3)]},
    ])
    assert graph.deliver(body).status_code == 200
    alice.wait(2), bob.wait(1), chloe.wait(1)
    settle(alice), settle(bob), settle(chloe)
    first, second = alice.texts()[:2]
    assert "assistant automatique" in first and "ants.gouv.fr" in second
    assert "bac gris" in bob.texts()[0] and "ants.gouv.fr" not in " ".join(bob.texts())
    assert "assistant automatique" in chloe.texts()[0] and "ants.gouv.fr" not in " ".join(chloe.texts())
    assert len(alice.texts()) == 3 and len(bob.texts()) == 2 and len(chloe.texts()) == 2


@pytest.mark.slow
def test_image_and_location_are_acknowledged_and_kept_in_the_tracker(stack, citizen):
    citizen.attach("image", "https://cdn.example/nid-de-poule.jpg")
    (answer,) = citizen.wait(1)
    assert "reformuler" in answer.text and answer.message["quick_replies"][-1]["payload"] == "/human_handoff"
    citizen.attach("location", coordinates=(47.5912, 1.3281))
    citizen.wait(2)
    tracker = rasa_api(stack, "GET", f"/conversations/{citizen.id}/tracker").json()
    users = [e for e in tracker["events"] if e["event"] == "user"]
    image, location = users[-2]["metadata"]["messenger"], users[-1]["metadata"]["messenger"]
    assert image["attachments"] == [{"type": "image", "url": "https://cdn.example/nid-de-poule.jpg"}]
    assert location["location"] == {"lat": 47.5912, "long": 1.3281}
    assert users[-1]["input_channel"] == "messenger" and users[-1]["message_id"] == location["mid"]


@pytest.mark.slow
@pytest.mark.parametrize("text", ["x" * 10_000, "🙂🙂 bonjour 👋", "<script>alert('x')</script> horaires mairie <b>?</b>"])
def test_odd_messages_get_a_plain_text_answer(citizen, text):
    citizen.say(text)
    sent = citizen.wait(1)
    assert all("text" in s.message for s in sent)
    assert all("<script>" not in s.text for s in sent)


@pytest.mark.slow
def test_an_empty_message_is_not_processed(citizen):
    citizen.say("\u200b")
    citizen.send({"sender": {"id": citizen.id}, "recipient": {"id": PAGE}, "timestamp": now_ms(), "message": {"mid": new_mid()}})
    settle(citizen)
    assert len(citizen.sent()) == 1


@pytest.mark.slow
def test_a_long_agent_answer_is_split_and_html_stays_text(stack, citizen):
    citizen.say("Bonjour")
    citizen.wait(1)
    paragraphs = [("Voici la procédure détaillée pour votre demande. " * 14).strip() for _ in range(6)]
    long_text = "\n\n".join(paragraphs) + "\n\n<b>Merci</b> <script>x()</script>"
    agent_says(stack, citizen.id, long_text)
    citizen.sim.wait_for(lambda: "<script>" in citizen.texts()[-1])
    parts = [s for s in citizen.sent()[1:]]
    assert len(parts) >= 3 and all(len(p.text) < 2000 for p in parts)
    assert " ".join(" ".join(p.text for p in parts).split()) == " ".join(long_text.split())
    assert all(p.messaging_type == "RESPONSE" for p in parts)


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "count"), [("server_error", 1), ("rate_limit", 2), ("timeout", 1), ("temporary", 1)])
def test_graph_failures_are_retried_and_delivered_once(citizen, graph, kind, count):
    graph.inject(Fault(kind, count=count, recipient=citizen.id, delay=10))
    citizen.say("c'est quoi les horaires de la mairie ?")
    citizen.wait(1)
    settle(citizen)
    assert sum("8 h 30" in t for t in citizen.texts()) == 1
    calls = graph.calls_to(citizen.id)
    assert [c.fault for c in calls[: count + 1]] == [kind] * count + [None]


@pytest.mark.slow
def test_an_invalid_token_is_logged_and_the_worker_survives(stack, citizen, graph):
    graph.inject(Fault("invalid_token", count=20, recipient=citizen.id))
    citizen.say("Bonjour")
    graph.wait_for(lambda: graph.calls_to(citizen.id))
    graph.wait_for(lambda: any(r["reason"] == "token_invalid" for r in undelivered(stack, citizen.id)))
    assert len(graph.calls_to(citizen.id)) == 1 and not citizen.sent()
    assert "code=190" in stack.log("rasa")
    graph.clear_faults()
    settle(citizen)
    assert len(citizen.sent()) == 1


@pytest.mark.slow
def test_the_webhook_acknowledges_while_processing_is_slow(citizen, graph):
    graph.hold(recipient=citizen.id)
    try:
        assert citizen.say("c'est quoi les horaires de la mairie ?").status_code == 200
        graph.wait_for(lambda: graph.actions_to(citizen.id))
        assert citizen.sent() == []
    finally:
        graph.release()
    assert "8 h 30" in citizen.wait(1)[0].text


@pytest.mark.slow
def test_outside_24_hours_the_bot_is_silent_and_an_agent_uses_human_agent(stack, citizen, graph):
    citizen.say("Bonjour", ago=25 * HOUR)
    graph.wait_for(lambda: any(r["reason"] == "window_closed" for r in undelivered(stack, citizen.id)))
    assert citizen.sent() == [] and graph.actions_to(citizen.id) == []
    assert "window_closed" in stack.log("rasa")
    agent_says(stack, citizen.id, "Bonjour, ici Marie de l'accueil : votre dossier est prêt.")
    (sent,) = citizen.wait(1)
    assert (sent.messaging_type, sent.tag) == ("MESSAGE_TAG", "HUMAN_AGENT")
    agent_says(stack, citizen.id, "Message automatique", agent=None)
    graph.wait_for(lambda: len(undelivered(stack, citizen.id)) >= 2)
    assert len(citizen.sent()) == 1


@pytest.mark.slow
def test_after_seven_days_even_an_agent_cannot_write(stack, citizen, graph):
    citizen.say("Bonjour", ago=8 * DAY)
    graph.wait_for(lambda: undelivered(stack, citizen.id))
    agent_says(stack, citizen.id, "Bonjour, ici Marie.")
    graph.wait_for(lambda: any(r["reason"] == "human_agent_window_closed" for r in undelivered(stack, citizen.id)))
    assert citizen.sent() == [] and not graph.calls_to(citizen.id)


@pytest.mark.slow
def test_an_agent_message_inside_24_hours_is_a_response(stack, citizen):
    citizen.say("Bonjour")
    citizen.wait(1)
    agent_says(stack, citizen.id, "Bonjour, ici Marie.")
    sent = citizen.wait(2)[1]
    assert (sent.text, sent.messaging_type, sent.tag) == ("Bonjour, ici Marie.", "RESPONSE", None)


@pytest.mark.slow
@pytest.mark.parametrize(("age", "expected"), [(2 * HOUR, ("RESPONSE", None)), (3 * DAY, ("MESSAGE_TAG", "HUMAN_AGENT"))])
def test_the_window_is_read_from_the_tracker_store(stack, graph, age, expected):
    """A citizen this process never saw (as after a restart): the tracker store decides."""
    person = graph.citizen("messenger")
    stamp = now_ms() - int(age * 1000)
    graph.note_user_message("messenger", person.id, stamp)
    event = {"event": "user", "text": "Bonjour", "timestamp": stamp / 1000, "input_channel": "messenger",
             "parse_data": {"intent": {"name": "greet", "confidence": 1.0}, "entities": []},
             "metadata": {"messenger": {"timestamp": stamp, "mid": new_mid()}}}
    appended = rasa_api(stack, "POST", f"/conversations/{person.id}/tracker/events", json=event)
    assert appended.status_code == 200, appended.text
    agent_says(stack, person.id, "Bonjour, ici Marie.")
    (sent,) = person.wait(1)
    assert (sent.messaging_type, sent.tag) == expected


@pytest.mark.slow
def test_a_proactive_bot_message_inside_24_hours_is_an_update(stack, citizen):
    citizen.say("Bonjour")
    citizen.wait(1)
    agent_says(stack, citizen.id, "Rappel : la mairie ferme à midi.", agent=None)
    assert citizen.wait(2)[1].messaging_type == "UPDATE"


@pytest.mark.slow
def test_the_deliveries_endpoint_needs_the_rasa_token(stack):
    url = f"{stack.url}/webhooks/messenger/deliveries"
    assert requests.get(url, params={"recipient": "1"}, timeout=10).status_code == 401
    assert requests.get(url, params={"recipient": "1"}, timeout=10,
                        headers={"Authorization": "Bearer wrong"}).status_code == 401


@pytest.mark.slow
def test_a_flood_from_one_sender_is_cut_and_the_others_are_answered(stack, graph):
    """GUICHET_SENDER_BURST (20) messages at once, then 20 per minute: the rest of a flood
    is dropped before Rasa, counted in the metrics, and another citizen is answered."""
    flooder, other = graph.citizen("messenger"), graph.citizen("messenger")
    for i in range(35):
        assert flooder.say(f"message automatique n°{i} 🤖").status_code == 200
    before = len(other.sent())
    assert other.tap("Collecte", COLLECTE).status_code == 200
    graph.wait_for(lambda: any("bac gris" in s.text for s in other.sent()[before:]))

    def user_events() -> int:
        tracker = rasa_api(stack, "GET", f"/conversations/{flooder.id}/tracker").json()
        return sum(1 for e in tracker["events"] if e["event"] == "user")

    counts: list[int] = []
    graph.wait_for(lambda: counts.append(user_events()) or (len(counts) > 5 and len(set(counts[-5:])) == 1),
                   timeout=120, interval=1)
    assert 20 <= counts[-1] <= 21, counts  # the burst, and at most one refilled in the meantime
    metrics = requests.get(f"{stack.url}/webhooks/metrics/", timeout=10,
                           headers={"Authorization": f"Bearer {stack.env['GUICHET_RASA_TOKEN']}"}).text
    dropped = next(float(line.split()[-1]) for line in metrics.splitlines()
                   if line.startswith('guichet_rate_limited_total{channel="messenger"}'))
    assert dropped >= 35 - counts[-1]
    assert "over the per-sender limit" in stack.log("rasa")
