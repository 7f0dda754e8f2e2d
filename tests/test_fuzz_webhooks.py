"""Fuzzed webhooks (hypothesis): valid Messenger, WhatsApp and Telegram payloads with
random parts replaced by arbitrary JSON (wrong types, emoji, huge strings, nesting).

In process, the parsers either read them or refuse them with their documented error,
never anything else. Against the running stack, correctly signed fuzzed bodies get a
200 or a 4xx, never a 500; no event processing fails in the background; and the channels
answer a normal message afterwards.
"""

from __future__ import annotations

import json
import time

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.channels.meta_events import Batch as MetaBatch
from bot.channels.meta_events import NotAWebhook
from bot.channels.meta_events import parse_webhook as parse_meta
from bot.channels.telegram_updates import CallbackPayloads, NotAnUpdate, parse_update
from bot.channels.whatsapp_webhook import NotWhatsApp
from bot.channels.whatsapp_webhook import parse_webhook as parse_whatsapp
from tests.fuzzing import fuzzed_bodies, meta_template, mutate, telegram_template, whatsapp_template
from tests.simulators import whatsapp_cloud

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.data())
def test_the_meta_parser_reads_or_refuses_any_body(data):
    body = mutate(data, meta_template())
    try:
        assert isinstance(parse_meta(body, "page", 1_700_000_000_000), MetaBatch)
    except NotAWebhook:
        pass


@FUZZ
@given(st.data())
def test_the_whatsapp_parser_reads_or_refuses_any_body(data):
    try:
        parse_whatsapp(mutate(data, whatsapp_template()))
    except NotWhatsApp:
        pass


@FUZZ
@given(st.data())
def test_the_telegram_parser_reads_or_refuses_any_update(data):
    try:
        parse_update(mutate(data, telegram_template()), CallbackPayloads())
    except NotAnUpdate:
        pass


@pytest.mark.slow
def test_signed_fuzzed_webhooks_never_get_a_500_and_the_channels_keep_answering(stack):
    graph, wa, telegram = stack.graph, stack.whatsapp, stack.telegram
    telegram.wait_until(lambda: bool(telegram.webhook["url"]), 60, lambda: "no setWebhook")
    statuses: list[tuple[str, int]] = []
    # Raw bytes, signed by the simulators: Python's JSON writes Infinity and NaN as Meta never would.
    for body in fuzzed_bodies(meta_template(), 25):
        statuses.append(("messenger", graph.deliver(None, raw=json.dumps(body).encode(), platform="messenger")
                         .status_code))
    for body in fuzzed_bodies(whatsapp_template(), 25):
        statuses.append(("whatsapp", wa.post(None, raw=json.dumps(body).encode()).status_code))
    for body in fuzzed_bodies(telegram_template(), 25):
        statuses.append(("telegram", telegram.deliver(None, raw=json.dumps(body).encode()).status_code))
    assert all(code in (200, 400, 413) for _, code in statuses), [s for s in statuses if s[1] not in (200, 400, 413)]
    assert any(code == 200 for _, code in statuses) and any(code == 400 for _, code in statuses)

    time.sleep(3)  # accepted events are processed in the background
    log = stack.log("rasa")
    assert "Processing an event of sender" not in log and "Exception occurred while handling uri" not in log
    # Every channel still answers.
    citizen = graph.citizen("messenger")
    before = len(citizen.sent())
    citizen.say("horaires de la mairie")
    graph.wait_for(lambda: len(citizen.sent()) > before)
    wa_id = "336" + str(int(time.time() * 1000))[-8:]
    assert wa.post(wa.envelope(messages=[whatsapp_cloud.text_message(wa_id, "horaires de la mairie")])).status_code == 200
    wa.wait_for(wa_id)
    assert requests.get(f"{stack.url}/", timeout=10).status_code == 200
