"""The message processor that parses off the event loop (bot/processor.py), on the real model."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import rasa.core.agent
from rasa.core.agent import Agent
from rasa.core.channels.channel import UserMessage

from bot import processor
from tests.services import loop_ticks_during

MESSAGES = [
    "c'est quoi les horaires de la mairie ?", "comment refaire ma carte d'identité",
    "quand passe le camion poubelle", "je veux parler à quelqu'un", "🙂🙂", "<script>alert(1)</script>",
]


@pytest.fixture()
def offloop_agent(model_path: Path, monkeypatch: pytest.MonkeyPatch) -> Agent:
    # Restored after the test: other tests load Rasa's own processor.
    monkeypatch.setattr(rasa.core.agent, "MessageProcessor", rasa.core.agent.MessageProcessor)
    processor.install()
    return Agent.load(str(model_path))


def test_install_makes_every_loaded_model_use_it(offloop_agent: Agent, model_path: Path) -> None:
    assert isinstance(offloop_agent.processor, processor.OffLoopMessageProcessor)
    offloop_agent.load_model(str(model_path))  # what `PUT /model` does when staff publish
    assert isinstance(offloop_agent.processor, processor.OffLoopMessageProcessor)


async def test_parses_like_rasa_in_a_worker_thread(offloop_agent: Agent, nlu_agent: Agent,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert type(nlu_agent.processor) is not processor.OffLoopMessageProcessor
    threads: list[str] = []
    parse = offloop_agent.processor._parse_message_with_graph

    def recording(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return parse(*args, **kwargs)

    monkeypatch.setattr(offloop_agent.processor, "_parse_message_with_graph", recording)
    for text in MESSAGES:
        ours = await offloop_agent.processor.parse_message(UserMessage(text))
        rasas = await nlu_agent.processor.parse_message(UserMessage(text))
        assert ours["intent"]["name"] == rasas["intent"]["name"]
        assert ours["intent"]["confidence"] == pytest.approx(rasas["intent"]["confidence"], abs=1e-6)
        assert ours["intent"].get("full_retrieval_intent_name") == rasas["intent"].get("full_retrieval_intent_name")
    assert len(threads) == len(MESSAGES)
    assert all(name.startswith("guichet-nlu") for name in threads)


async def test_the_event_loop_runs_while_a_message_is_parsed(offloop_agent: Agent,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    parse = offloop_agent.processor._parse_message_with_graph

    def slow(*args, **kwargs):  # a long message on a busy machine
        time.sleep(0.5)
        return parse(*args, **kwargs)

    monkeypatch.setattr(offloop_agent.processor, "_parse_message_with_graph", slow)
    parsed, ticks = await loop_ticks_during(offloop_agent.processor.parse_message(UserMessage("horaires de la mairie")))
    assert parsed["intent"]["name"]
    assert ticks >= 10  # the loop kept serving (a webhook's 200, a health check) meanwhile


def test_thread_count_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(processor.THREADS_VARIABLE, "3")
    assert processor.nlu_threads() == 3
    monkeypatch.setenv(processor.THREADS_VARIABLE, "0")
    assert processor.nlu_threads() == 1
    monkeypatch.setenv(processor.THREADS_VARIABLE, "beaucoup")
    assert processor.nlu_threads() == processor.DEFAULT_THREADS


def test_action_answers_are_checked_against_rasas_schema_with_a_prepared_validator(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from jsonschema import ValidationError
    from rasa.core.actions.action import RemoteAction

    monkeypatch.setattr(RemoteAction, "_validate_action_result", RemoteAction._validate_action_result)
    monkeypatch.setattr(rasa.core.agent, "MessageProcessor", rasa.core.agent.MessageProcessor)
    processor.install()
    action = RemoteAction("action_guichet_faq", None)
    good = {"events": [{"event": "slot", "name": "topic", "value": "cni"}],
            "responses": [{"text": "Bonjour 🙂 <b>"}]}
    assert action._validate_action_result(good) is True
    for bad in ({"events": [{"event": "slot"}]}, {"events": "slot"}, {"responses": [1]}):
        with pytest.raises(ValidationError, match="Failed to validate Action server response"):
            action._validate_action_result(bad)
    assert processor.action_result_validator() is processor.action_result_validator()  # built once
