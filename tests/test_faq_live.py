"""An edited answer is what every action server process sends at the next message, without
retraining or restarting (two real action servers sharing a copy of the FAQ files)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests

from bot.settings import PROJECT_ROOT
from tests.conftest import free_port, wait_http
from tests.faq_support import FaqCopy, faq_copy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def faq(tmp_path_factory: pytest.TempPathFactory) -> FaqCopy:
    return faq_copy(tmp_path_factory.mktemp("faq-live"))


@pytest.fixture(scope="module")
def action_servers(faq: FaqCopy) -> Iterator[list[str]]:
    env = {**os.environ, "GUICHET_FAQ_DIR": str(faq.faq_dir), "GUICHET_CATALOG_FILE": str(faq.catalog),
           "GUICHET_DATABASE_URL": faq.url, "GUICHET_NOW": "2026-03-03T10:00"}
    processes, urls = [], []
    try:
        for n in range(2):
            port = free_port()
            log = (faq.root / f"actions-{n}.log").open("ab")
            process = subprocess.Popen([sys.executable, "-m", "rasa_sdk", "--actions", "actions", "--port", str(port)],
                                       cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            processes.append(process)
            wait_http(f"http://127.0.0.1:{port}/health", process)
            urls.append(f"http://127.0.0.1:{port}")
        yield urls
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=20)


def answer_from(url: str, topic: str) -> str:
    """What the action server answers to a citizen choosing `topic` (Rasa's webhook call)."""
    tracker = {
        "sender_id": "citizen", "slots": {}, "events": [], "paused": False, "followup_action": None,
        "active_loop": {}, "latest_action_name": "action_listen", "latest_event_time": time.time(),
        "latest_message": {"text": f'/faq{{"faq_topic":"{topic}"}}', "intent": {"name": "faq", "confidence": 1.0},
                           "entities": [{"entity": "faq_topic", "value": topic}], "intent_ranking": []},
    }
    response = requests.post(f"{url}/webhook", json={"next_action": "action_faq", "sender_id": "citizen",
                                                     "tracker": tracker, "domain": {}, "version": "3.6.21"}, timeout=30)
    assert response.status_code == 200, response.text
    return " ".join(r.get("text") or "" for r in response.json()["responses"])


def test_an_edited_answer_is_live_on_every_action_server_at_once(faq: FaqCopy, action_servers: list[str]):
    for url in action_servers:
        assert "jours fériés." in answer_from(url, "horaires_mairie")  # each process has read the files
    for n in range(3):
        topic = faq.editor.topic("horaires_mairie")
        new = topic.answer.replace("La mairie est fermée", f"(version {n}) La mairie est fermée")
        faq.editor.save_topic("horaires_mairie", "alice", topic.version, answer=new)
        for url in action_servers:
            # No wait, no retry: the next message after the save gets the new text.
            assert f"(version {n}) La mairie est fermée" in answer_from(url, "horaires_mairie")
    # A new topic is answered too as soon as it is saved (the model learns its questions
    # at the next publication; a quick-reply payload reaches it already).
    answer = "La commune prête des vélos cargo le samedi à {commune}.\nPlus d'infos : https://www.service-public.fr/"
    examples = [f"prêt vélo cargo question {i}" for i in range(15)]
    faq.editor.add_topic("alice", "pret_velo_cargo", "vie_locale", "Prêt de vélos cargo", answer, examples)
    for url in action_servers:
        assert "vélos cargo le samedi à Bellerive-sur-Ondine" in answer_from(url, "pret_velo_cargo")
