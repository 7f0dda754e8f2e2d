"""Helpers of the alerts, crisis, rumours and consultations tests: the broadcast worker
process, citizens' past messages written through Rasa's HTTP API, database reads."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

from bot.settings import PROJECT_ROOT

TEMPLATE = ("alerte_mairie", "fr")


def rasa_api(stack: Any, method: str, path: str, **kwargs: Any) -> requests.Response:
    params = {"token": stack.env["GUICHET_RASA_TOKEN"], **kwargs.pop("params", {})}
    return requests.request(method, f"{stack.url}{path}", params=params, timeout=60, **kwargs)


def past_message(stack: Any, conversation: str, channel: str, at: float, text: str = "bonjour") -> None:
    """A citizen's message written `at` (Unix time) into Rasa's tracker, as the channel
    records it (the platform's timestamp in the metadata: ms for Meta, s for WhatsApp)."""
    stamp = int(at) if channel == "whatsapp" else int(at * 1000)
    event = {"event": "user", "text": text, "timestamp": at, "input_channel": channel,
             "metadata": {channel: {"timestamp": stamp}},
             "parse_data": {"intent": {"name": "greet", "confidence": 1.0}, "entities": [], "text": text}}
    answer = rasa_api(stack, "POST", f"/conversations/{conversation}/tracker/events", json=event,
                      params={"include_events": "NONE"})
    assert answer.status_code == 200, answer.text


def past_messages(stack: Any, items: list[tuple[str, str, float]], threads: int = 6) -> None:
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda item: past_message(stack, *item), items))


@dataclass
class WorkerProcess:
    """`python -m bot.broadcast worker` on the stack's database and simulators."""

    env: dict[str, str]
    log_path: Any
    process: subprocess.Popen | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def start(self, until_idle: bool = False, **extra: str) -> WorkerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open by the child
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot.broadcast", "worker", *(["--until-idle"] if until_idle else [])],
            cwd=PROJECT_ROOT,
            env={**self.env, **self.extra, **extra}, stdout=log, stderr=subprocess.STDOUT)
        return self

    def kill(self) -> None:
        """A crash: no cleanup, no chance to finish what is under way."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def log(self) -> str:
        return open(self.log_path, encoding="utf-8", errors="replace").read()


def wait_until(condition: Any, timeout: float = 120, interval: float = 0.2, message: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(message or f"condition not met within {timeout:.0f} s")


def report(console: Any, client: requests.Session, broadcast_id: int) -> dict[str, Any]:
    answer = client.get(f"{console.url}/broadcasts/{broadcast_id}", headers={"Accept": "application/json"},
                        timeout=30)
    assert answer.status_code == 200, answer.text[:500]
    return answer.json()["report"]


def wa_texts(messages: list[dict[str, Any]]) -> list[str]:
    out = []
    for message in messages:
        kind = message.get("type")
        if kind == "text":
            out.append(message["text"]["body"])
        elif kind == "interactive":
            out.append(message["interactive"]["body"]["text"])
        elif kind == "template":
            out.append(json.dumps(message["template"], ensure_ascii=False))
    return out
