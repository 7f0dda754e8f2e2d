"""The console's login, sessions, CSRF, roles and rate limit, on a real console process."""

from __future__ import annotations

import gzip
import os
import secrets
from types import SimpleNamespace

import pytest
import requests

from tests.handoff_support import PASSWORD, Console, csrf_of


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("console")
    env = {
        **os.environ, "GUICHET_DATABASE_URL": f"sqlite:///{workdir / 'guichet.db'}",
        "GUICHET_RASA_TOKEN": secrets.token_urlsafe(8),
    }
    console = Console(SimpleNamespace(env=env, workdir=workdir, url="http://127.0.0.1:9"))
    console.start()
    yield console
    console.stop()


def login(console: Console, username: str, password: str, session: requests.Session | None = None,
          token: str | None = None) -> requests.Response:
    session = session or requests.Session()
    page = session.get(f"{console.url}/login", timeout=10)
    return session.post(
        f"{console.url}/login",
        data={"csrf_token": token if token is not None else csrf_of(page.text), "username": username, "password": password},
        allow_redirects=False, timeout=10,
    )


def test_pages_need_a_session(console):
    response = requests.get(f"{console.url}/", allow_redirects=False, timeout=10)
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    assert requests.get(f"{console.url}/events", headers={"Accept": "text/event-stream"}, timeout=10).status_code == 401
    assert requests.post(f"{console.url}/escalations/1/claim", timeout=10).status_code == 401


def test_a_compressed_request_body_is_refused_before_it_is_read(console):
    console.create_agent("zip")
    session = requests.Session()
    token = csrf_of(session.get(f"{console.url}/login", timeout=10).text)
    body = gzip.compress(f"csrf_token={token}&username=zip&password={PASSWORD}".encode())
    response = session.post(f"{console.url}/login", data=body, allow_redirects=False, timeout=10, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip"})
    assert response.status_code == 415 and "compressé" in response.text
    assert "Set-Cookie" not in response.headers
    assert login(console, "zip", PASSWORD, session).status_code == 303  # the same form, plain, works


def test_login_sets_a_secure_session_cookie(console):
    console.create_agent("marie")
    session = requests.Session()
    response = login(console, "marie", PASSWORD, session)
    assert response.status_code == 303
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    page = session.get(f"{console.url}/", timeout=10)
    assert page.status_code == 200 and "File d'attente" in page.text
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"


def test_wrong_password_and_unknown_user_get_the_same_answer(console):
    console.create_agent("paul")
    wrong = login(console, "paul", "pas le bon mot de passe")
    unknown = login(console, "personne", "pas le bon mot de passe")
    assert wrong.status_code == unknown.status_code == 401
    assert "Identifiant ou mot de passe incorrect" in wrong.text


def test_login_form_needs_its_csrf_token(console):
    console.create_agent("lea")
    assert login(console, "lea", PASSWORD, token="forged").status_code == 403
    no_cookie = requests.post(f"{console.url}/login", data={"csrf_token": "x", "username": "lea", "password": PASSWORD},
                              allow_redirects=False, timeout=10)
    assert no_cookie.status_code == 403


def test_every_post_needs_the_sessions_csrf_token(console):
    client = console.client("csrf-agent")
    url = f"{console.url}/presence"
    assert client.post(url, data={"presence": "away"}, allow_redirects=False, timeout=10).status_code == 403
    assert client.post(url, data={"presence": "away", "csrf_token": "forged"}, allow_redirects=False,
                       timeout=10).status_code == 403
    foreign = client.post(url, data={"presence": "away", "csrf_token": client.csrf},
                          headers={"Origin": "https://evil.example"}, allow_redirects=False, timeout=10)
    assert foreign.status_code == 403
    ok = console.post(client, "/presence", {"presence": "away"})
    assert ok.status_code == 200 and ok.json()["ok"]


def test_roles(console):
    agent, editor, admin = console.client("role-agent"), console.client("role-editor", "editor"), \
        console.client("role-admin", "admin")
    assert agent.get(f"{console.url}/admin/agents", timeout=10).status_code == 403
    assert admin.get(f"{console.url}/admin/agents", timeout=10).status_code == 200
    assert editor.get(f"{console.url}/tickets", timeout=10).status_code == 403
    assert console.post(editor, "/escalations/1/claim").status_code == 403
    assert "éditeur" in editor.get(f"{console.url}/", timeout=10).text
    created = console.post(admin, "/admin/agents", {"username": "nouvelle", "display_name": "Nouvelle",
                                                    "password": "assez-long-pour-passer", "role": "agent"})
    assert created.status_code == 200
    assert login(console, "nouvelle", "assez-long-pour-passer").status_code == 303
    too_short = console.post(admin, "/admin/agents", {"username": "court", "display_name": "C", "password": "court",
                                                      "role": "agent"}, json_reply=False)
    assert too_short.status_code == 400 and "10 caractères" in too_short.text


def test_login_rate_limit_per_account(console):
    console.create_agent("cible")
    statuses = [login(console, "cible", f"mauvais-{i}").status_code for i in range(6)]
    assert statuses[:5] == [401] * 5 and statuses[5] == 429
    # Even the right password is refused while the limit holds.
    blocked = login(console, "cible", PASSWORD)
    assert blocked.status_code == 429 and "Trop de tentatives" in blocked.text


def test_logout_ends_the_session(console):
    client = console.client("sortie")
    assert console.post(client, "/logout", json_reply=False).status_code == 303
    assert client.get(f"{console.url}/", allow_redirects=False, timeout=10).status_code == 303


def test_admin_command_creates_the_first_account(console):
    import subprocess
    import sys

    from bot.settings import PROJECT_ROOT

    result = subprocess.run(
        [sys.executable, "-m", "bot.console.admin", "create-user", "--username", "premiere", "--role", "admin",
         "--password-stdin"],
        input="un-mot-de-passe-solide\n", capture_output=True, text=True, env=console.env, cwd=PROJECT_ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert login(console, "premiere", PASSWORD).status_code == 303
    again = subprocess.run(
        [sys.executable, "-m", "bot.console.admin", "create-user", "--username", "premiere", "--password-stdin"],
        input="un-mot-de-passe-solide\n", capture_output=True, text=True, env=console.env, cwd=PROJECT_ROOT,
        timeout=60,
    )
    assert again.returncode == 1 and "existe déjà" in again.stderr


def test_unknown_pages_and_bad_ids_are_clean_errors(console):
    client = console.client("curieux")
    assert client.get(f"{console.url}/escalations/999999", timeout=10).status_code == 404
    assert client.get(f"{console.url}/escalations/abc", timeout=10).status_code == 404
    assert "Traceback" not in client.get(f"{console.url}/escalations/abc", timeout=10).text
