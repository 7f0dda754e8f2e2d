"""The console's pages and actions. Everything a citizen wrote reaches the page through
Jinja2's autoescaping (server side) or `textContent` (live updates): never as HTML."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import secrets
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from bot.commune import load_commune
from bot.console.accounts import AccountError, SignedIn
from bot.db import Escalation, utcnow
from bot.db.models import ACTIVE_STATUSES, PRESENCES, ROLES
from bot.handoff.rasa_api import RasaUnavailable
from bot.handoff.service import CANCELLED_BY_CITIZEN, EXPIRED, HANDED_BACK, OUTCOMES, RESTARTED

logger = logging.getLogger(__name__)

LOGIN_CSRF_COOKIE = "guichet_login_csrf"
HEARTBEAT_SECONDS = 15
MAX_REPLY_CHARS = 2000
REASONS = {
    "request": "A demandé un agent",
    "misunderstanding": "Le robot n'a pas compris (2 fois)",
    "topic": "Sujet toujours traité par une personne",
    "callback": "Demande de rappel",
}
STATUSES = {
    "queued": "En attente", "claimed": "Prise en charge", "closed": "Terminée",
    "returned": "Rendue au robot", "expired": "Non prise en charge à temps",
}
OUTCOME_LABELS = {
    **OUTCOMES, CANCELLED_BY_CITIZEN: "L'usager a annulé", HANDED_BACK: "Rendue au robot",
    EXPIRED: "Personne n'a pu la prendre à temps", RESTARTED: "Conversation redémarrée par l'usager",
}
PRESENCE_LABELS = {"online": "Disponible", "away": "Absent·e", "offline": "Hors ligne"}
ROLE_LABELS = {"agent": "Agent", "editor": "Éditeur·rice", "admin": "Administrateur·rice"}
CHANNEL_LABELS = {
    "messenger": "Messenger", "instagram": "Instagram", "whatsapp": "WhatsApp",
    "telegram": "Telegram", "api": "API", "socketio": "Site web", "webchat": "Site web",
}


def _app_keys():  # noqa: ANN202 - avoids a circular import with app.py
    from bot.console import app as application

    return application


# Rendering --------------------------------------------------------------------------------
def waited(since: dt.datetime | None, now: dt.datetime | None = None) -> str:
    if since is None:
        return ""
    seconds = max(0, int(((now or utcnow()) - since).total_seconds()))
    if seconds < 60:
        return "moins d'1 min"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d}"


def local_time(timestamp: float | dt.datetime | None, request: web.Request | web.Application) -> str:
    """"26/11 10:42" in the commune's time zone (not the browser's)."""
    if timestamp is None:
        return ""
    app = request if isinstance(request, web.Application) else request.app
    zone = ZoneInfo(app[_app_keys().SETTINGS].timezone)
    if isinstance(timestamp, dt.datetime):
        moment = timestamp.replace(tzinfo=dt.timezone.utc)
    else:
        moment = dt.datetime.fromtimestamp(timestamp, dt.timezone.utc)
    return moment.astimezone(zone).strftime("%d/%m %H:%M")


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    keys = _app_keys()
    agent: SignedIn | None = request.get("agent")
    page = request.app[keys.TEMPLATES].get_template(template)
    try:
        commune_name = load_commune().name
    except Exception:  # noqa: BLE001 - a broken settings file must not break the console
        commune_name = ""
    html = page.render(
        commune_name=commune_name,
        agent=agent, csrf_token=agent.csrf_token if agent else "", path=request.path,
        presence_labels=PRESENCE_LABELS, reasons=REASONS, statuses=STATUSES, channels=CHANNEL_LABELS,
        role_labels=ROLE_LABELS, outcome_labels=OUTCOME_LABELS, waited=waited, local_time=lambda t: local_time(t, request),
        **context,
    )
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


def wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def done(request: web.Request, location: str, **payload: Any) -> web.Response:
    if wants_json(request):
        return web.json_response({"ok": True, **payload})
    raise web.HTTPSeeOther(location)


def refuse(request: web.Request, status: int, message: str) -> web.Response:
    if wants_json(request):
        return web.json_response({"ok": False, "error": message}, status=status)
    return render(request, "error.html", status=status, title="Action impossible", message=message)


def require_handler(request: web.Request) -> SignedIn:
    agent: SignedIn = request["agent"]
    if not agent.handles_conversations:
        raise web.HTTPForbidden(text="Votre rôle ne permet pas de traiter les conversations.")
    return agent


def require_admin(request: web.Request) -> SignedIn:
    agent: SignedIn = request["agent"]
    if not agent.is_admin:
        raise web.HTTPForbidden(text="Réservé aux administrateurs.")
    return agent


async def db(function: Any, *args: Any) -> Any:
    return await asyncio.to_thread(function, *args)


def publisher(app: web.Application):  # noqa: ANN201 - the watcher's publish callback
    keys = _app_keys()

    async def publish(payload: dict[str, Any]) -> None:
        live = app[keys.LIVE]
        if not live.clients:
            return
        if payload["type"] == "queue":
            queue = await db(app[keys.SERVICE].queue)
            live.send("queue", {"queued": sum(1 for e in queue if e.status == "queued"),
                                "active": len(queue)})
        else:
            if payload["type"] == "message":
                payload = {**payload, "time": local_time(payload.get("timestamp"), app)}
            live.send(payload["type"], payload)

    return publish


async def queue_context(request: web.Request) -> dict[str, Any]:
    keys = _app_keys()
    service, feed = request.app[keys.SERVICE], request.app[keys.FEED]
    queue: list[Escalation] = await db(service.queue)
    names = await db(request.app[keys.ACCOUNTS].names)
    excerpts = {}
    for escalation in queue:
        messages = await db(feed.messages, escalation.conversation_id)
        excerpts[escalation.id] = messages[-6:]
    agent: SignedIn = request["agent"]
    return {
        "waiting": [e for e in queue if e.status == "queued"],
        "mine": [e for e in queue if e.status == "claimed" and e.claimed_by == agent.agent_id],
        "others": [e for e in queue if e.status == "claimed" and e.claimed_by != agent.agent_id],
        "excerpts": excerpts, "names": names, "now": utcnow(),
    }


# Login ------------------------------------------------------------------------------------
def _client_ip(request: web.Request) -> str:
    return request.remote or "inconnue"


def _set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str,
                max_age: int | None = None) -> None:
    settings = request.app[_app_keys().SETTINGS]
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="Strict",
                        secure=settings.console_https or request.secure)


async def login_page(request: web.Request, error: str = "", status: int = 200, username: str = "") -> web.Response:
    # Keep the token of an open login page valid (a second tab, the browser's favicon…).
    existing = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    token = existing if 20 <= len(existing) <= 64 and existing.replace("-", "").replace("_", "").isalnum() \
        else secrets.token_urlsafe(24)
    response = render(request, "login.html", status=status, login_csrf=token, error=error, username=username)
    _set_cookie(request, response, LOGIN_CSRF_COOKIE, token, max_age=3600)
    return response


async def login_get(request: web.Request) -> web.Response:
    if request.get("agent"):
        raise web.HTTPSeeOther("/")
    return await login_page(request)


async def login_post(request: web.Request) -> web.Response:
    keys = _app_keys()
    form = await request.post()
    sent, expected = str(form.get("csrf_token", "")), request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not sent or not expected or not secrets.compare_digest(sent, expected):
        logger.warning("Login form refused: CSRF %s", "cookie missing" if not expected else "token mismatch")
        return await login_page(request, "Le formulaire a expiré : recommencez.", status=403)
    username, password = str(form.get("username", ""))[:64], str(form.get("password", ""))[:256]
    accounts, ip = request.app[keys.ACCOUNTS], _client_ip(request)
    if await db(accounts.rate_limited, username, ip):
        logger.warning("Login rate limit reached for %r from %s", username, ip)
        return await login_page(
            request, "Trop de tentatives de connexion. Patientez 15 minutes avant de réessayer.",
            status=429, username=username)
    agent_id = await db(accounts.authenticate, username, password, ip)
    if agent_id is None:
        return await login_page(request, "Identifiant ou mot de passe incorrect.", status=401, username=username)
    token, _ = await db(accounts.open_session, agent_id)
    response = web.HTTPSeeOther("/")
    settings = request.app[keys.SETTINGS]
    _set_cookie(request, response, keys.cookie_name(settings), token)
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/")
    await publisher(request.app)({"type": "queue"})
    raise response


async def logout(request: web.Request) -> web.Response:
    keys = _app_keys()
    agent: SignedIn = request["agent"]
    await db(request.app[keys.ACCOUNTS].close_session, request.get("session_token", ""), agent.agent_id)
    response = web.HTTPSeeOther("/login")
    response.del_cookie(keys.cookie_name(request.app[keys.SETTINGS]), path="/")
    raise response


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def favicon(request: web.Request) -> web.Response:
    raise web.HTTPMovedPermanently("/static/favicon.svg")


# Queue and live updates ---------------------------------------------------------------------
async def queue_page(request: web.Request) -> web.Response:
    agent: SignedIn = request["agent"]
    if not agent.handles_conversations:
        return render(request, "editor.html")
    keys = _app_keys()
    await db(request.app[keys.ACCOUNTS].seen, agent.agent_id)
    context = await queue_context(request)
    recent = await db(request.app[keys.SERVICE].recent, 10)
    return render(request, "queue.html", recent=recent, **context)


async def queue_fragment(request: web.Request) -> web.Response:
    require_handler(request)
    return render(request, "_queue.html", **(await queue_context(request)))


async def live_events(request: web.Request) -> web.StreamResponse:
    keys = _app_keys()
    agent: SignedIn = request["agent"]
    accounts, live = request.app[keys.ACCOUNTS], request.app[keys.LIVE]
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
    await response.prepare(request)
    queue = live.subscribe()
    try:
        await response.write(b"retry: 2000\n: connected\n\n")
        await db(accounts.seen, agent.agent_id)
        escalations = await db(request.app[keys.SERVICE].queue)
        live_now = {"queued": sum(1 for e in escalations if e.status == "queued"), "active": len(escalations)}
        await response.write(f"event: queue\ndata: {json.dumps(live_now)}\n\n".encode())
        while True:
            try:
                frame = await asyncio.wait_for(queue.get(), timeout=HEARTBEAT_SECONDS)
            except asyncio.TimeoutError:
                frame = ": ping\n\n"
                await db(accounts.seen, agent.agent_id)  # an open console keeps its agent present
            await response.write(frame.encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        live.unsubscribe(queue)
    return response


async def presence(request: web.Request) -> web.Response:
    keys = _app_keys()
    agent: SignedIn = request["agent"]
    form = await request.post()
    value = str(form.get("presence", ""))
    if value not in PRESENCES:
        return refuse(request, 400, "Présence inconnue.")
    await db(request.app[keys.ACCOUNTS].set_presence, agent.agent_id, value)
    return done(request, str(form.get("next", "/")) if str(form.get("next", "/")).startswith("/") else "/")


# One conversation -------------------------------------------------------------------------
async def _escalation(request: web.Request) -> Escalation:
    keys = _app_keys()
    try:
        escalation_id = int(request.match_info["id"])
    except ValueError as exc:
        raise web.HTTPNotFound() from exc
    escalation = await db(_get_or_none, request.app[keys.SERVICE], escalation_id)
    if escalation is None:
        raise web.HTTPNotFound(text="Conversation introuvable.")
    return escalation


def _get_or_none(service: Any, escalation_id: int) -> Escalation | None:
    try:
        return service.get(escalation_id)
    except Exception:  # noqa: BLE001
        return None


async def conversation_page(request: web.Request, error: str = "", draft: str = "",
                            status: int = 200) -> web.Response:
    keys = _app_keys()
    agent = require_handler(request)
    escalation = await _escalation(request)
    service, feed = request.app[keys.SERVICE], request.app[keys.FEED]
    messages = await db(feed.messages, escalation.conversation_id)
    notes = await db(service.notes, escalation.conversation_id)
    colleagues = await db(request.app[keys.ACCOUNTS].colleagues, agent.agent_id)
    names = await db(request.app[keys.ACCOUNTS].names)
    return render(
        request, "conversation.html", status=status, escalation=escalation, messages=messages, notes=notes,
        colleagues=colleagues, names=names, outcomes=OUTCOMES, error=error, draft=draft,
        mine=escalation.status == "claimed" and escalation.claimed_by == agent.agent_id,
        active=escalation.status in ACTIVE_STATUSES,
        last_event_id=messages[-1].id if messages else 0,
    )


async def claim(request: web.Request) -> web.Response:
    keys = _app_keys()
    agent = require_handler(request)
    escalation = await _escalation(request)
    if not await db(request.app[keys.SERVICE].claim, escalation.id, agent.agent_id):
        current = await db(request.app[keys.SERVICE].get, escalation.id)
        names = await db(request.app[keys.ACCOUNTS].names)
        who = names.get(current.claimed_by, "un·e collègue") if current.status == "claimed" else None
        message = (f"Cette conversation est déjà prise en charge par {who}." if who
                   else "Cette conversation n'est plus en attente.")
        return refuse(request, 409, message)
    await publisher(request.app)({"type": "queue"})
    return done(request, f"/escalations/{escalation.id}")


async def _mine(request: web.Request) -> tuple[SignedIn, Escalation]:
    agent = require_handler(request)
    escalation = await _escalation(request)
    if escalation.status != "claimed" or escalation.claimed_by != agent.agent_id:
        raise web.HTTPConflict(text="Vous n'avez pas (ou plus) cette conversation.")
    return agent, escalation


async def reply(request: web.Request) -> web.Response:
    keys = _app_keys()
    agent, escalation = await _mine(request)
    form = await request.post()
    text = str(form.get("text", "")).strip()
    if not text:
        return refuse(request, 400, "Le message est vide.")
    if len(text) > MAX_REPLY_CHARS:
        return refuse(request, 400, f"Le message dépasse {MAX_REPLY_CHARS} caractères.")
    service, rasa = request.app[keys.SERVICE], request.app[keys.RASA]
    # Sent first, then audited: the database write stays off the citizen's wait, and the
    # message itself is in Rasa's tracker once sent.
    reference = secrets.token_hex(8)
    try:
        await rasa.send_agent_message(
            escalation.conversation_id, escalation.channel, text, agent.display_name, reference)
    except RasaUnavailable as exc:
        logger.error("Agent message %s not delivered: %s", reference, exc)
        await db(service.record_agent_message, escalation, agent.agent_id, text, str(exc)[:500])
        error = "Message non envoyé : l'assistant ne répond pas. Votre texte est conservé, réessayez dans un instant."
        if wants_json(request):
            return web.json_response({"ok": False, "error": error}, status=502)
        return await conversation_page(request, error=error, draft=text, status=502)
    await db(service.record_agent_message, escalation, agent.agent_id, text)
    return done(request, f"/escalations/{escalation.id}#reply")


async def note(request: web.Request) -> web.Response:
    keys = _app_keys()
    agent = require_handler(request)
    escalation = await _escalation(request)
    text = str((await request.post()).get("text", "")).strip()[:4000]
    if not text:
        return refuse(request, 400, "La note est vide.")
    await db(request.app[keys.SERVICE].add_note, escalation.id, agent.agent_id, text)
    return done(request, f"/escalations/{escalation.id}#notes")


async def transfer(request: web.Request) -> web.Response:
    keys = _app_keys()
    agent, escalation = await _mine(request)
    target = str((await request.post()).get("to", ""))
    to_agent: int | None = None
    if target != "queue":
        colleagues = {a.id for a in await db(request.app[keys.ACCOUNTS].colleagues, agent.agent_id)}
        try:
            to_agent = int(target)
        except ValueError:
            to_agent = -1
        if to_agent not in colleagues:
            return refuse(request, 400, "Choisissez un·e collègue ou la file d'attente.")
    if not await db(request.app[keys.SERVICE].transfer, escalation.id, agent.agent_id, to_agent):
        return refuse(request, 409, "Le transfert n'a pas pu se faire : la conversation a changé entre-temps.")
    await publisher(request.app)({"type": "queue"})
    return done(request, "/")


async def _finish(request: web.Request, status: str, outcome: str, comment: str = "") -> web.Response:
    keys = _app_keys()
    agent, escalation = await _mine(request)
    if not await db(request.app[keys.SERVICE].end, escalation.id, agent.agent_id, status, outcome, comment):
        return refuse(request, 409, "La conversation a changé entre-temps.")
    ended = await db(request.app[keys.SERVICE].get, escalation.id)
    await request.app[keys.WATCHER].resume(ended)  # retried in the background if Rasa is down
    await publisher(request.app)({"type": "escalation", "escalation_id": escalation.id, "status": status})
    await publisher(request.app)({"type": "queue"})
    return done(request, "/")


async def close(request: web.Request) -> web.Response:
    form = await request.post()
    outcome = str(form.get("outcome", ""))
    if outcome not in OUTCOMES:
        return refuse(request, 400, "Choisissez l'issue de la conversation.")
    return await _finish(request, "closed", outcome, str(form.get("comment", "")).strip())


async def hand_back(request: web.Request) -> web.Response:
    return await _finish(request, "returned", HANDED_BACK)


async def messages_json(request: web.Request) -> web.Response:
    """The conversation's messages after `after` (live view fallback and tests)."""
    keys = _app_keys()
    require_handler(request)
    escalation = await _escalation(request)
    try:
        after = int(request.query.get("after", "0") or 0)
    except ValueError:
        return refuse(request, 400, "Paramètre « after » invalide.")
    messages = await db(request.app[keys.FEED].messages, escalation.conversation_id)
    return web.json_response({
        "status": escalation.status,
        "messages": [m.as_message() for m in messages if m.id > after],
    })


# Tickets ------------------------------------------------------------------------------------
async def tickets_page(request: web.Request) -> web.Response:
    keys = _app_keys()
    require_handler(request)
    tickets = await db(request.app[keys.SERVICE].open_tickets)
    return render(request, "tickets.html", tickets=tickets)


async def close_ticket(request: web.Request) -> web.Response:
    keys = _app_keys()
    agent = require_handler(request)
    try:
        ticket_id = int(request.match_info["id"])
    except ValueError as exc:
        raise web.HTTPNotFound() from exc
    if not await db(request.app[keys.SERVICE].close_ticket, ticket_id, agent.agent_id):
        return refuse(request, 409, "Cette demande est déjà traitée.")
    return done(request, "/tickets")


# Accounts (admin) ---------------------------------------------------------------------------
async def agents_page(request: web.Request, error: str = "", status: int = 200) -> web.Response:
    keys = _app_keys()
    require_admin(request)
    agents = await db(request.app[keys.ACCOUNTS].list)
    return render(request, "agents.html", status=status, agents=agents, roles=ROLES, error=error)


async def create_agent(request: web.Request) -> web.Response:
    keys = _app_keys()
    require_admin(request)
    form = await request.post()
    try:
        await db(request.app[keys.ACCOUNTS].create, str(form.get("username", "")),
                 str(form.get("display_name", "")), str(form.get("password", "")), str(form.get("role", "agent")))
    except AccountError as exc:
        return await agents_page(request, error=str(exc), status=400)
    return done(request, "/admin/agents")


async def set_agent_active(request: web.Request) -> web.Response:
    keys = _app_keys()
    admin = require_admin(request)
    agent_id = int(request.match_info["id"])
    active = str((await request.post()).get("active", "")) == "1"
    if agent_id == admin.agent_id and not active:
        return refuse(request, 400, "Vous ne pouvez pas désactiver votre propre compte.")
    await db(request.app[keys.ACCOUNTS].set_active, agent_id, active)
    return done(request, "/admin/agents")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", health)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_get("/login", login_get)
    app.router.add_post("/login", login_post)
    app.router.add_post("/logout", logout)
    app.router.add_get("/", queue_page)
    app.router.add_get("/fragments/queue", queue_fragment)
    app.router.add_get("/events", live_events)
    app.router.add_post("/presence", presence)
    app.router.add_get("/escalations/{id}", conversation_page)
    app.router.add_get("/escalations/{id}/messages", messages_json)
    app.router.add_post("/escalations/{id}/claim", claim)
    app.router.add_post("/escalations/{id}/reply", reply)
    app.router.add_post("/escalations/{id}/note", note)
    app.router.add_post("/escalations/{id}/transfer", transfer)
    app.router.add_post("/escalations/{id}/close", close)
    app.router.add_post("/escalations/{id}/handback", hand_back)
    app.router.add_get("/tickets", tickets_page)
    app.router.add_post("/tickets/{id}/close", close_ticket)
    app.router.add_get("/admin/agents", agents_page)
    app.router.add_post("/admin/agents", create_agent)
    app.router.add_post("/admin/agents/{id}/active", set_agent_active)

