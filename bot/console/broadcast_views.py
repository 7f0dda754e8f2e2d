"""The console's pages for alerts and news, crisis mode, rumours and consultations.

Editors (and admins) write broadcasts (compose, preview, send, delivery report), publish
rumours and run consultations (results with a chart); only admins set the crisis message.
Forms are plain HTML (CSRF checked by the app's middleware), text is autoescaped; each
page works without JavaScript. `Accept: application/json` gets JSON (tests, scripts).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from bot.broadcast.content import build
from bot.broadcast.service import MAX_BODY, MAX_TITLE, BroadcastError, Broadcasts
from bot.console.accounts import SignedIn
from bot.console.views import done, refuse, render, wants_json
from bot.db.outreach_models import TOPICS, VERDICTS
from bot.outreach import texts
from bot.outreach.crisis import CrisisError, CrisisService
from bot.outreach.polls import MAX_CHOICES, PollError, Polls
from bot.outreach.rumours import VERDICT_LABELS, RumourError, Rumours
from bot.outreach.subscriptions import Subscriptions

STATUS_LABELS = {"draft": "Brouillon", "queued": "En cours d'envoi", "done": "Terminé", "cancelled": "Annulé"}
DELIVERY_LABELS = {"sent": "Envoyés", "failed": "Échecs", "skipped": "Non envoyés (règles des plateformes)",
                   "pending": "En attente", "sending": "En cours"}
ROUTE_LABELS = {"standard": "dans la fenêtre de conversation",
                "notification_token": "notification Messenger acceptée par l'usager",
                "template": "modèle WhatsApp approuvé"}
REASON_LABELS = {
    "window_closed_no_optin": "Messenger : plus de 24 h depuis le dernier message, notifications non acceptées",
    "notification_cooldown": "Messenger : une notification au plus par 48 h et par personne",
    "template_required": "WhatsApp : plus de 24 h depuis le dernier message, aucun modèle approuvé configuré",
    "window_closed": "Fenêtre de conversation fermée",
    "channel_cannot_push": "Canal sans envoi à l'initiative de la mairie (site web)",
    "channel_not_configured": "Canal non configuré",
    "cancelled": "Envoi annulé",
    "unavailable": "Personne injoignable",
    "undeliverable": "Message non distribuable",
    "blocked": "L'usager a bloqué le compte de la mairie",
    "not_allowed": "Envoi non autorisé par la plateforme",
    "notification_refused": "Notification refusée par Meta",
    "token_invalid": "Jeton d'accès invalide (à renouveler par l'administrateur)",
    "template_rejected": "Modèle WhatsApp refusé",
    "rejected": "Message refusé par la plateforme",
    "rate_limited": "Limite de débit atteinte (après plusieurs essais)",
    "temporary_error": "Erreur temporaire persistante (après plusieurs essais)",
    "interrupted": "Envoi interrompu",
    "error": "Erreur inattendue",
    "unknown": "Raison inconnue",
}
CHART_WIDTH = 480
BAR_HEIGHT = 28


def _app_keys():  # noqa: ANN202 - avoids a circular import with app.py
    from bot.console import app as application

    return application


def require_editor(request: web.Request) -> SignedIn:
    agent: SignedIn = request["agent"]
    if agent.role not in ("editor", "admin"):
        raise web.HTTPForbidden(text="Réservé aux éditeurs et administrateurs.")
    return agent


def require_admin(request: web.Request) -> SignedIn:
    agent: SignedIn = request["agent"]
    if agent.role != "admin":
        raise web.HTTPForbidden(text="Réservé aux administrateurs.")
    return agent


def _url(request: web.Request) -> str:
    return request.app[_app_keys().SETTINGS].database_url


def _zone(request: web.Request) -> ZoneInfo:
    return ZoneInfo(request.app[_app_keys().SETTINGS].timezone)


def _id(request: web.Request) -> int:
    try:
        return int(request.match_info["id"])
    except ValueError as exc:
        raise web.HTTPNotFound() from exc


def local_input_to_utc(value: str, zone: ZoneInfo) -> dt.datetime | None:
    """A `datetime-local` field (commune time) as naive UTC; None if empty or invalid."""
    try:
        moment = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(dt.timezone.utc).replace(tzinfo=None)


def local_text(moment: dt.datetime | None, zone: ZoneInfo) -> str:
    if moment is None:
        return ""
    return moment.replace(tzinfo=dt.timezone.utc).astimezone(zone).strftime("%d/%m/%Y %H:%M")


def _page(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    zone = _zone(request)
    return render(request, template, status=status, topic_labels=texts.TOPIC_LABELS, topics=TOPICS,
                  local=lambda m: local_text(m, zone), **context)


async def _form(request: web.Request) -> Any:
    return await request.post()


def _db(function: Any, *args: Any) -> Any:
    return asyncio.to_thread(function, *args)


# Broadcasts -----------------------------------------------------------------------------
async def broadcasts_page(request: web.Request, error: str = "", status: int = 200,
                          form: dict[str, Any] | None = None) -> web.Response:
    require_editor(request)
    url = _url(request)
    recent = await _db(Broadcasts(url).recent)
    counts = await _db(Subscriptions(url).counts)
    return _page(request, "broadcasts.html", status=status, broadcasts=recent, counts=counts, error=error,
                 form=form or {}, status_labels=STATUS_LABELS, max_title=MAX_TITLE, max_body=MAX_BODY)


async def create_broadcast(request: web.Request) -> web.Response:
    agent = require_editor(request)
    form = await _form(request)
    topics = [str(t) for t in form.getall("topics", [])]
    poll_id = str(form.get("poll_id", "")).strip()
    values = {"title": str(form.get("title", ""))[:500], "body": str(form.get("body", ""))[:5000],
              "link": str(form.get("link", ""))[:1000], "topics": topics}
    try:
        poll = await _db(Polls(_url(request)).get, int(poll_id)) if poll_id.isdigit() else None
        if poll_id and (poll is None or poll.status != "open"):
            raise BroadcastError("Cette consultation n'est pas ouverte : elle ne peut pas être proposée.")
        info = await _db(lambda: Broadcasts(_url(request)).create(
            values["title"], values["body"], topics, values["link"], poll.id if poll else None, agent.agent_id))
    except BroadcastError as exc:
        if wants_json(request):
            return web.json_response({"ok": False, "error": str(exc)}, status=400)
        return await broadcasts_page(request, error=str(exc), status=400, form=values)
    return done(request, f"/broadcasts/{info.id}", broadcast_id=info.id)


async def broadcast_page(request: web.Request) -> web.Response:
    require_editor(request)
    url = _url(request)
    service = Broadcasts(url)
    info = await _db(service.get, _id(request))
    if info is None:
        raise web.HTTPNotFound(text="Message introuvable.")
    poll = await _db(Polls(url).get, info.poll_id) if info.poll_id else None
    content = build(info, poll)
    audience = await _db(service.audience, info.topics)
    report = await _db(service.report, info.id) if info.status != "draft" else None
    problems = await _db(service.deliveries, info.id, "failed", 50) if report and report.count("failed") else []
    if wants_json(request):
        return web.json_response({"broadcast": {"id": info.id, "status": info.status, "topics": list(info.topics)},
                                  "audience": dict(audience), "preview": content.text,
                                  "report": report.as_dict() if report else None})
    return _page(request, "broadcast.html", broadcast=info, content=content, audience=audience,
                 audience_total=sum(audience.values()), report=report, problems=problems,
                 status_labels=STATUS_LABELS, delivery_labels=DELIVERY_LABELS, reason_labels=REASON_LABELS,
                 route_labels=ROUTE_LABELS, link_label=texts.BROADCAST_LINK, poll=poll)


async def send_broadcast(request: web.Request) -> web.Response:
    agent = require_editor(request)
    broadcast_id = _id(request)
    try:
        count = await _db(Broadcasts(_url(request)).queue, broadcast_id, agent.agent_id)
    except BroadcastError as exc:
        return refuse(request, 409, str(exc))
    return done(request, f"/broadcasts/{broadcast_id}", deliveries=count)


async def cancel_broadcast(request: web.Request) -> web.Response:
    require_editor(request)
    broadcast_id = _id(request)
    try:
        await _db(Broadcasts(_url(request)).cancel, broadcast_id)
    except BroadcastError as exc:
        return refuse(request, 409, str(exc))
    return done(request, f"/broadcasts/{broadcast_id}")


# Crisis ---------------------------------------------------------------------------------
async def crisis_page(request: web.Request, error: str = "", status: int = 200,
                      form: dict[str, Any] | None = None) -> web.Response:
    require_admin(request)
    service = CrisisService(_url(request))
    active = await _db(service.active)
    recent = await _db(service.recent)
    return _page(request, "crisis.html", status=status, active=active, recent=recent, error=error, form=form or {})


async def create_crisis(request: web.Request) -> web.Response:
    agent = require_admin(request)
    form = await _form(request)
    values = {k: str(form.get(k, ""))[:2000] for k in ("title", "message", "link", "keywords", "ends_at")}
    ends_at = local_input_to_utc(values["ends_at"], _zone(request))
    try:
        if ends_at is None:
            raise CrisisError("Indiquez la date et l'heure de fin.")
        crisis = await _db(lambda: CrisisService(_url(request)).create(
            values["title"], values["message"], values["link"], ends_at, values["keywords"], agent.agent_id))
    except CrisisError as exc:
        if wants_json(request):
            return web.json_response({"ok": False, "error": str(exc)}, status=400)
        return await crisis_page(request, error=str(exc), status=400, form=values)
    return done(request, "/crisis", crisis_id=crisis.id)


async def end_crisis(request: web.Request) -> web.Response:
    require_admin(request)
    if not await _db(CrisisService(_url(request)).end, _id(request)):
        return refuse(request, 409, "Ce message de crise n'est plus en vigueur.")
    return done(request, "/crisis")


# Rumours --------------------------------------------------------------------------------
async def rumours_page(request: web.Request, error: str = "", status: int = 200,
                       form: dict[str, Any] | None = None, editing: int | None = None) -> web.Response:
    require_editor(request)
    rumours = await _db(Rumours(_url(request)).all)
    if form is None and editing is not None:
        found = next((r for r in rumours if r.id == editing), None)
        if found is None:
            raise web.HTTPNotFound(text="Rumeur introuvable.")
        form = {"statement": found.statement, "verdict": found.verdict, "answer": found.answer,
                "source": found.source, "source_date": found.source_date.isoformat(), "status": found.status}
    return _page(request, "rumours.html", status=status, rumours=rumours, error=error, form=form or {},
                 editing=editing, verdicts=VERDICTS, verdict_labels=VERDICT_LABELS)


async def rumour_page(request: web.Request) -> web.Response:
    return await rumours_page(request, editing=_id(request))


async def save_rumour(request: web.Request) -> web.Response:
    agent = require_editor(request)
    form = await _form(request)
    values = {k: str(form.get(k, ""))[:2000] for k in ("statement", "verdict", "answer", "source", "source_date")}
    values["status"] = "published" if str(form.get("status", "")) == "published" else "draft"
    rumour_id = _id(request) if "id" in request.match_info else None
    try:
        source_date = dt.date.fromisoformat(values["source_date"]) if values["source_date"] else None
    except ValueError:
        source_date = None
    try:
        entry = await _db(lambda: Rumours(_url(request)).save(
            values["statement"], values["verdict"], values["answer"], values["source"], source_date,
            values["status"], rumour_id, agent.agent_id))
    except RumourError as exc:
        if wants_json(request):
            return web.json_response({"ok": False, "error": str(exc)}, status=400)
        return await rumours_page(request, error=str(exc), status=400, form=values, editing=rumour_id)
    return done(request, "/rumours", rumour_id=entry.id)


async def rumour_status(request: web.Request) -> web.Response:
    require_editor(request)
    status = str((await _form(request)).get("status", ""))
    try:
        changed = await _db(Rumours(_url(request)).set_status, _id(request), status)
    except RumourError as exc:
        return refuse(request, 400, str(exc))
    if not changed:
        raise web.HTTPNotFound(text="Rumeur introuvable.")
    return done(request, "/rumours")


# Consultations --------------------------------------------------------------------------
async def polls_page(request: web.Request, error: str = "", status: int = 200,
                     form: dict[str, Any] | None = None) -> web.Response:
    require_editor(request)
    polls = await _db(Polls(_url(request)).all)
    return _page(request, "polls.html", status=status, polls=polls, error=error, form=form or {},
                 max_choices=MAX_CHOICES, now=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None))


async def create_poll(request: web.Request) -> web.Response:
    agent = require_editor(request)
    form = await _form(request)
    choices = [str(c)[:200] for c in form.getall("choice", [])]
    values = {"question": str(form.get("question", ""))[:1000], "ends_at": str(form.get("ends_at", "")),
              "choices": choices, "offer_at_end": str(form.get("offer_at_end", "")) == "1"}
    ends_at = local_input_to_utc(values["ends_at"], _zone(request))
    try:
        if ends_at is None:
            raise PollError("Indiquez la date et l'heure de fin.")
        poll = await _db(lambda: Polls(_url(request)).create(
            values["question"], choices, ends_at, values["offer_at_end"], agent.agent_id))
        if str(form.get("open_now", "")) == "1":
            await _db(Polls(_url(request)).open, poll.id)
    except PollError as exc:
        if wants_json(request):
            return web.json_response({"ok": False, "error": str(exc)}, status=400)
        return await polls_page(request, error=str(exc), status=400, form=values)
    return done(request, f"/polls/{poll.id}", poll_id=poll.id)


async def poll_state(request: web.Request) -> web.Response:
    require_editor(request)
    poll_id = _id(request)
    action = str((await _form(request)).get("action", ""))
    service = Polls(_url(request))
    changed = await _db(service.open if action == "open" else service.close, poll_id) \
        if action in ("open", "close") else False
    if not changed:
        return refuse(request, 409, "Cette consultation ne peut pas changer d'état.")
    return done(request, f"/polls/{poll_id}")


def chart(results: Any) -> dict[str, Any]:
    """Horizontal bars (server-rendered SVG, sizes as attributes: no inline style)."""
    label_width, bar_area = 190, CHART_WIDTH - 190 - 60
    top = max((n for _, n in results.counts), default=0)
    bars = []
    for index, (choice, count) in enumerate(results.counts):
        width = round(bar_area * count / top) if top else 0
        bars.append({"label": choice.label, "count": count, "percent": results.percent(count),
                     "y": index * (BAR_HEIGHT + 12), "width": width, "label_width": label_width})
    return {"bars": bars, "width": CHART_WIDTH, "height": len(bars) * (BAR_HEIGHT + 12), "bar_height": BAR_HEIGHT}


async def poll_page(request: web.Request) -> web.Response:
    require_editor(request)
    url = _url(request)
    results = await _db(Polls(url).results, _id(request))
    if results is None:
        raise web.HTTPNotFound(text="Consultation introuvable.")
    if wants_json(request):
        return web.json_response({"poll_id": results.poll.id, "question": results.poll.question,
                                  "status": results.poll.status, "total": results.total,
                                  "results": [{"choice": c.label, "votes": n} for c, n in results.counts]})
    counts = await _db(Subscriptions(url).counts)
    return _page(request, "poll.html", results=results, chart=chart(results), counts=counts,
                 max_body=MAX_BODY)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/broadcasts", broadcasts_page)
    app.router.add_post("/broadcasts", create_broadcast)
    app.router.add_get("/broadcasts/{id}", broadcast_page)
    app.router.add_post("/broadcasts/{id}/send", send_broadcast)
    app.router.add_post("/broadcasts/{id}/cancel", cancel_broadcast)
    app.router.add_get("/crisis", crisis_page)
    app.router.add_post("/crisis", create_crisis)
    app.router.add_post("/crisis/{id}/end", end_crisis)
    app.router.add_get("/rumours", rumours_page)
    app.router.add_post("/rumours", save_rumour)
    app.router.add_get("/rumours/{id}", rumour_page)
    app.router.add_post("/rumours/{id}", save_rumour)
    app.router.add_post("/rumours/{id}/status", rumour_status)
    app.router.add_get("/polls", polls_page)
    app.router.add_post("/polls", create_poll)
    app.router.add_get("/polls/{id}", poll_page)
    app.router.add_post("/polls/{id}/state", poll_state)
