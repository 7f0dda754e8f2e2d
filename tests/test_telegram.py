"""The Telegram channel against the real stack and a local Telegram Bot API simulator.

The simulator (tests/simulators/telegram_api.py) is both the Bot API the connector calls
and the citizen's Telegram app posting Updates to the webhook the connector registered.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import requests

from bot.channels.telegram import EMPTY_REPLY, MEDIA_REPLY, STALE_BUTTON_REPLY
from bot.channels.telegram_updates import (
    BUTTON,
    IGNORED,
    MEDIA,
    TEXT,
    CallbackPayloads,
    NotAnUpdate,
    chat_id_of,
    inline_keyboard,
    parse_update,
    split_text,
    utf16_len,
)
from tests.conftest import free_port, wait_http
from tests.simulators.telegram_api import Fault, TelegramSimulator

PHONE = "02 54 00 00 00"
HANDOFF = "/human_handoff"


# ---------------------------------------------------------------- pure functions
def test_split_text_keeps_every_character_within_telegrams_limit():
    text = ("Paragraphe " + "🇫🇷 é " * 700 + "\n\n") * 4 + "fin"
    parts = split_text(text)
    assert len(parts) > 1 and all(0 < utf16_len(p) <= 4096 for p in parts)
    assert "".join(parts).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace("\n", "")
    assert split_text("  court  ") == ["court"] and split_text("   ") == []
    # no break at all: cut at the limit, never inside a surrogate pair
    emoji = "😀" * 3000
    assert [utf16_len(p) for p in split_text(emoji)] == [4096, 1904]


def test_long_payloads_travel_as_short_keys():
    payloads = CallbackPayloads()
    long_payload = '/faq{"faq_topic":"' + "x" * 80 + '"}'
    keyboard = inline_keyboard(
        [{"title": "Court", "payload": "/greet"}, {"title": "Long", "payload": long_payload}, {"title": ""}],
        payloads,
    )
    rows = keyboard["inline_keyboard"]
    assert [row[0]["text"] for row in rows] == ["Court", "Long"]
    assert rows[0][0]["callback_data"] == "/greet"
    key = rows[1][0]["callback_data"]
    assert len(key.encode()) <= 64 and payloads.decode(key) == long_payload
    assert CallbackPayloads().decode(key) is None  # another process: unknown key


def test_parse_update_kinds_and_refusals():
    payloads = CallbackPayloads()
    chat = {"id": 42, "type": "private"}
    assert parse_update({"update_id": 1, "message": {"chat": chat, "text": "/start"}}, payloads).text == "/greet"
    typed = parse_update({"update_id": 2, "message": {"chat": chat, "text": "/restart"}}, payloads)
    assert (typed.kind, typed.text, typed.sender_id) == (TEXT, "restart", "telegram-42")
    edited = parse_update({"update_id": 3, "edited_message": {"chat": chat, "text": "horaires"}}, payloads)
    assert edited.kind == TEXT and edited.metadata["telegram"]["edited"] is True
    assert parse_update({"update_id": 4, "message": {"chat": chat, "sticker": {}}}, payloads).kind == MEDIA
    photo = parse_update({"update_id": 5, "message": {"chat": chat, "photo": [], "caption": "mon trottoir"}}, payloads)
    assert photo.kind == TEXT and photo.text == "mon trottoir"
    group = parse_update({"update_id": 6, "message": {"chat": {"id": -5, "type": "group"}, "text": "x"}}, payloads)
    assert group.kind == IGNORED
    assert parse_update({"update_id": 7, "my_chat_member": {}}, payloads).kind == IGNORED
    button = {"update_id": 8, "callback_query": {"id": "9", "data": HANDOFF, "message": {"chat": chat}}}
    parsed = parse_update(button, payloads)
    assert (parsed.kind, parsed.text, parsed.callback_query_id) == (BUTTON, HANDOFF, "9")
    for bad in (None, [], {"update_id": "1"}, {"update_id": True}, {"update_id": 1, "message": {"chat": {}}}):
        with pytest.raises(NotAnUpdate):
            parse_update(bad, payloads)
    assert chat_id_of("telegram-42") == "42" and chat_id_of("42") == "42"


def test_unknown_button_key_falls_back_to_the_buttons_title():
    message = {
        "chat": {"id": 1, "type": "private"},
        "reply_markup": {"inline_keyboard": [[{"text": "Horaires de la mairie", "callback_data": "k:abc"}]]},
    }
    update = {"update_id": 1, "callback_query": {"id": "1", "data": "k:abc", "message": message}}
    assert parse_update(update, CallbackPayloads()).text == "Horaires de la mairie"


# ------------------------------------------------------------------ real stack
@pytest.fixture
def telegram(stack) -> TelegramSimulator:
    sim: TelegramSimulator = stack.telegram
    sim.wait_until(lambda: bool(sim.webhook["url"]), 60, lambda: "the connector never called setWebhook")
    sim.faults.clear()
    return sim


def texts(messages: list[dict]) -> str:
    return "\n".join(m["text"] for m in messages)


def buttons(message: dict) -> list[dict]:
    return [b for row in message.get("reply_markup", {}).get("inline_keyboard", []) for b in row]


@pytest.mark.slow
def test_webhook_is_registered_with_the_secret_and_update_types(stack, telegram):
    assert telegram.webhook["url"] == f"{stack.url}/webhooks/telegram/webhook"
    assert telegram.webhook["secret_token"] == stack.env["GUICHET_TELEGRAM_WEBHOOK_SECRET"]
    assert telegram.webhook["allowed_updates"] == ["message", "edited_message", "callback_query"]
    assert requests.get(f"{stack.url}/webhooks/telegram/", timeout=10).json() == {"status": "ok"}


@pytest.mark.slow
def test_text_in_answer_out_as_plain_text(telegram):
    chat = telegram.chat()
    telegram.say(chat, "/start")
    greeting = telegram.wait_for(chat, 1)[0]
    assert "assistant automatique" in greeting["text"]
    assert greeting["parse_mode"] is None
    assert [b["callback_data"] for b in buttons(greeting)] == [HANDOFF]
    telegram.say(chat, "c'est quoi les horaires de la mairie ?")
    answer = telegram.wait_for(chat, 2)[1]
    assert "8 h 30" in answer["text"] and "{" not in answer["text"]
    assert any(c.params.get("action") == "typing" for c in telegram.calls_of("sendChatAction"))


@pytest.mark.slow
def test_fallback_suggestions_are_inline_buttons_and_a_press_answers(telegram):
    chat = telegram.chat()
    telegram.say(chat, "zrgl bfft qwxx")
    suggestion = telegram.wait_for(chat, 1)[0]
    assert suggestion["text"].startswith("Je ne suis pas sûr")
    offered = buttons(suggestion)
    assert offered[-1] == {"text": "Parler à un agent", "callback_data": HANDOFF}
    assert all(b["callback_data"].startswith("/faq{") for b in offered[:-1])
    assert all(len(b["callback_data"].encode()) <= 64 for b in offered)

    update = telegram.press(chat, suggestion, "Parler à un agent")
    handoff = telegram.wait_for(chat, 2)[1]
    assert PHONE in handoff["text"]
    assert update["callback_query"]["id"] in telegram.answered_queries


@pytest.mark.slow
def test_a_suggested_topic_pressed_answers_it(telegram):
    chat = telegram.chat()
    telegram.say(chat, "carte")  # ambiguous: identity, electoral or registration card
    suggestion = telegram.wait_for(chat, 1)[0]
    topics = [b for b in buttons(suggestion) if b["callback_data"].startswith("/faq{")]
    if not topics:
        pytest.skip(f"the current model answers 'carte' without suggestions: {suggestion['text'][:60]}")
    update = telegram.press(chat, suggestion, topics[0]["text"])
    answer = telegram.wait_for(chat, 2)[1]
    assert not answer["text"].startswith("Je ne suis pas sûr") and "{" not in answer["text"]
    assert update["callback_query"]["id"] in telegram.answered_queries


@pytest.mark.slow
def test_a_topic_button_answers_that_topic(telegram):
    chat = telegram.chat()
    telegram.say(chat, "bonjour")
    greeting = telegram.wait_for(chat, 1)[0]
    # a keyboard like the one the bot sends with its suggestions
    greeting["reply_markup"] = {"inline_keyboard": [[
        {"text": "Collecte des ordures", "callback_data": '/faq{"faq_topic":"collecte_ordures"}'}
    ]]}
    telegram.press(chat, greeting, "Collecte des ordures")
    assert "mardi" in telegram.wait_for(chat, 2)[1]["text"]


@pytest.mark.slow
def test_a_stale_button_from_before_a_restart_asks_to_type(telegram):
    chat = telegram.chat()
    message = {"message_id": 1, "chat": telegram.chats[chat], "text": "…",
               "reply_markup": {"inline_keyboard": [[{"text": "  ", "callback_data": "k:" + "0" * 32}]]}}
    update = telegram.callback_update(chat, message, "k:" + "0" * 32)
    telegram.deliver(update)
    assert telegram.wait_for(chat, 1)[0]["text"] == STALE_BUTTON_REPLY
    assert update["callback_query"]["id"] in telegram.answered_queries


@pytest.mark.slow
def test_forged_or_missing_secret_is_refused(stack, telegram):
    chat = telegram.chat()
    update = telegram.message_update(chat, "horaires de la mairie")
    assert telegram.deliver(update, secret="not-the-secret").status_code == 403
    assert telegram.deliver(update, secret="").status_code == 403
    # nothing was processed nor remembered: the genuine delivery is answered
    assert telegram.deliver(update).json() == {"status": "accepted"}
    assert "8 h 30" in telegram.wait_for(chat, 1)[0]["text"]
    assert "update refused (missing or wrong X-Telegram-Bot-Api-Secret-Token header)" in stack.log("rasa")


@pytest.mark.slow
def test_a_redelivered_update_is_answered_once(telegram):
    chat = telegram.chat()
    update = telegram.message_update(chat, "horaires de la mairie")
    assert telegram.deliver(update).json() == {"status": "accepted"}
    assert telegram.deliver(update).json() == {"status": "duplicate"}
    telegram.say(chat, "/start")  # processed after the first one (per-chat order)
    telegram.wait_until(lambda: "assistant automatique" in texts(telegram.messages_to(chat)), 90)
    messages = telegram.messages_to(chat)
    assert "8 h 30" in messages[0]["text"]
    assert sum("8 h 30" in m["text"] for m in messages) == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    "text",
    [
        "x" * 4096,
        "🙂🙂 bonjour 👋🏽 👨‍👩‍👧",
        "<b>horaires</b> <script>alert('x')</script> <a href='javascript:alert(1)'>mairie</a>",
        "' OR 1=1; DROP TABLE events; --",
        "/faq{\"faq_topic\":\"../../etc/passwd\"}",
    ],
)
def test_odd_messages_get_a_plain_text_answer(telegram, text):
    chat = telegram.chat()
    telegram.say(chat, text)
    messages = telegram.wait_for(chat, 1)
    assert all(m["text"].strip() and m["parse_mode"] is None for m in messages)


@pytest.mark.slow
def test_empty_media_and_edited_messages(telegram):
    chat = telegram.chat()
    telegram.say(chat, " \u200b\u0000 ")
    assert telegram.wait_for(chat, 1)[0]["text"] == EMPTY_REPLY
    telegram.deliver(telegram.message_update(chat, None, sticker={"file_id": "x", "emoji": "👍"}))
    assert telegram.wait_for(chat, 2)[1]["text"] == MEDIA_REPLY
    telegram.deliver(telegram.message_update(chat, "horaires de la mairie", edited=True))
    assert "8 h 30" in telegram.wait_for(chat, 3)[2]["text"]


@pytest.mark.slow
def test_malformed_and_foreign_updates(telegram):
    assert telegram.deliver(None, raw=b"{not json").status_code == 400
    assert telegram.deliver({"message": {"text": "sans update_id"}}).status_code == 400
    assert telegram.deliver({"update_id": 1, "message": {"chat": {"id": "x"}, "text": "a"}}).status_code == 400
    group = telegram.message_update(telegram.chat(), "bonjour")
    group["message"]["chat"] = {"id": -1001, "type": "supergroup", "title": "Voisins"}
    assert telegram.deliver(group).json() == {"status": "ignored"}
    assert telegram.deliver({"update_id": 5, "my_chat_member": {}}).json() == {"status": "ignored"}


@pytest.mark.slow
def test_flood_control_429_is_retried_after_retry_after(telegram):
    chat = telegram.chat()
    telegram.inject(Fault(status=429, description="Too Many Requests: retry after 1", retry_after=1))
    telegram.say(chat, "horaires de la mairie")
    assert "8 h 30" in telegram.wait_for(chat, 1)[0]["text"]
    statuses = [c.status for c in telegram.calls_of("sendMessage") if c.params.get("chat_id") == str(chat)]
    assert statuses == [429, 200]


@pytest.mark.slow
def test_server_errors_are_retried_then_the_message_is_logged_as_lost(stack, telegram):
    chat = telegram.chat()
    telegram.inject(Fault(status=500, description="Internal Server Error", times=2))
    telegram.say(chat, "horaires de la mairie")
    assert "8 h 30" in telegram.wait_for(chat, 1)[0]["text"]

    lost = telegram.chat()
    telegram.inject(Fault(status=502, description="Bad Gateway", times=4))
    telegram.say(lost, "horaires de la mairie")
    telegram.wait_until(
        lambda: sum(c.params.get("chat_id") == str(lost) for c in telegram.calls_of("sendMessage")) == 4, 60
    )
    telegram.say(lost, "bonjour")  # the channel carries on
    assert "assistant automatique" in telegram.wait_for(lost, 1)[0]["text"]
    assert "lost after 4 attempts" in stack.log("rasa")


@pytest.mark.slow
def test_a_citizen_who_blocked_the_bot_is_logged_not_retried(stack, telegram):
    chat = telegram.chat()
    telegram.blocked.add(chat)
    telegram.say(chat, "bonjour")
    telegram.wait_until(lambda: "bot was blocked by the user" in stack.log("rasa").lower(), 60)
    assert [c.status for c in telegram.calls_of("sendMessage") if c.params.get("chat_id") == str(chat)] == [403]


@pytest.mark.slow
def test_agents_reach_telegram_through_rasas_http_api(stack, telegram):
    """`get_output_channel()`: what the console uses to deliver an agent's message."""
    chat = telegram.chat()
    telegram.say(chat, "bonjour")
    telegram.wait_for(chat, 1)
    response = requests.post(
        f"{stack.url}/conversations/telegram-{chat}/tracker/events",
        params={"token": stack.env["GUICHET_RASA_TOKEN"], "output_channel": "telegram",
                "execute_side_effects": "true"},
        json={"event": "bot", "text": "Bonjour, ici Sophie, de l'accueil de la mairie."},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert telegram.wait_for(chat, 2)[1]["text"] == "Bonjour, ici Sophie, de l'accueil de la mairie."


UNCONFIGURED_APP = textwrap.dedent(
    """
    import logging, sys
    logging.basicConfig(level=logging.INFO)
    from sanic import Sanic
    from bot.channels.telegram import GuichetTelegramInput

    async def on_new_message(message):
        raise AssertionError("must not be called")

    app = Sanic("unconfigured_telegram")
    app.blueprint(GuichetTelegramInput().blueprint(on_new_message), url_prefix="/webhooks/telegram")
    app.run(host="127.0.0.1", port=int(sys.argv[1]), access_log=False)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("missing", ["GUICHET_TELEGRAM_WEBHOOK_SECRET", "GUICHET_TELEGRAM_TOKEN"])
def test_an_unconfigured_channel_refuses_with_a_clear_log(tmp_path, missing):
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "GUICHET_TELEGRAM_TOKEN": "123:abc", "GUICHET_TELEGRAM_WEBHOOK_SECRET": "s3cret",
           "GUICHET_TELEGRAM_API_URL": "http://127.0.0.1:9", missing: ""}
    log = (tmp_path / "app.log").open("wb")
    process = subprocess.Popen([sys.executable, "-c", UNCONFIGURED_APP, str(port)], env=env, stdout=log,
                               stderr=subprocess.STDOUT, cwd=str(tmp_path.parent))
    try:
        wait_http(f"http://127.0.0.1:{port}/webhooks/telegram/", process, timeout=60)
        health = requests.get(f"http://127.0.0.1:{port}/webhooks/telegram/", timeout=10).json()
        assert health == {"status": "disabled"}
        update = {"update_id": 1, "message": {"chat": {"id": 1, "type": "private"}, "text": "bonjour"}}
        refused = requests.post(f"http://127.0.0.1:{port}/webhooks/telegram/webhook", data=json.dumps(update),
                                headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret"}, timeout=10)
        assert refused.status_code == 403
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert f"{missing} is not set" in (tmp_path / "app.log").read_text()
