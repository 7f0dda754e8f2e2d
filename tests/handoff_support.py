"""Helpers for the handoff and console tests: databases on both backends, the console
process, logged-in HTTP clients, and Debian's chromium through Playwright."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from bot.settings import PROJECT_ROOT

PG_HOST = "127.0.0.1"
PG_DATABASE = "test"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]
PASSWORD = "un-mot-de-passe-solide"


def _pg_connect(user: str):  # noqa: ANN202
    import psycopg2

    return psycopg2.connect(host=PG_HOST, dbname=PG_DATABASE, user=user, connect_timeout=3)


def pg_user() -> str | None:
    for user in ("postgres", "root"):
        try:
            _pg_connect(user).close()
            return user
        except Exception:  # noqa: BLE001 - try the next user
            continue
    return None


@contextmanager
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a PostgreSQL schema of its own."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'guichet.db'}"
        return
    user = pg_user()
    if user is None:
        pytest.skip(f"no PostgreSQL at {PG_HOST}:5432 (database {PG_DATABASE})")
    schema = "t_" + secrets.token_hex(6)
    connection = _pg_connect(user)
    connection.autocommit = True
    connection.cursor().execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"postgresql://{user}@{PG_HOST}:5432/{PG_DATABASE}?options=-csearch_path%3D{schema}"
    finally:
        from bot.db.engine import get_engine, sessionmaker_for

        get_engine.cache_clear()
        sessionmaker_for.cache_clear()
        connection.cursor().execute(f"DROP SCHEMA {schema} CASCADE")
        connection.close()


def wait_until(condition: Any, timeout: float = 30, interval: float = 0.1, message: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(message or f"condition not met within {timeout:.0f} s")


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


@dataclass
class Console:
    """The console process (`python -m bot.console`) on the stack's database and Rasa."""

    stack: Any
    port: int = 0
    process: subprocess.Popen | None = None
    agents: dict[str, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        return self.stack.env["GUICHET_DATABASE_URL"]

    @property
    def env(self) -> dict[str, str]:
        return {**self.stack.env, "GUICHET_CONSOLE_PORT": str(self.port), "GUICHET_RASA_URL": self.stack.url}

    def start(self) -> None:
        from tests.conftest import free_port, wait_http

        self.port = self.port or free_port()
        log = (self.stack.workdir / "console.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot.console"], cwd=PROJECT_ROOT, env=self.env, stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_http(f"{self.url}/healthz", self.process, timeout=60)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return (self.stack.workdir / "console.log").read_text(errors="replace")

    def create_agent(self, username: str, role: str = "agent", name: str | None = None) -> int:
        from bot.console.accounts import Accounts
        from bot.db.migrate import upgrade

        upgrade(self.database_url)
        if username not in self.agents:
            self.agents[username] = Accounts(self.database_url).create(username, name or username.title(), PASSWORD, role)
        return self.agents[username]

    def everyone_offline(self) -> None:
        from sqlalchemy import update

        from bot.db import Agent, session_scope

        with session_scope(self.database_url) as s:
            s.execute(update(Agent).values(presence="offline"))

    def client(self, username: str, role: str = "agent") -> requests.Session:
        """A logged-in HTTP client (with its CSRF token in `client.csrf`)."""
        self.create_agent(username, role)
        session = requests.Session()
        page = session.get(f"{self.url}/login", timeout=10)
        response = session.post(
            f"{self.url}/login", data={"csrf_token": csrf_of(page.text), "username": username, "password": PASSWORD},
            allow_redirects=False, timeout=10,
        )
        assert response.status_code == 303, response.text[:500]
        session.csrf = csrf_of(session.get(f"{self.url}/", timeout=10).text)  # type: ignore[attr-defined]
        return session

    def post(self, client: requests.Session, path: str, data: dict[str, str] | None = None,
             json_reply: bool = True) -> requests.Response:
        headers = {"Accept": "application/json"} if json_reply else {}
        return client.post(f"{self.url}{path}", data={"csrf_token": client.csrf, **(data or {})},  # type: ignore[attr-defined]
                           headers=headers, allow_redirects=False, timeout=30)

    def escalation_of(self, conversation_id: str, statuses: tuple[str, ...] = ("queued", "claimed")) -> Any:
        from sqlalchemy import select

        from bot.db import Escalation, session_scope

        with session_scope(self.database_url) as s:
            return s.execute(
                select(Escalation).where(Escalation.conversation_id == conversation_id,
                                         Escalation.status.in_(statuses)).order_by(Escalation.id.desc()).limit(1)
            ).scalar_one_or_none()


def launch_chromium(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
