"""A citizen's "mes données" link (bot/privacy/export_links.py) and the page it opens
(bot/channels/data_export.py), on real SQLite/PostgreSQL databases and a real Sanic
server: the link opens that conversation's data only, until it expires or the data is
erased; the page escapes what citizens typed and runs no script."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sanic import Sanic
from sqlalchemy import select

from bot.channels.data_export import DataExportInput
from bot.db import session_scope, utcnow
from bot.db.tickets import DataExportLink
from bot.privacy import data as privacy
from bot.privacy.export_links import conversation_for, create_link, link_url
from bot.privacy.notice import validity_text
from bot.reports.service import RequestService
from tests.test_reports_units import PSID, add_events, report, url  # noqa: F401 - fixture

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def test_a_link_opens_its_conversation_until_it_expires(url):  # noqa: F811
    token = create_link(url, PSID, hours=24)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    found = conversation_for(url, token)
    assert found is not None and found[0] == PSID
    assert dt.timedelta(hours=23, minutes=59) < found[1] - utcnow() <= dt.timedelta(hours=24)
    assert conversation_for(url, token, now=utcnow() + dt.timedelta(hours=25)) is None
    assert conversation_for(url, token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert conversation_for(url, "../../etc/passwd") is None and conversation_for(url, "") is None
    with session_scope(url) as s:
        stored = s.execute(select(DataExportLink)).scalar_one()
        assert token not in (stored.token_hash, stored.conversation_id) and stored.downloads == 0
    conversation_for(url, token, count=True)
    with session_scope(url) as s:
        assert s.execute(select(DataExportLink.downloads)).scalar_one() == 1
    assert link_url("https://assistant.example.fr/", token) == f"https://assistant.example.fr/webhooks/donnees/{token}"


def test_expired_links_are_dropped_and_erasure_deletes_the_links(url):  # noqa: F811
    create_link(url, "someone-else", hours=1, now=utcnow() - dt.timedelta(hours=2))
    token = create_link(url, PSID, hours=24)
    with session_scope(url) as s:
        assert s.execute(select(DataExportLink.conversation_id)).scalars().all() == [PSID]
    assert "guichet_data_export_links" not in privacy.export_conversation(url, PSID)["other"]
    privacy.request_erasure(url, PSID, "messenger", grace_seconds=0)
    assert conversation_for(url, token) is None


def test_validity_is_said_in_plain_french():
    assert validity_text(24) == "24 heures" and validity_text(1) == "1 heure"
    assert validity_text(72) == "3 jours" and validity_text(0.5) == "30 minutes"


# The page, served by a real Sanic server -------------------------------------------------------------------
@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """The channel's blueprint on a Sanic server in a thread (one per process: Sanic 21.12
    rewrites its own classes when a server starts); it reads GUICHET_DATABASE_URL per request."""
    app = Sanic("guichet_data_export_test")
    app.blueprint(DataExportInput().blueprint(None), url_prefix="/webhooks/donnees")  # type: ignore[arg-type]
    loop = asyncio.new_event_loop()
    ready: dict[str, Any] = {}
    started = threading.Event()

    async def start() -> None:
        ready["server"] = server = await app.create_server(host="127.0.0.1", port=0, return_asyncio_server=True)
        await server.startup()
        ready["port"] = server.server.sockets[0].getsockname()[1]
        started.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(30), "the Sanic server did not start"
    yield f"http://127.0.0.1:{ready['port']}/webhooks/donnees"
    loop.call_soon_threadsafe(ready["server"].close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def test_the_page_shows_the_data_escaped_and_the_file_downloads(url, server, monkeypatch):  # noqa: F811
    monkeypatch.setenv("GUICHET_DATABASE_URL", url)
    add_events(url, PSID, [f"bonjour {XSS}", "Bonjour 👋", "mon numéro 06 12 34 56 78", "Merci"])
    created = RequestService(url).create(report(description=f"Trou {XSS}"))
    add_events(url, "someone-else", ["le secret du voisin", "ok"])
    token = create_link(url, PSID, hours=24)

    page = requests.get(f"{server}/{token}", timeout=10)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    policy = page.headers["Content-Security-Policy"]
    assert page.headers["Referrer-Policy"] == "no-referrer" and "default-src 'none'" in policy and "script" not in policy
    html = page.text
    assert "Vos données personnelles" in html and created.reference in html and "06 12 34 56 78" in html
    assert "<script" not in html and "<img" not in html and "&lt;script&gt;" in html
    assert "le secret du voisin" not in html and "Bonjour 👋" in html
    link = re.search(r'href="([^"]+\.json)"', html).group(1)
    file = requests.get(f"{server}/{link}", timeout=10)
    assert file.status_code == 200 and "attachment" in file.headers["Content-Disposition"]
    data = file.json()
    assert [m["text"] for m in data["messages"]][0] == f"bonjour {XSS}"
    assert data["requests"][0]["reference"] == created.reference
    for bad in ("A" * 43, "nimporte-quoi", f"{token}x"):
        missing = requests.get(f"{server}/{bad}", timeout=10)
        assert missing.status_code == 404 and "n'est plus valable" in missing.text
    with session_scope(url) as s:
        assert s.execute(select(DataExportLink.downloads)).scalar_one() == 1


def test_a_database_down_gets_a_clear_page(server, monkeypatch):
    monkeypatch.setenv("GUICHET_DATABASE_URL", "postgresql://nobody@127.0.0.1:9/guichet?connect_timeout=2")
    page = requests.get(f"{server}/{'A' * 43}", timeout=10)
    assert page.status_code == 503 and "indisponible" in page.text and "Traceback" not in page.text
