"""The Graph API client against the local Graph API simulator (no Rasa needed)."""

from __future__ import annotations

import logging

import pytest

from bot.channels.graph_client import GraphApiError, GraphClient, is_retryable
from bot.channels.messenger_setup import apply, build_profile, show
from bot.settings import get_settings
from tests.simulators.graph_api import Fault, GraphApiSimulator, new_psid, now_ms


@pytest.fixture(scope="module")
def sim():
    simulator = GraphApiSimulator().start()
    yield simulator
    simulator.stop()


@pytest.fixture
def psid(sim: GraphApiSimulator) -> str:
    user = new_psid()
    sim.note_user_message("messenger", user, now_ms())
    return user


def client(sim: GraphApiSimulator, **kwargs) -> GraphClient:
    options = {"timeout": 1.0, "max_attempts": 4, "backoff_base": 0.01, **kwargs}
    return GraphClient(sim.access_token, base_url=sim.url, version="v26.0", **options)


def text_body(psid: str, text: str = "Bonjour", messaging_type: str = "RESPONSE") -> dict:
    return {"recipient": {"id": psid}, "messaging_type": messaging_type, "message": {"text": text}}


@pytest.mark.parametrize(
    ("status", "code", "subcode", "retryable"),
    [
        (500, None, None, True), (429, None, None, True), (400, 1200, None, True), (400, 2, None, True),
        (400, 4, None, True), (400, 17, None, True), (400, 613, None, True), (400, 80006, None, True),
        (400, 1, None, True), (400, 1, 99, False), (400, 10, 2018278, False), (400, 190, None, False),
        (400, 200, None, False), (400, 299, None, False), (400, 230, None, False), (400, 551, None, False),
        (400, 100, None, False), (400, 368, None, False), (500, 190, None, False),
    ],
)
def test_retry_policy_follows_metas_error_codes(status, code, subcode, retryable):
    assert is_retryable(status, code, subcode) is retryable


async def test_a_message_is_sent_with_the_configured_version(sim, psid):
    graph = client(sim)
    try:
        answer = await graph.post("me/messages", text_body(psid))
    finally:
        await graph.close()
    assert answer["recipient_id"] == psid and answer["message_id"]
    assert [s.text for s in sim.sent_to(psid)] == ["Bonjour"]
    assert sim.calls_to(psid)[0].version == "v26.0"


@pytest.mark.parametrize("kind", ["server_error", "rate_limit", "temporary"])
async def test_transient_errors_are_retried_and_delivered_once(sim, psid, kind):
    sim.inject(Fault(kind, count=2, recipient=psid))
    graph = client(sim)
    try:
        await graph.post("me/messages", text_body(psid))
    finally:
        await graph.close()
    assert len(sim.sent_to(psid)) == 1
    assert [c.fault for c in sim.calls_to(psid)] == [kind, kind, None]


async def test_a_timeout_is_retried_without_duplicate(sim, psid):
    sim.inject(Fault("timeout", recipient=psid, delay=5))
    graph = client(sim, timeout=0.5)
    try:
        await graph.post("me/messages", text_body(psid))
    finally:
        await graph.close()
    assert len(sim.sent_to(psid)) == 1


async def test_an_invalid_token_is_not_retried_and_is_typed(sim, psid, caplog):
    caplog.set_level(logging.ERROR)
    sim.inject(Fault("invalid_token", count=5, recipient=psid))
    graph = client(sim)
    try:
        with pytest.raises(GraphApiError) as raised:
            await graph.post("me/messages", text_body(psid))
    finally:
        await graph.close()
        sim.clear_faults()
    error = raised.value
    assert (error.code, error.retryable, error.is_invalid_token) == (190, False, True)
    assert error.fbtrace_id and "Invalid OAuth access token" in error.message
    assert len(sim.calls_to(psid)) == 1 and not sim.sent_to(psid)
    assert "code=190" in caplog.text


async def test_retries_stop_after_max_attempts(sim, psid):
    sim.inject(Fault("server_error", count=10, recipient=psid))
    graph = client(sim, max_attempts=3)
    try:
        with pytest.raises(GraphApiError) as raised:
            await graph.post("me/messages", text_body(psid))
    finally:
        await graph.close()
        sim.clear_faults()
    assert raised.value.status == 500 and raised.value.retryable
    assert len(sim.calls_to(psid)) == 3 and not sim.sent_to(psid)


async def test_a_wrong_token_gets_190(sim, psid):
    graph = GraphClient("EAAwrong", base_url=sim.url, max_attempts=1)
    try:
        with pytest.raises(GraphApiError) as raised:
            await graph.post("me/messages", text_body(psid))
    finally:
        await graph.close()
    assert raised.value.code == 190


async def test_the_simulator_validates_like_meta(sim, psid):
    graph = client(sim, max_attempts=1)
    cases = [
        ({"recipient": {"id": psid}, "message": {"text": "x"}}, 100),  # messaging_type missing
        (text_body(psid, "x" * 2000), 100),
        ({**text_body(psid), "message": {"text": "x", "quick_replies": [
            {"content_type": "text", "title": str(i), "payload": "P"} for i in range(14)]}}, 100),
        ({**text_body(psid), "message": {"text": "x", "quick_replies": [
            {"content_type": "text", "title": "a" * 21, "payload": "P"}]}}, 100),
        ({**text_body(psid), "message": {"attachment": {"type": "template", "payload": {
            "template_type": "button", "text": "x", "buttons": []}}}}, 100),
        (text_body(new_psid()), 100),  # nobody wrote from that id
        ({**text_body(psid), "messaging_type": "MESSAGE_TAG", "tag": "ACCOUNT_UPDATE"}, 100),
        ({"recipient": {"id": psid}, "sender_action": "typing_on", "messaging_type": "RESPONSE",
          "message": {"text": "x"}}, 100),
    ]
    try:
        for body, code in cases:
            with pytest.raises(GraphApiError) as raised:
                await graph.post("me/messages", body)
            assert raised.value.code == code, body
    finally:
        await graph.close()
    assert not sim.sent_to(psid)


async def test_the_windows_of_the_simulator(sim):
    graph = client(sim, max_attempts=1)
    late, gone = new_psid(), new_psid()
    sim.note_user_message("messenger", late, now_ms() - 25 * 3600 * 1000)
    sim.note_user_message("messenger", gone, now_ms() - 8 * 24 * 3600 * 1000)
    try:
        with pytest.raises(GraphApiError) as raised:
            await graph.post("me/messages", text_body(late))
        assert (raised.value.code, raised.value.subcode, raised.value.is_window_closed) == (10, 2018278, True)
        await graph.post("me/messages", {**text_body(late), "messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"})
        with pytest.raises(GraphApiError):
            await graph.post("me/messages", {**text_body(gone), "messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"})
    finally:
        await graph.close()
    assert [(s.messaging_type, s.tag) for s in sim.sent_to(late)] == [("MESSAGE_TAG", "HUMAN_AGENT")]


async def test_messenger_setup_configures_the_page(sim, monkeypatch):
    monkeypatch.setenv("GUICHET_MESSENGER_PAGE_TOKEN", sim.access_token)
    monkeypatch.setenv("GUICHET_GRAPH_API_URL", sim.url)
    sim.reset()
    profile = build_profile()
    assert await apply(profile, get_settings()) == {"result": "success"}
    current = await show(get_settings())
    fields = {key for item in current["data"] for key in item}
    assert fields == {"get_started", "greeting", "persistent_menu"}
    menu = sim.profile["persistent_menu"][0]["call_to_actions"]
    assert menu[-1] == {"type": "postback", "title": "Parler à un agent", "payload": "/human_handoff"}
    assert any(a["payload"] == '/faq{"faq_theme":"etat_civil"}' for a in menu if a["type"] == "postback")
    greeting = sim.profile["greeting"][0]["text"]
    assert "assistant automatique" in greeting and "agent" in greeting and len(greeting) <= 160
    assert sim.profile["get_started"] == {"payload": "GET_STARTED"}


async def test_the_profile_api_refuses_a_menu_without_get_started(sim):
    sim.reset()
    graph = client(sim, max_attempts=1)
    profile = build_profile()
    del profile["get_started"]
    try:
        with pytest.raises(GraphApiError) as raised:
            await graph.post("me/messenger_profile", profile)
    finally:
        await graph.close()
    assert raised.value.code == 100


def test_backoff_grows_and_is_jittered():
    graph = GraphClient("t", backoff_base=0.5, backoff_max=8)
    delays = [graph.backoff(n) for n in range(1, 7)]
    assert 0.25 <= delays[0] <= 0.5 and delays[-1] <= 8
    assert max(graph.backoff(5) for _ in range(20)) > min(graph.backoff(5) for _ in range(20))
    assert graph.backoff(1, retry_after=3) >= 3
