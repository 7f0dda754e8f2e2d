"""The console's aiohttp application: middlewares (errors, security headers, sessions,
CSRF), routes, and the handoff watcher running in the background."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape

from bot.console import broadcast_views, faq_views, reports_views, views
from bot.console.accounts import Accounts
from bot.console.live import Broadcaster
from bot.db.migrate import upgrade
from bot.handoff.rasa_api import RasaApi
from bot.handoff.service import HandoffService
from bot.handoff.tracker_feed import TrackerFeed
from bot.handoff.watcher import HandoffWatcher
from bot.settings import Settings, get_settings

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; media-src 'self' data:; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'; object-src 'none'"
)

SETTINGS = web.AppKey("settings", Settings)
ACCOUNTS = web.AppKey("accounts", Accounts)
SERVICE = web.AppKey("service", HandoffService)
FEED = web.AppKey("feed", TrackerFeed)
RASA = web.AppKey("rasa", RasaApi)
LIVE = web.AppKey("live", Broadcaster)
WATCHER = web.AppKey("watcher", HandoffWatcher)
TEMPLATES = web.AppKey("templates", Environment)


def cookie_name(settings: Settings) -> str:
    # The __Host- prefix makes browsers refuse the cookie unless Secure, path=/ and no domain.
    return "__Host-guichet_session" if settings.console_https else "guichet_session"


@web.middleware
async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - an agent sees a clear page, never a traceback
        logger.exception("Console error on %s %s", request.method, request.path)
        return views.render(request, "error.html", status=500, title="Erreur",
                            message="Une erreur est survenue. Réessayez ; si elle persiste, prévenez l'administrateur.")


@web.middleware
async def plain_bodies(request: web.Request, handler: Any) -> web.StreamResponse:
    """Refuses compressed request bodies before they are read: aiohttp 3.9 (held by Rasa
    3.6) would inflate them without limit (docs/security-audit.md); browsers never send one."""
    if request.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
        raise web.HTTPUnsupportedMediaType(text="Corps de requête compressé refusé.")
    return await handler(request)


@web.middleware
async def security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _secure(request, exc)
        raise
    return _secure(request, response)


def _secure(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    if response.prepared:
        return response
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if not request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.host


@web.middleware
async def sessions(request: web.Request, handler: Any) -> web.StreamResponse:
    app = request.app
    request["agent"] = None
    token = request.cookies.get(cookie_name(app[SETTINGS]), "")
    if token:
        request["agent"] = await asyncio.to_thread(app[ACCOUNTS].session, token)
        request["session_token"] = token
    if request.path in ("/login", "/healthz", "/favicon.ico") or request.path.startswith("/static/"):
        return await handler(request)
    agent = request["agent"]
    if agent is None:
        accept = request.headers.get("Accept", "")
        if request.method == "GET" and request.path != "/events" and "json" not in accept \
                and "event-stream" not in accept:
            raise web.HTTPSeeOther("/login")
        raise web.HTTPUnauthorized(text="Session expirée : reconnectez-vous.")
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        if not _same_origin(request):
            raise web.HTTPForbidden(text="Origine refusée.")
        sent = request.headers.get("X-CSRF-Token", "")
        if not sent:
            form = await request.post()
            sent = str(form.get("csrf_token", ""))
        if not sent or not hmac.compare_digest(sent.encode(), agent.csrf_token.encode()):
            logger.warning("CSRF token missing or wrong for %s %s", request.method, request.path)
            return views.render(request, "error.html", status=403, title="Formulaire expiré",
                                message="Ce formulaire a expiré ou ne vient pas de la console. Rechargez la page et recommencez.")
    return await handler(request)


async def _start_watcher(app: web.Application) -> AsyncIterator[None]:
    app[WATCHER] = HandoffWatcher(app[SERVICE], app[FEED], app[RASA], views.publisher(app))
    task = asyncio.get_running_loop().create_task(app[WATCHER].run())
    yield
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    await app[RASA].close()


def create_app(settings: Settings | None = None, run_watcher: bool = True) -> web.Application:
    settings = settings or get_settings()
    upgrade(settings.database_url)
    app = web.Application(middlewares=[plain_bodies, errors, security_headers, sessions], client_max_size=256 * 1024)
    app[SETTINGS] = settings
    app[ACCOUNTS] = Accounts(settings.database_url)
    app[SERVICE] = HandoffService(settings.database_url, settings)
    app[FEED] = TrackerFeed(settings.database_url)
    app[RASA] = RasaApi(settings.rasa_url, settings.rasa_token)
    app[LIVE] = Broadcaster()
    app[TEMPLATES] = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"], default=True),
        trim_blocks=True, lstrip_blocks=True,
    )
    if not settings.rasa_token:
        logger.error("GUICHET_RASA_TOKEN is not set: agents' replies cannot reach citizens")
    views.add_routes(app)
    broadcast_views.add_routes(app)  # alerts and news, crisis, rumours, consultations
    reports_views.setup(app, run_worker=run_watcher)  # reports, complaints, personal data
    faq_views.setup(app)  # FAQ editor: topics, unanswered questions, publication, spreadsheets
    app.router.add_static("/static/", HERE / "static")
    if run_watcher:
        app.cleanup_ctx.append(_start_watcher)
    return app
