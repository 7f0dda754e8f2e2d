"""The `whatsapp` channel end to end: real Rasa + action server, the local WhatsApp Cloud API.

The citizen's side and the send endpoint are tests/simulators/whatsapp_cloud.py. Webhooks
are acknowledged at once and processed in the background, in order per citizen: to check
that something was *not* sent, a test sends a "sentinel" FAQ question afterwards and waits
for its answer; everything before it has been handled by then.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import pytest
import requests

from tests.simulators import whatsapp_cloud as sim
from tests.simulators.whatsapp_cloud import Fault, WhatsAppCloudSimulator

pytestmark = pytest.mark.slow

CNI = '/faq{"faq_topic":"cni"}'
COLLECTE = '/faq{"faq_topic":"collecte_ordures"}'
CNI_MARK = "ants.gouv.fr"
COLLECTE_MARK = "mardi"
SENTINEL = '/faq{"faq_topic":"passeport"}'
SENTINEL_MARK = "86 €"


@pytest.fixture
def wa(stack) -> WhatsAppCloudSimulator:
    simulator = stack.whatsapp
    simulator.reset()
    return simulator


def number() -> str:
    return "336" + "".join(secrets.choice("0123456789") for _ in range(8))


def body_of(message: dict[str, Any]) -> str:
    if message["type"] == "text":
        return message["text"]["body"]
    if message["type"] == "interactive":
        return message["interactive"]["body"]["text"]
    return ""


def bodies(messages: list[dict[str, Any]]) -> str:
    return "\n".join(body_of(m) for m in messages)


def sentinel(wa: WhatsAppCloudSimulator, who: str) -> list[dict[str, Any]]:
    """Asks a question used nowhere else and waits for its answer; returns what came before.

    Events of one citizen are handled in order: everything earlier is done by then.
    """
    wa.post(wa.envelope([sim.button_reply(who, SENTINEL, "Passeport")]))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        messages = wa.messages_to(who)
        marked = [i for i, m in enumerate(messages) if SENTINEL_MARK in body_of(m)]
        if marked:
            return messages[: marked[0]]
        time.sleep(0.1)
    raise AssertionError(f"no answer to the sentinel question: {wa.messages_to(who)}")


def failures(stack, who: str, count: int = 1, timeout: float = 60) -> list[dict[str, Any]]:
    """The delivery failures the bot recorded for `who` (waits for `count` of them)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = requests.get(
            f"{stack.url}/webhooks/whatsapp/deliveries",
            params={"recipient": who},
            headers={"Authorization": f"Bearer {stack.env['GUICHET_RASA_TOKEN']}"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        found = answer.json()["failures"]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def push_events(stack, who: str, events: list[dict[str, Any]]) -> requests.Response:
    """What the agent console does: events through Rasa's HTTP API, sent on WhatsApp."""
    return requests.post(
        f"{stack.url}/conversations/{who}/tracker/events",
        params={
            "token": stack.env["GUICHET_RASA_TOKEN"],
            "output_channel": "whatsapp",
            "execute_side_effects": "true",
        },
        json=events,
        timeout=60,
    )


# ----------------------------------------------------------------- webhook


def test_verification_handshake(stack, wa):
    url = f"{stack.url}/webhooks/whatsapp/webhook"
    good = {"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": wa.verify_token}
    answer = requests.get(url, params=good, timeout=10)
    assert answer.status_code == 200 and answer.text == "1158201444"
    assert requests.get(url, params={**good, "hub.verify_token": "meatyhamhock"}, timeout=10).status_code == 403
    assert requests.get(url, params={**good, "hub.mode": "unsubscribe"}, timeout=10).status_code == 403
    assert requests.get(url, params={"hub.mode": "subscribe", "hub.challenge": "1"}, timeout=10).status_code == 403


def test_unsigned_forged_and_malformed_webhooks_are_refused(stack, wa):
    who = number()
    payload = wa.envelope([sim.text_message(who, "bonjour")])
    raw = json.dumps(payload, ensure_ascii=True).encode()
    assert wa.post(payload, signed=False).status_code == 403
    assert wa.post(payload, signature=sim.sign("not-the-app-secret", raw)).status_code == 403
    assert wa.post(payload, signature="sha1=" + "0" * 40).status_code == 403
    # A valid signature of another body.
    other = json.dumps(wa.envelope([sim.text_message(who, "autre")]), ensure_ascii=True).encode()
    assert wa.post(None, raw=raw, signature=sim.sign(wa.app_secret, other)).status_code == 403
    # Signed but not JSON, or not a WhatsApp webhook: a clear 400.
    broken = b'{"object": "whatsapp_business_account", "entry": ['
    answer = wa.post(None, raw=broken, signature=sim.sign(wa.app_secret, broken))
    assert answer.status_code == 400 and "error" in answer.json()
    page = json.dumps({"object": "page", "entry": []}).encode()
    assert wa.post(None, raw=page, signature=sim.sign(wa.app_secret, page)).status_code == 400
    # Signed, well-formed, with malformed parts: accepted, the good part answered.
    mixed = wa.envelope([{"from": "<script>", "id": "x", "type": "text"}, sim.button_reply(who, CNI, "CNI")])
    mixed["entry"].append({"id": "1", "changes": [{"field": "messages", "value": "junk"}]})
    assert wa.post(mixed).status_code == 200
    assert CNI_MARK in bodies(wa.wait_for(who, 1))
    # Nothing from the refused requests was answered.
    assert len(sentinel(wa, who)) == 1


def test_replayed_webhook_is_answered_once(stack, wa):
    who = number()
    payload = wa.envelope([sim.button_reply(who, CNI, "Carte d'identité")])
    first = wa.post(payload)
    replay = wa.post(payload)
    assert first.status_code == replay.status_code == 200
    assert first.json()["messages"] == 1 and replay.json() == {**replay.json(), "messages": 0, "duplicates": 1}
    earlier = sentinel(wa, who)
    assert [CNI_MARK in body_of(m) for m in earlier] == [True]


def test_statuses_and_errors_are_logged_never_answered(stack, wa):
    who = number()
    wa.say(who, "Bonjour")
    greeting = wa.wait_for(who, 1)
    wamid = "wamid." + secrets.token_hex(8)
    for status in ("sent", "delivered", "read"):
        assert wa.post(wa.status_payload(wamid, who, status)).status_code == 200
    failed = wa.status_payload(wamid, who, "failed", errors=[sim.status_error(131026)])
    assert wa.post(failed).json()["statuses"] == 1
    assert wa.post(failed).json()["duplicates"] == 1
    assert wa.post(wa.envelope(errors=[sim.status_error(131000)])).status_code == 200
    assert len(sentinel(wa, who)) == len(greeting)
    [failure] = failures(stack, who)
    assert failure["code"] == 131026 and failure["reason"] == "undeliverable"


def test_batched_entries_are_all_answered_in_order(stack, wa):
    one, two = number(), number()
    first = wa.envelope([sim.button_reply(one, CNI, "CNI"), sim.button_reply(one, COLLECTE, "Collecte")])
    second = wa.envelope([sim.list_reply(two, COLLECTE, "Collecte des déchets")])
    answer = wa.post(WhatsAppCloudSimulator.batched(first, second))
    assert answer.status_code == 200 and answer.json()["messages"] == 3
    messages = wa.wait_for(one, 2)
    assert CNI_MARK in body_of(messages[0]) and COLLECTE_MARK in body_of(messages[1])
    assert COLLECTE_MARK in bodies(wa.wait_for(two, 1))


# ------------------------------------------------------------ conversation


def test_text_in_answer_out_with_read_receipt(stack, wa):
    who = number()
    item = wa.say(who, "Bonjour")
    [greeting] = wa.wait_for(who, 1)
    assert "assistant automatique" in body_of(greeting)
    # The greeting's agent button, as a WhatsApp reply button.
    assert greeting["type"] == "interactive" and greeting["interactive"]["type"] == "button"
    assert greeting["interactive"]["action"]["buttons"][-1]["reply"]["id"] == "/human_handoff"
    assert greeting["messaging_product"] == "whatsapp" and greeting["to"] == who
    assert item["id"] in wa.reads


def test_button_and_list_replies_send_their_payload(stack, wa):
    who = number()
    wa.post(wa.envelope([sim.button_reply(who, COLLECTE, "Collecte")]))
    assert COLLECTE_MARK in bodies(wa.wait_for(who, 1))
    wa.post(wa.envelope([sim.list_reply(who, CNI, "Carte d'identité", "Carte nationale d'identité")]))
    assert CNI_MARK in body_of(wa.wait_for(who, 2)[1])
    wa.post(wa.envelope([sim.template_button(who, CNI, "Carte d'identité")]))
    assert CNI_MARK in body_of(wa.wait_for(who, 3)[2])


def _tracker(stack, who: str) -> dict[str, Any]:
    answer = requests.get(
        f"{stack.url}/conversations/{who}/tracker", params={"token": stack.env["GUICHET_RASA_TOKEN"]}, timeout=30
    )
    assert answer.status_code == 200
    return answer.json()


def test_location_is_acknowledged_and_kept(stack, wa):
    who = number()
    wa.post(wa.envelope([sim.location_message(who, 47.3941, 0.6848, "Mairie", "1 place Jean Jaurès")]))
    [reply] = wa.wait_for(who, 1)
    assert "position" in body_of(reply) and "1 place Jean Jaurès" in body_of(reply)
    user = [e for e in _tracker(stack, who)["events"] if e["event"] == "user"][-1]
    assert user["metadata"]["whatsapp"]["location"]["latitude"] == 47.3941
    assert user["metadata"]["whatsapp"]["location"]["address"] == "1 place Jean Jaurès"


def test_image_is_acknowledged_and_kept(stack, wa):
    who = number()
    item = sim.media_message(who, "image", "image/jpeg")
    wa.post(wa.envelope([item]))
    [reply] = wa.wait_for(who, 1)
    assert "image" in body_of(reply) and "agent" in body_of(reply)
    events = _tracker(stack, who)["events"]
    user = [e for e in events if e["event"] == "user"][-1]
    assert user["metadata"]["whatsapp"]["media"] == {
        "type": "image", "id": item["image"]["id"], "mime_type": "image/jpeg", "sha256": item["image"]["sha256"]
    }
    assert [e for e in events if e["event"] == "bot"][-1]["text"] == body_of(reply)
    # The conversation goes on normally afterwards.
    sentinel(wa, who)


def test_media_after_a_session_expired_keeps_each_event_once(stack, wa):
    """A citizen who wrote three hours ago sends a message type WhatsApp cannot show: Rasa
    starts a new session and the channel answers it itself. Each event is stored once (two
    saves of that turn used to write the previous session's events a second time)."""
    import sqlalchemy as sa

    who = number()
    then = time.time() - 3 * 3600
    earlier = [
        {"event": "action", "timestamp": then, "name": "action_session_start"},
        {"event": "session_started", "timestamp": then},
        {"event": "action", "timestamp": then, "name": "action_listen"},
        {"event": "user", "timestamp": then + 1, "text": "bonjour",
         "parse_data": {"intent": {"name": "greet", "confidence": 0.99}, "entities": []}},
        {"event": "bot", "timestamp": then + 2, "text": "Bonjour !"},
        {"event": "action", "timestamp": then + 2, "name": "action_listen"},
    ]
    engine = sa.create_engine(f"sqlite:///{stack.workdir / 'tracker.db'}")
    with engine.begin() as connection:  # the earlier conversation, as Rasa stored it
        for event in earlier:
            connection.execute(sa.text(
                "INSERT INTO events (sender_id, type_name, timestamp, intent_name, action_name, data) "
                "VALUES (:sender, :type, :timestamp, :intent, :action, :data)"),
                {"sender": who, "type": event["event"], "timestamp": event["timestamp"],
                 "intent": event.get("parse_data", {}).get("intent", {}).get("name"),
                 "action": event.get("name"), "data": json.dumps(event)})
    wa.post(wa.envelope([sim.unknown_message(who)]))
    [reply] = wa.wait_for(who, 1)
    assert "ce type de message" in body_of(reply)
    with engine.connect() as connection:
        stored = [json.loads(row[0]) for row in connection.execute(
            sa.text("SELECT data FROM events WHERE sender_id = :sender ORDER BY id"), {"sender": who})]
    engine.dispose()
    assert stored[:len(earlier)] == earlier
    assert [e["event"] for e in stored[len(earlier):]] == [
        "slot", "action", "session_started", "action", "user", "bot", "action"]  # the new session, once
    assert [e["text"] for e in stored if e["event"] == "user"] == ["bonjour", "[message non lisible]"]


def test_paused_conversation_stays_silent_but_keeps_the_transcript(stack, wa):
    """An agent has taken the conversation over: the bot answers nothing, Rasa logs all."""
    who = number()
    wa.say(who, "Bonjour")
    greeting = wa.wait_for(who, 1)
    assert push_events(stack, who, [{"event": "pause"}]).status_code == 200
    image = sim.media_message(who, "image", "image/png")
    wa.post(wa.envelope([image, sim.text_message(who, "vous êtes là ?")]))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        users = [e for e in _tracker(stack, who)["events"] if e["event"] == "user"]
        if users[-1]["text"] == "vous êtes là ?":
            break
        time.sleep(0.2)
    assert users[-2]["metadata"]["whatsapp"]["media"]["id"] == image["image"]["id"]
    resume = [{"event": "resume"}, {"event": "action", "name": "action_listen"}]
    assert push_events(stack, who, resume).status_code == 200
    assert sentinel(wa, who) == greeting


def test_unknown_type_gets_a_polite_answer(stack, wa):
    who = number()
    wa.post(wa.envelope([sim.unknown_message(who)]))
    assert "ce type de message" in bodies(wa.wait_for(who, 1))


@pytest.mark.parametrize(
    "text",
    ["x" * 10_000, "🙂🙂 bonjour 👋", "<script>alert('x')</script> horaires mairie", "' OR 1=1; DROP TABLE events; --"],
    ids=["10000-chars", "emoji", "html-js", "sql"],
)
def test_odd_messages_get_an_answer(stack, wa, text):
    who = number()
    wa.say(who, text)
    messages = wa.wait_for(who, 1)
    assert all(body_of(m) for m in messages)


@pytest.mark.parametrize("text", ["", "   \n "])
def test_empty_message_gets_a_clear_answer(stack, wa, text):
    who = number()
    wa.say(who, text)
    assert "vide" in bodies(wa.wait_for(who, 1))


def test_fallback_suggestions_are_interactive_within_limits(stack, wa):
    who = number()
    wa.say(who, "zrgl bfft qwxx")
    [suggestions] = wa.wait_for(who, 1)
    assert suggestions["type"] == "interactive"
    interactive = suggestions["interactive"]
    if interactive["type"] == "button":
        ids = [b["reply"]["id"] for b in interactive["action"]["buttons"]]
        assert len(ids) <= 3
    else:
        rows = [r for s in interactive["action"]["sections"] for r in s["rows"]]
        ids = [r["id"] for r in rows]
        assert len(rows) <= 10 and all(len(r["title"]) <= 24 for r in rows)
    assert ids[-1] == "/human_handoff"
    # Tapping a suggestion sends its payload.
    wa.post(wa.envelope([sim.list_reply(who, ids[-1], "Parler à un agent")]))
    assert bodies(wa.wait_for(who, 2)[1:])


# ---------------------------------------------------------- agent messages


def test_agent_message_through_rasas_http_api(stack, wa):
    who = number()
    wa.say(who, "Bonjour")
    wa.wait_for(who, 1)
    answer = push_events(stack, who, [{"event": "bot", "text": "Bonjour, ici Julie, de l'accueil de la mairie."}])
    assert answer.status_code == 200, answer.text
    assert "ici Julie" in body_of(wa.wait_for(who, 2)[-1])


def test_long_answer_is_split_cleanly(stack, wa):
    who = number()
    wa.say(who, "Bonjour")
    wa.wait_for(who, 1)
    paragraph = "Voici une phrase d'explication assez longue sur la démarche à suivre. " * 40
    text = "\n\n".join([paragraph.strip()] * 4)
    assert push_events(stack, who, [{"event": "bot", "text": text}]).status_code == 200
    # Two paragraphs exceed 4096 characters: one message per paragraph, cut nowhere else.
    parts = wa.wait_for(who, 5)[1:]
    assert [body_of(p) for p in parts] == [paragraph.strip()] * 4


def test_closed_window_sends_nothing_and_records_why(stack, wa):
    who = number()
    # A message written 25 h ago (a late redelivery): answering is no longer allowed.
    wa.post(wa.envelope([sim.text_message(who, "Bonjour", timestamp=time.time() - 25 * 3600)]))
    [failure] = failures(stack, who)
    assert failure["reason"] == "window_closed" and "template" in failure["detail"]
    assert wa.messages_to(who) == [] and wa.requests_to(who) == []


def test_agent_message_outside_the_window_is_not_sent(stack, wa):
    who = number()
    old = time.time() - 30 * 3600
    events = [{"event": "user", "text": "Bonjour", "timestamp": old, "input_channel": "whatsapp",
               "parse_data": {"intent": {"name": "greet", "confidence": 1.0}, "entities": []}}]
    assert push_events(stack, who, events).status_code == 200
    assert push_events(stack, who, [{"event": "bot", "text": "Réponse tardive de l'agent."}]).status_code == 200
    [failure] = failures(stack, who)
    assert failure["reason"] == "window_closed" and wa.requests_to(who) == []


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_reengagement_error_131047_is_mapped_to_the_window(stack, wa, mode):
    who = number()
    wa.expire(who, mode)
    wa.post(wa.envelope([sim.button_reply(who, CNI, "CNI")]))
    [failure] = failures(stack, who)
    assert failure["reason"] == "window_closed" and failure["code"] == 131047
    assert [r.error_code for r in wa.requests_to(who)] == ([131047] if mode == "sync" else [None])
    assert wa.messages_to(who) == []


# ------------------------------------------------------------ Graph errors


@pytest.mark.parametrize(
    "fault",
    [
        Fault(status=500),
        Fault(status=429, code=130429),
        Fault(status=400, code=130429),
        Fault(status=400, code=131056),
        Fault(status=400, code=80007),
        Fault(delay=3),  # longer than the bot's 2 s timeout; the API then fails the request
    ],
    ids=["500", "429-130429", "400-130429", "131056", "80007", "timeout"],
)
def test_transient_errors_are_retried_and_delivered_once(stack, wa, fault):
    who = number()
    fault.to = who
    wa.inject(fault)
    wa.post(wa.envelope([sim.button_reply(who, CNI, "CNI")]))
    earlier = sentinel(wa, who)
    assert [CNI_MARK in body_of(m) for m in earlier] == [True]
    statuses = [r.status for r in wa.requests_to(who)]
    # One refused (or abandoned) attempt; the answer and the sentinel's accepted once each.
    assert any(s != 200 for s in statuses) and statuses.count(200) == 2


def test_invalid_token_is_not_retried_and_does_not_crash(stack, wa):
    who = number()
    wa.inject(Fault(status=401, code=190, to=who))
    wa.post(wa.envelope([sim.button_reply(who, CNI, "CNI")]))
    [failure] = failures(stack, who)
    assert failure["reason"] == "token_invalid" and failure["code"] == 190
    assert len(sentinel(wa, who)) == 0
    assert [r.error_code for r in wa.requests_to(who)][:1] == [190]
    assert [r.status for r in wa.requests_to(who)].count(401) == 1


def test_deliveries_endpoint_needs_the_token(stack):
    url = f"{stack.url}/webhooks/whatsapp/deliveries"
    assert requests.get(url, params={"recipient": "1"}, timeout=10).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=10).status_code == 401
