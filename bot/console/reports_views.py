"""The staff's side of reports, complaints and personal data (templates in templates/reports/).

- `/signalements`: the reports and complaints in a table (no map), with filters (status,
  type, category, dates, assignee, reference) and a CSV export of what is shown.
- `/signalements/<id>`: one request, its history, assignment, status change with an
  optional message to the citizen, sent on their channel (bot/reports/notify.py); when the
  platform's rules forbid it, the reason is shown and kept.
- `/confidentialite` (admins): a conversation's data as JSON, its erasure, the retention
  purge now.
- In the background: due notifications (and retries), erasures and the retention purge.

Agents and admins handle requests; the privacy page is for admins. Everything a citizen
wrote reaches the page through Jinja2's autoescaping only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import AsyncIterator
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from bot.commune import load_commune
from bot.console import views
from bot.console.accounts import SignedIn
from bot.db.tickets import KINDS, REQUEST_STATUSES, CitizenRequest
from bot.privacy.data import export_conversation, purge_expired, request_erasure
from bot.privacy.jobs import PrivacyJobs
from bot.privacy.notice import retention_text
from bot.reports import catalog
from bot.reports import messages as citizen_text
from bot.reports.notify import Notifier
from bot.reports.service import Filters, RequestError, RequestService, get_request_service, photos_of

logger = logging.getLogger(__name__)

REQUESTS = web.AppKey("requests", RequestService)
NOTIFIER = web.AppKey("notifier", Notifier)
WORKER_INTERVAL = 2.0
PRIVACY_INTERVAL = 5.0
MAX_MESSAGE_CHARS = 1000
MAX_ROWS = 500


def _keys():  # noqa: ANN202 - the console's app keys (bot/console/app.py imports this module)
    from bot.console import app as application

    return application


def _local(request: web.Request):  # noqa: ANN202 - a formatter for the templates
    zone = ZoneInfo(request.app[_keys().SETTINGS].timezone)

    def local(moment: dt.datetime | None, with_time: bool = True) -> str:
        if moment is None:
            return ""
        value = moment.replace(tzinfo=dt.timezone.utc).astimezone(zone)
        return value.strftime("%d/%m/%Y %H:%M" if with_time else "%d/%m/%Y")

    return local


def _render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    return views.render(
        request, template, status=status, kinds=catalog.KIND_LABELS, request_statuses=catalog.STATUS_LABELS,
        categories=catalog.REPORT_CATEGORIES, subjects=catalog.COMPLAINT_SUBJECTS,
        category_label=catalog.category_label, notification_labels=catalog.NOTIFICATION_LABELS,
        reason_labels=catalog.REASON_LABELS, local=_local(request), **context,
    )


def status_text(citizen_request: CitizenRequest, status: str, message: str) -> str:
    """What the citizen is told when the status changes."""
    commune = load_commune()
    kind = catalog.KIND_LABELS.get(citizen_request.kind, "demande").lower()
    text = citizen_text.STATUS_UPDATE.format(
        kind_lower=kind, reference=citizen_request.reference,
        category=catalog.category_label(citizen_request.kind, citizen_request.category),
        phrase=citizen_text.STATUS_PHRASES.get(status, catalog.STATUS_LABELS.get(status, status)),
    )
    if message:
        text += citizen_text.STATUS_MESSAGE.format(message=message)
    return text + citizen_text.STATUS_FOOTER.format(telephone=commune.phone)


async def _request_or_404(request: web.Request) -> CitizenRequest:
    try:
        request_id = int(request.match_info["id"])
    except ValueError as exc:
        raise web.HTTPNotFound(text="Demande introuvable.") from exc
    found = await views.db(request.app[REQUESTS].get, request_id)
    if found is None:
        raise web.HTTPNotFound(text="Demande introuvable.")
    return found


# The table -------------------------------------------------------------------------------------
async def list_page(request: web.Request) -> web.Response:
    views.require_handler(request)
    filters = Filters.from_query(request.query)
    rows = await views.db(request.app[REQUESTS].search, filters, MAX_ROWS)
    names = await views.db(request.app[_keys().ACCOUNTS].names)
    colleagues = await views.db(request.app[_keys().ACCOUNTS].colleagues, -1)
    last = await views.db(request.app[REQUESTS].last_notifications, [r.id for r in rows])
    return _render(
        request, "reports/list.html", title="Signalements et réclamations", rows=rows, filters=filters,
        names=names, colleagues=colleagues, last_notifications=last, max_rows=MAX_ROWS,
        query=filters.as_query(), statuses_order=REQUEST_STATUSES, kinds_order=KINDS,
    )


async def export_csv(request: web.Request) -> web.Response:
    views.require_handler(request)
    filters = Filters.from_query(request.query)
    service = request.app[REQUESTS]
    rows = await views.db(service.search, filters, 100_000)
    names = await views.db(request.app[_keys().ACCOUNTS].names)
    body = service.csv_export(rows, names, _local(request))
    stamp = dt.date.today().isoformat()
    return web.Response(
        body=body.encode("utf-8"), content_type="text/csv", charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="signalements-{stamp}.csv"'},
    )


# One request ---------------------------------------------------------------------------------
async def detail_page(request: web.Request, error: str = "", status: int = 200) -> web.Response:
    views.require_handler(request)
    found = await _request_or_404(request)
    service = request.app[REQUESTS]
    history = await views.db(service.history, found.id)
    notifications = await views.db(service.notifications, found.id)
    accounts = request.app[_keys().ACCOUNTS]
    return _render(
        request, "reports/detail.html", status=status, title=f"{catalog.KIND_LABELS[found.kind]} {found.reference}",
        item=found, photos=photos_of(found), history=history, notifications=notifications,
        names=await views.db(accounts.names), colleagues=await views.db(accounts.colleagues, -1),
        error=error, statuses_order=REQUEST_STATUSES,
    )


async def assign(request: web.Request) -> web.Response:
    agent: SignedIn = views.require_handler(request)
    found = await _request_or_404(request)
    form = await request.post()
    target = str(form.get("agent", ""))
    agent_id: int | None
    if target == "me":
        agent_id = agent.agent_id
    elif target in ("", "none"):
        agent_id = None
    else:
        colleagues = {a.id for a in await views.db(request.app[_keys().ACCOUNTS].colleagues, -1)}
        agent_id = int(target) if target.isdigit() and int(target) in colleagues else -1
        if agent_id == -1:
            return views.refuse(request, 400, "Choisissez un·e agent·e de la liste.")
    if not await views.db(request.app[REQUESTS].assign, found.id, agent_id, agent.agent_id):
        return views.refuse(request, 409, "L'attribution a changé entre-temps : rechargez la page.")
    return views.done(request, f"/signalements/{found.id}", assigned_to=agent_id)


async def change_status(request: web.Request) -> web.Response:
    agent: SignedIn = views.require_handler(request)
    found = await _request_or_404(request)
    form = await request.post()
    new_status, expected = str(form.get("status", "")), str(form.get("expected", found.status))
    message = str(form.get("message", "")).strip()
    if len(message) > MAX_MESSAGE_CHARS:
        return views.refuse(request, 400, f"Le message dépasse {MAX_MESSAGE_CHARS} caractères.")
    if new_status not in REQUEST_STATUSES:
        return views.refuse(request, 400, "Choisissez un statut de la liste.")
    try:
        notification = await views.db(
            request.app[REQUESTS].change_status, found.id, expected, new_status, agent.agent_id, message,
            status_text(found, new_status, message),
        )
    except RequestError as exc:
        return views.refuse(request, 409, str(exc))
    outcome = notification.status if notification else ""
    if notification is not None and notification.status == "pending":
        outcome = await request.app[NOTIFIER].deliver(notification) or "pending"
    logger.info("Request %s: %s -> %s by agent %s (citizen notification: %s)",
                found.reference, expected, new_status, agent.agent_id, outcome)
    return views.done(request, f"/signalements/{found.id}#notifications", status=new_status, notification=outcome)


async def retry_notification(request: web.Request) -> web.Response:
    """Sends a not-delivered message again (e.g. the citizen has written since)."""
    views.require_handler(request)
    found = await _request_or_404(request)
    try:
        notification_id = int(request.match_info["nid"])
    except ValueError as exc:
        raise web.HTTPNotFound() from exc
    service = request.app[REQUESTS]
    notification = await views.db(service.notification, notification_id)
    if notification is None or notification.request_id != found.id:
        raise web.HTTPNotFound(text="Message introuvable.")
    if notification.status not in ("not_delivered", "failed") or not notification.conversation_id:
        return views.refuse(request, 409, "Ce message ne peut pas être renvoyé.")
    await views.db(service.record_delivery, notification.id, "pending", None, None)
    refreshed = await views.db(service.notification, notification.id)
    outcome = await request.app[NOTIFIER].deliver(refreshed) if refreshed else ""
    return views.done(request, f"/signalements/{found.id}#notifications", notification=outcome)


# Personal data (admins) ---------------------------------------------------------------------------
async def privacy_page(request: web.Request, message: str = "", error: str = "", status: int = 200) -> web.Response:
    views.require_admin(request)
    settings = request.app[_keys().SETTINGS]
    return _render(
        request, "reports/privacy.html", status=status, title="Données personnelles", message=message,
        error=error, retention=retention_text(settings.retention_days), retention_days=settings.retention_days,
        purge_hours=settings.purge_interval_hours,
    )


def _conversation(form_or_query: Any) -> str:
    return str(form_or_query.get("conversation", "")).strip()[:255]


async def privacy_export(request: web.Request) -> web.Response:
    admin: SignedIn = views.require_admin(request)
    conversation = _conversation(request.query)
    if not conversation:
        return await privacy_page(request, error="Indiquez l'identifiant de la conversation.", status=400)
    data = await views.db(export_conversation, request.app[_keys().SETTINGS].database_url, conversation)
    logger.info("Personal data of a conversation exported by admin %s", admin.agent_id)
    return web.Response(
        body=json.dumps(data, ensure_ascii=False, indent=2).encode("utf-8"), content_type="application/json",
        charset="utf-8", headers={"Content-Disposition": 'attachment; filename="donnees-conversation.json"'},
    )


async def privacy_erase(request: web.Request) -> web.Response:
    admin: SignedIn = views.require_admin(request)
    form = await request.post()
    conversation = _conversation(form)
    if not conversation or form.get("confirm") != "1":
        return await privacy_page(request, error="Indiquez la conversation et cochez la confirmation.", status=400)
    settings = request.app[_keys().SETTINGS]
    await views.db(request_erasure, settings.database_url, conversation, "", settings.erase_grace_seconds, "staff")
    logger.info("Erasure of a conversation requested by admin %s", admin.agent_id)
    return await privacy_page(request, message="Effacement enregistré : les données de la conversation sont "
                                                "anonymisées, ses messages seront supprimés dans quelques instants.")


async def privacy_purge(request: web.Request) -> web.Response:
    admin: SignedIn = views.require_admin(request)
    settings = request.app[_keys().SETTINGS]
    counts = await views.db(purge_expired, settings.database_url, settings.retention_days)
    logger.info("Retention purge run by admin %s: %s", admin.agent_id, counts)
    return await privacy_page(request, message=(
        f"Purge effectuée : {counts['conversations']} conversation(s) supprimée(s), "
        f"{counts['requests']} demande(s) anonymisée(s)."))


# Background ----------------------------------------------------------------------------------------
async def _worker(app: web.Application) -> None:
    privacy = PrivacyJobs(app[_keys().SETTINGS])
    last_privacy = 0.0
    loop = asyncio.get_running_loop()
    while True:
        try:
            await app[NOTIFIER].send_due()
            if loop.time() - last_privacy >= PRIVACY_INTERVAL:
                last_privacy = loop.time()
                await privacy.tick()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the job must survive a database or Rasa hiccup
            logger.exception("Reports and privacy job failed")
        await asyncio.sleep(WORKER_INTERVAL)


async def _run_worker(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.get_running_loop().create_task(_worker(app))
    yield
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


def setup(app: web.Application, run_worker: bool = True) -> None:
    """Adds the pages, and the background job unless `run_worker` is False (tests)."""
    keys = _keys()
    service = get_request_service(app[keys.SETTINGS].database_url)
    app[REQUESTS] = service
    app[NOTIFIER] = Notifier(service, app[keys.RASA])
    app.router.add_get("/signalements", list_page)
    app.router.add_get("/signalements/export.csv", export_csv)
    app.router.add_get("/signalements/{id:\\d+}", detail_page)
    app.router.add_post("/signalements/{id:\\d+}/assign", assign)
    app.router.add_post("/signalements/{id:\\d+}/status", change_status)
    app.router.add_post("/signalements/{id:\\d+}/notifications/{nid:\\d+}/retry", retry_notification)
    app.router.add_get("/confidentialite", privacy_page)
    app.router.add_get("/confidentialite/export", privacy_export)
    app.router.add_post("/confidentialite/erase", privacy_erase)
    app.router.add_post("/confidentialite/purge", privacy_purge)
    if run_worker:
        app.cleanup_ctx.append(_run_worker)

