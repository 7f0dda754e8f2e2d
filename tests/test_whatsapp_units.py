"""WhatsApp channel building blocks, without servers: parsing, formatting, window, simulator rules."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from bot.channels import whatsapp_format as fmt
from bot.channels.whatsapp_delivery import ServiceWindow, last_user_message_time
from bot.channels.whatsapp_webhook import NotWhatsApp, parse_webhook
from tests.simulators import whatsapp_cloud as sim

SIM = sim.WhatsAppCloudSimulator(app_secret="s3cret")
WA = "33612345678"


def test_parse_every_entry_change_and_message():
    first = SIM.envelope([sim.text_message(WA, "bonjour"), sim.button_reply(WA, '/faq{"faq_topic":"cni"}', "Carte d'identité")])
    second = SIM.envelope(
        [sim.list_reply("33700000000", "/human_handoff", "Parler à un agent"), sim.location_message(WA, 48.85, 2.35, "Mairie", "1 place de la Mairie")],
        statuses=[sim.status_item("wamid.x", WA, "read")],
        errors=[sim.status_error(131000)],
    )
    batch = parse_webhook(sim.WhatsAppCloudSimulator.batched(first, second))
    assert [(m.kind, m.text) for m in batch.messages] == [
        ("text", "bonjour"),
        ("payload", '/faq{"faq_topic":"cni"}'),
        ("payload", "/human_handoff"),
        ("location", ""),
    ]
    assert batch.messages[3].metadata["whatsapp"]["location"] == {
        "latitude": 48.85, "longitude": 2.35, "name": "Mairie", "address": "1 place de la Mairie"
    }
    assert batch.messages[0].metadata["whatsapp"]["profile_name"] == "Camille Martin"
    assert [s.status for s in batch.statuses] == ["read"] and batch.errors[0]["code"] == 131000


def test_parse_media_template_button_and_unknown():
    image = sim.media_message(WA, "image", "image/png")
    captioned = sim.media_message(WA, "document", "application/pdf", caption="mon justificatif")
    batch = parse_webhook(SIM.envelope([image, captioned, sim.template_button(WA, "/greet", "Bonjour"), sim.unknown_message(WA)]))
    kinds = [(m.kind, m.text) for m in batch.messages]
    assert kinds == [("media", ""), ("media", "mon justificatif"), ("payload", "/greet"), ("unknown", "")]
    media = batch.messages[0].metadata["whatsapp"]["media"]
    assert media["id"] == image["image"]["id"] and media["mime_type"] == "image/png"


@pytest.mark.parametrize("body", [None, [], {"object": "page", "entry": []}, "texte"])
def test_parse_refuses_other_payloads(body):
    with pytest.raises(NotWhatsApp):
        parse_webhook(body)


def test_parse_skips_malformed_parts_and_keeps_the_rest():
    good = sim.text_message(WA, "horaires ?")
    body = SIM.envelope([{"from": "not-a-number", "id": "wamid.1", "type": "text"}, "junk", good])
    body["entry"].append({"changes": "nope"})
    body["entry"].append({"id": "1", "changes": [{"field": "account_update", "value": {}}]})
    batch = parse_webhook(body)
    assert [m.wamid for m in batch.messages] == [good["id"]] and len(batch.skipped) == 3


def test_future_timestamps_do_not_keep_the_window_open():
    batch = parse_webhook(SIM.envelope([sim.text_message(WA, "x", timestamp=time.time() + 10 * 86400)]))
    assert batch.messages[0].timestamp <= time.time()


def test_split_text_cuts_cleanly_within_the_limit():
    paragraph = "Phrase numéro un. " * 150
    text = "\n\n".join([paragraph.strip()] * 4)
    pieces = fmt.split_text(text)
    assert len(pieces) > 1 and all(fmt.length(p) <= fmt.TEXT_LIMIT for p in pieces)
    assert all(p.endswith(".") for p in pieces)
    assert "".join(pieces).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace("\n", "")
    emoji = "🙂" * 5000
    assert all(fmt.length(p) <= fmt.TEXT_LIMIT for p in fmt.split_text(emoji)) and "".join(fmt.split_text(emoji)) == emoji


def test_three_short_buttons_become_reply_buttons():
    buttons = [{"title": "Parler à un agent", "payload": "/human_handoff"}]
    [message] = fmt.buttons_messages(WA, "Bonjour", buttons)
    sim.validate_message(message)
    assert message["interactive"]["type"] == "button"
    assert message["interactive"]["action"]["buttons"][0]["reply"] == {"id": "/human_handoff", "title": "Parler à un agent"}


def test_many_or_long_buttons_become_lists_within_limits():
    buttons = [{"title": f"Sujet numéro {i} avec un titre assez long", "payload": f'/faq{{"faq_topic":"t{i}"}}'} for i in range(13)]
    messages = fmt.buttons_messages(WA, "Vouliez-vous dire…", buttons)
    assert [m["interactive"]["type"] for m in messages] == ["list", "list"]
    for message in messages:
        sim.validate_message(message)
    rows = [r for m in messages for r in m["interactive"]["action"]["sections"][0]["rows"]]
    assert len(rows) == 13 and rows[0]["description"].startswith("Sujet numéro 0 avec")
    # Two short buttons with one long title: a list too, so that the title is readable.
    [single] = fmt.buttons_messages(WA, "x", [{"title": "Carte nationale d'identité", "payload": "/a"}, {"title": "Agent", "payload": "/b"}])
    assert single["interactive"]["type"] == "list"


def test_long_text_with_buttons_keeps_the_body_under_1024():
    messages = fmt.buttons_messages(WA, "mot " * 2000, [{"title": "Agent", "payload": "/human_handoff"}])
    for message in messages:
        sim.validate_message(message)
    assert messages[-1]["type"] == "interactive" and all(m["type"] == "text" for m in messages[:-1])


def test_url_buttons_are_written_in_the_text():
    [message] = fmt.buttons_messages(WA, "Le site :", [{"title": "Service public", "url": "https://www.service-public.fr"}])
    assert message["type"] == "text" and "https://www.service-public.fr" in message["text"]["body"]


def test_simulator_refuses_what_the_api_refuses():
    base = {"messaging_product": "whatsapp", "to": WA}
    with pytest.raises(sim.Invalid):
        sim.validate_message({**base, "type": "text", "text": {"body": "x" * 4097}})
    with pytest.raises(sim.Invalid):
        sim.validate_message({"to": WA, "type": "text", "text": {"body": "x"}})
    four = [{"type": "reply", "reply": {"id": str(i), "title": str(i)}} for i in range(4)]
    with pytest.raises(sim.Invalid):
        sim.validate_message({**base, "type": "interactive", "interactive": {"type": "button", "body": {"text": "x"}, "action": {"buttons": four}}})
    rows = [{"id": str(i), "title": "t" * 25} for i in range(2)]
    with pytest.raises(sim.Invalid):
        sim.validate_message({**base, "type": "interactive", "interactive": {"type": "list", "body": {"text": "x"}, "action": {"button": "b", "sections": [{"rows": rows}]}}})


def _tracker(*events):
    return SimpleNamespace(events=list(events))


def test_last_user_message_prefers_whatsapps_timestamp():
    user = SimpleNamespace(type_name="user", timestamp=2000.0, metadata={"whatsapp": {"timestamp": 1000.0}})
    bot = SimpleNamespace(type_name="bot", timestamp=3000.0, metadata={})
    assert last_user_message_time(_tracker(user, bot)) == 1000.0
    plain = SimpleNamespace(type_name="user", timestamp=2500.0, metadata={})
    assert last_user_message_time(_tracker(user, plain, bot)) == 2500.0
    assert last_user_message_time(_tracker(bot)) is None and last_user_message_time(None) is None


async def test_window_uses_the_cache_then_the_store():
    stored: dict[str, float] = {"old": time.time() - 25 * 3600, "store": time.time() - 3600}

    async def lookup(wa_id):
        return stored.get(wa_id)

    window = ServiceWindow(lookup)
    window.note("fresh", time.time())
    assert (await window.is_open("fresh"))[0]
    assert (await window.is_open("store"))[0]
    assert not (await window.is_open("old"))[0]
    assert not (await window.is_open("never"))[0]
    # A "closed" cache entry is checked again against the store.
    window.note("moved", time.time() - 30 * 3600)
    stored["moved"] = time.time() - 60
    assert (await window.is_open("moved"))[0]


def _unconfigured_routes():
    import dataclasses

    from bot.channels.whatsapp import WhatsAppInput
    from bot.settings import get_settings

    empty = dataclasses.replace(
        get_settings(), whatsapp_app_secret="", whatsapp_verify_token="",
        whatsapp_access_token="", whatsapp_phone_number_id="", rasa_token="",
    )
    channel = WhatsAppInput(empty)
    routes = {(r.uri, next(iter(r.methods))): r.handler for r in channel.blueprint(None)._future_routes}
    return channel, routes


async def test_unconfigured_channel_refuses_everything_without_crashing(caplog):
    channel, routes = _unconfigured_routes()
    body = b'{"object":"whatsapp_business_account","entry":[]}'
    request = SimpleNamespace(
        body=body, headers={"X-Hub-Signature-256": sim.sign("", body)}, app=SimpleNamespace(ctx=SimpleNamespace()),
        args={"hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": ""},
    )
    assert (await routes[("/webhook", "POST")](request)).status == 403
    assert (await routes[("/webhook", "GET")](request)).status == 403
    assert (await routes[("/deliveries", "GET")](request)).status == 401
    assert "GUICHET_WHATSAPP_APP_SECRET is not set" in caplog.text
    assert channel.get_output_channel() is None


def test_what_rasa_reads_typed_slashes_and_unknown_payloads():
    channel, _ = _unconfigured_routes()
    domain = SimpleNamespace(intents=["faq", "greet", "human_handoff"])
    channel._app = SimpleNamespace(ctx=SimpleNamespace(agent=SimpleNamespace(domain=domain)))

    def read(item):
        return channel._rasa_text(parse_webhook(SIM.envelope([item])).messages[0])

    assert read(sim.button_reply(WA, '/faq{"faq_topic":"cni"}', "CNI")) == '/faq{"faq_topic":"cni"}'
    assert read(sim.list_reply(WA, "/human_handoff", "Parler à un agent")) == "/human_handoff"
    # A stale or forged payload: the title the citizen saw is read as text.
    assert read(sim.button_reply(WA, "/restart_everything", "Recommencer")) == "Recommencer"
    # Typed text is text, even with a slash.
    assert read(sim.text_message(WA, " /human_handoff")) == "human_handoff"
    assert read(sim.text_message(WA, "a/b")) == "a/b"
