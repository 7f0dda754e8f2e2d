"""Shared fixtures: the trained model and a real running stack (Rasa + action server)."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from bot.settings import PROJECT_ROOT
from tests import model_training


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[:5]} exited with {process.returncode}")
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer in {timeout} s")


def needs_model(item: pytest.Item) -> bool:
    return "model_path" in getattr(item, "fixturenames", ())


@pytest.hookimpl(trylast=True)  # after `-k` / `-m` deselected what will not run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that need no model first (in their usual order), while the model trains in
    the background at low priority (tests/model_training.py); then those that need it."""
    if config.option.collectonly:
        return
    later = [item for item in items if needs_model(item)]
    if later:
        items[:] = [item for item in items if not needs_model(item)] + later
        model_training.start()


def pytest_sessionfinish() -> None:
    model_training.stop()


@pytest.fixture(scope="session")
def model_path() -> Path:
    return model_training.wait()


@pytest.fixture(scope="session")
def nlu_agent(model_path: Path):
    from rasa.core.agent import Agent

    return Agent.load(str(model_path))


@dataclass
class Stack:
    """A Rasa server and an action server on free ports, with their own files."""

    workdir: Path
    model: Path
    env: dict[str, str]
    rasa_port: int = field(default_factory=free_port)
    action_port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    # The local WhatsApp Cloud API (tests/simulators/whatsapp_cloud.py).
    whatsapp: object = None
    # The local Telegram Bot API (tests/simulators/telegram_api.py).
    telegram: object = None
    # The local Graph API for Messenger and Instagram (tests/simulators/graph_api.py).
    graph: object = None

    @property
    def commune_file(self) -> Path:
        return Path(self.env["GUICHET_COMMUNE_FILE"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.rasa_port}"

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen:
        log = (self.workdir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        self.processes[name] = process
        return process

    def start_actions(self) -> None:
        process = self._spawn(
            "actions",
            [sys.executable, "-m", "rasa_sdk", "--actions", "actions", "--port", str(self.action_port)],
        )
        wait_http(f"http://127.0.0.1:{self.action_port}/health", process)

    def stop(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()

    def start_rasa(self) -> None:
        endpoints = self.workdir / "endpoints.yml"
        endpoints.write_text(
            f'action_endpoint:\n  url: "http://127.0.0.1:{self.action_port}/webhook"\n'
            f"tracker_store:\n  type: bot.tracker_store.ResilientSQLTrackerStore\n  dialect: sqlite\n  db: {self.workdir / 'tracker.db'}\n"
        )
        process = self._spawn(
            "rasa",
            [
                sys.executable, "-m", "bot.rasa_server", "run", "--model", str(self.model),
                "--endpoints", str(endpoints), "--credentials", "credentials.yml",
                "--interface", "127.0.0.1", "--port", str(self.rasa_port),
                "--enable-api", f"--auth-token={self.env['GUICHET_RASA_TOKEN']}",  # token may start with "-"
            ],
        )
        wait_http(self.url, process)

    def say(self, sender: str, text: str, token: str | None = None) -> list[dict]:
        response = self.post(sender, text, token)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, sender: str, text: object, token: str | None = None) -> requests.Response:
        return requests.post(
            f"{self.url}/webhooks/api/webhook",
            json={"sender": sender, "message": text},
            headers={"Authorization": f"Bearer {token or self.env['GUICHET_API_TOKEN']}"},
            timeout=60,
        )

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, model_path: Path) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("stack")
    commune = workdir / "commune.yml"
    shutil.copy(PROJECT_ROOT / "commune.yml", commune)
    env = {
        **os.environ,
        "GUICHET_COMMUNE_FILE": str(commune),
        "GUICHET_API_TOKEN": secrets.token_urlsafe(16),
        "GUICHET_RASA_TOKEN": secrets.token_urlsafe(16),
        "GUICHET_MODEL_CACHE": "",
        # The handoff's tables live in the tracker store's file (bot/db), as in production;
        # opening-hours decisions use a fixed Tuesday morning (bot/handoff/clock.py).
        "GUICHET_DATABASE_URL": f"sqlite:///{workdir / 'tracker.db'}",
        "GUICHET_NOW": "2026-03-03T10:00",
    }
    from tests.simulators.whatsapp_cloud import WhatsAppCloudSimulator

    whatsapp = WhatsAppCloudSimulator(app_secret=secrets.token_urlsafe(16)).start()
    env.update(whatsapp.bot_env())
    stack = Stack(workdir=workdir, model=model_path, env=env, whatsapp=whatsapp)
    env["GUICHET_PUBLIC_URL"] = stack.url  # "mes données" links
    from tests.simulators.telegram_api import TelegramSimulator

    stack.telegram = telegram = TelegramSimulator().start()
    env.update(telegram.env(f"{stack.url}/webhooks/telegram/webhook", secrets.token_urlsafe(24)))
    from tests.simulators.graph_api import GraphApiSimulator

    stack.graph = graph = GraphApiSimulator(bot_url=stack.url).start()
    env.update(graph.bot_env())
    try:
        stack.start_actions()
        stack.start_rasa()
        whatsapp.webhook_url = f"{stack.url}/webhooks/whatsapp/webhook"
        yield stack
    finally:
        for name in list(stack.processes):
            stack.stop(name)
        whatsapp.stop()
        telegram.stop()
        graph.stop()


@pytest.fixture(scope="session")
def console(stack: Stack) -> Iterator:
    """The agents' console (bot/console) on the stack's database and Rasa server."""
    from tests.handoff_support import Console

    console = Console(stack)
    console.start()
    try:
        yield console
    finally:
        console.everyone_offline()
        console.stop()
