"""The console's FAQ editor pages (editors and admins): topics, questions and answers,
unanswered questions, publication of a new model, spreadsheets, audit log, dashboard.

The work is done by bot/faq (docs/faq-editing.md); these views only call it in a thread
(file and database work blocks) and render the result. Forms are plain HTML (CSRF checked
by the app's middleware), every text is autoescaped; `Accept: application/json` gets JSON.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import secrets
import tempfile
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from bot.console.accounts import SignedIn
from bot.console.views import CHANNEL_LABELS, done, refuse, render, wants_json
from bot.faq import audit, ratings
from bot.faq.dashboard import dashboard
from bot.faq.documents import TopicData
from bot.faq.editing import EditConflict, FaqEditor, FaqError, TopicNotFound, ValidationFailed
from bot.faq.preview import preview
from bot.faq.publishing import Publisher
from bot.faq.spreadsheet import ImportPlan, apply_import, export_csv, export_xlsx, plan_import
from bot.faq.unanswered import UnansweredQuestions
from bot.settings import Settings

EDITOR = web.AppKey("faq_editor", FaqEditor)
UNANSWERED = web.AppKey("faq_unanswered", UnansweredQuestions)
PUBLISHER = web.AppKey("faq_publisher", Publisher)
IMPORTS = Path(tempfile.gettempdir()) / "guichet-faq-imports"
CHART_WIDTH = 640
BAR_HEIGHT = 22
KIND_LABELS = {"fallback": "Pas compris", "handoff": "Passé à un agent"}


def _settings(request: web.Request) -> Settings:
    from bot.console import app as application

    return request.app[application.SETTINGS]


def require_editor(request: web.Request) -> SignedIn:
    agent: SignedIn = request["agent"]
    if agent.role not in ("editor", "admin"):
        raise web.HTTPForbidden(text="Réservé aux éditeurs et administrateurs.")
    return agent


async def run(function: Any, *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(function, *args, **kwargs)


def _local(request: web.Request, value: dt.datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(ZoneInfo(_settings(request).timezone)).strftime("%d/%m/%Y %H:%M")


def page(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    return render(request, template, status=status, local=lambda v: _local(request, v),
                  percent=lambda v: "—" if v is None else f"{100 * v:.1f} %".replace(".", ","), **context)


# Topics ------------------------------------------------------------------------------------
async def topics_page(request: web.Request) -> web.Response:
    require_editor(request)
    editor = request.app[EDITOR]
    query, domain = request.query.get("q", "")[:200], request.query.get("domaine", "")
    summaries = await run(editor.summaries, query, domain)
    stats = await run(ratings.by_topic, editor.database_url)
    if wants_json(request):
        return web.json_response({"topics": [
            {**s.topic.as_dict(), "changed_by": s.changed_by, "changed_at": s.changed_at.isoformat() if s.changed_at else None}
            for s in summaries]})
    return page(request, "faq/topics.html", title="FAQ", summaries=summaries, query=query, domain=domain,
                domains=await run(editor.domains), stats=stats)


def _form_topic(topic: TopicData, form: Any) -> dict[str, Any]:
    return {
        "title": form.get("title", topic.title), "label": form.get("label", topic.label),
        "answer": form.get("answer", topic.answer),
        "examples": form.get("examples", "\n".join(topic.examples)),
        "version": form.get("version", topic.version),
    }


async def topic_page(request: web.Request, form: Any = None, issues: list | None = None, message: str = "",
                     status: int = 200, shown: Any = None) -> web.Response:
    require_editor(request)
    editor = request.app[EDITOR]
    topic_id = request.match_info["id"]
    try:
        topic = await run(editor.topic, topic_id)
    except TopicNotFound as exc:
        return refuse(request, 404, str(exc))
    values = _form_topic(topic, form or {})
    if wants_json(request) and request.method == "GET":
        return web.json_response(topic.as_dict())
    shown = shown or await run(preview, values["answer"], editor.commune, topic_id)
    history = await run(audit.history, editor.database_url, topic_id, 20)
    rating = (await run(ratings.by_topic, editor.database_url)).get(topic_id)
    return page(request, "faq/topic.html", status=status, title=topic.title or topic.id, topic=topic, form=values,
                issues=issues or [], message=message, message_error=status >= 400, preview=shown, history=history,
                rating=rating)


def _lines(text: str) -> list[str]:
    return [line for line in str(text).splitlines() if line.strip()]


async def save_topic(request: web.Request) -> web.Response:
    agent = require_editor(request)
    editor = request.app[EDITOR]
    topic_id = request.match_info["id"]
    form = await request.post()
    values = {k: str(form.get(k, "")) for k in ("title", "label", "answer", "examples", "version")}
    if form.get("action") == "preview":
        shown = await run(preview, values["answer"], editor.commune, topic_id)
        return await topic_page(request, values, shown=shown)
    try:
        result = await run(
            editor.save_form, topic_id, agent.username, values["version"], answer=values["answer"],
            examples=_lines(values["examples"]), title=values["title"], label=values["label"],
        )
    except ValidationFailed as exc:
        if wants_json(request):
            return web.json_response({"ok": False, "issues": [i.as_dict() for i in exc.issues]}, status=422)
        return await topic_page(request, values, exc.issues, "Rien n'a été enregistré : corrigez les points ci-dessous.", 422)
    except EditConflict as exc:
        if wants_json(request):
            return web.json_response({"ok": False, "error": str(exc), "current": exc.current.as_dict()}, status=409)
        # The current version is shown; the editor's text stays in the form, on the new version.
        values["version"] = exc.current.version
        return await topic_page(request, values, [], str(exc), 409)
    except FaqError as exc:
        return refuse(request, 400, str(exc))
    if wants_json(request):
        return web.json_response({"ok": True, "version": result.topic.version if result.topic else None,
                                  "warnings": [w.as_dict() for w in result.warnings]})
    note = "Enregistré : la nouvelle réponse est déjà celle que reçoivent les usagers."
    if result.warnings:
        note += " À vérifier : " + " ".join(w.message for w in result.warnings)
    if not result.written:
        note = "Aucun changement à enregistrer."
    return await topic_page(request, None, [], note)


async def delete_topic(request: web.Request) -> web.Response:
    agent = require_editor(request)
    form = await request.post()
    try:
        await run(request.app[EDITOR].remove_topic, request.match_info["id"], agent.username, str(form.get("version", "")))
    except FaqError as exc:
        return refuse(request, 409, str(exc))
    return done(request, "/faq")


async def new_topic_page(request: web.Request, form: Any = None, issues: list | None = None,
                         status: int = 200) -> web.Response:
    require_editor(request)
    editor = request.app[EDITOR]
    values = dict(form or {})
    if not values and request.query.getall("question", []):
        values = {"examples": "\n".join(request.query.getall("question")), "from_unanswered": "1"}
    return page(request, "faq/new_topic.html", status=status, title="Nouveau sujet", form=values,
                issues=issues or [], domains=await run(editor.domains))


async def create_topic(request: web.Request) -> web.Response:
    agent = require_editor(request)
    editor = request.app[EDITOR]
    form = await request.post()
    values = {k: str(form.get(k, "")).strip() for k in ("id", "domain", "title", "label", "answer", "examples",
                                                         "from_unanswered")}
    try:
        result = await run(editor.add_topic, agent.username, values["id"], values["domain"], values["title"],
                           values["answer"], _lines(values["examples"]), label=values["label"])
    except ValidationFailed as exc:
        if wants_json(request):
            return web.json_response({"ok": False, "issues": [i.as_dict() for i in exc.issues]}, status=422)
        return await new_topic_page(request, values, exc.issues, 422)
    if values["from_unanswered"]:
        await run(request.app[UNANSWERED].topic_created, _lines(values["examples"]), result.topic.id, agent.username)
    return done(request, f"/faq/topics/{result.topic.id}", topic=result.topic.id)


# Unanswered questions --------------------------------------------------------------------------
async def unanswered_page(request: web.Request, message: str = "", issues: list | None = None,
                          status: int = 200) -> web.Response:
    require_editor(request)
    days = max(1, min(int(request.query.get("jours", "90") or 90), 365))
    groups = await run(request.app[UNANSWERED].groups, days)
    if wants_json(request) and request.method == "GET":
        return web.json_response({"groups": [
            {"id": g.id, "label": g.label, "count": g.count, "texts": g.texts, "kinds": g.kinds,
             "channels": g.channels, "suggested_topic": g.suggested_topic} for g in groups]})
    topics = await run(request.app[EDITOR].topics)
    return page(request, "faq/unanswered.html", status=status, title="Questions sans réponse", groups=groups,
                topics=topics, days=days, message=message, message_error=status >= 400, issues=issues or [],
                kind_labels=KIND_LABELS)


async def unanswered_action(request: web.Request) -> web.Response:
    agent = require_editor(request)
    form = await request.post()
    texts = [str(t) for t in form.getall("text", []) if str(t).strip()]
    action = request.match_info["action"]
    if not texts:
        return await unanswered_page(request, "Cochez au moins une question.", status=400)
    unanswered = request.app[UNANSWERED]
    if action == "dismiss":
        count = await run(unanswered.dismiss, texts, agent.username)
        return done(request, "/faq/unanswered", dismissed=count) if wants_json(request) else \
            await unanswered_page(request, f"{count} question(s) écartée(s).")
    if action == "new":
        query = "&".join(f"question={_quote(t)}" for t in texts[:50])
        raise web.HTTPSeeOther(f"/faq/new?{query}")
    topic_id = str(form.get("topic", ""))
    try:
        await run(unanswered.add_to_topic, texts, topic_id, agent.username)
    except ValidationFailed as exc:
        if wants_json(request):
            return web.json_response({"ok": False, "issues": [i.as_dict() for i in exc.issues]}, status=422)
        return await unanswered_page(request, "Rien n'a été ajouté :", exc.issues, 422)
    except FaqError as exc:
        return refuse(request, 400, str(exc))
    return done(request, "/faq/unanswered", added=len(texts)) if wants_json(request) else await unanswered_page(
        request, f"{len(texts)} question(s) ajoutée(s) au sujet « {topic_id} ». Publiez pour que le robot les reconnaisse.")


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


# Publication -------------------------------------------------------------------------------------
async def publish_page(request: web.Request, message: str = "", status: int = 200) -> web.Response:
    require_editor(request)
    publisher = request.app[PUBLISHER]
    history = await run(publisher.history)
    running = next((p for p in history if p.running), None)
    if wants_json(request) and request.method == "GET":
        return web.json_response({"running": running.as_dict() if running else None,
                                  "history": [p.as_dict() for p in history]})
    return page(request, "faq/publish.html", status=status, title="Publier", history=history, running=running,
                message=message)


async def publish_start(request: web.Request) -> web.Response:
    agent = require_editor(request)
    try:
        job = await run(request.app[PUBLISHER].start, agent.username)
    except FaqError as exc:
        return refuse(request, 409, str(exc))
    return done(request, "/faq/publish", publication=job.id)


async def publish_status(request: web.Request) -> web.Response:
    require_editor(request)
    job = await run(request.app[PUBLISHER].get, int(request.match_info["id"]))
    if job is None:
        raise web.HTTPNotFound(text="Publication inconnue.")
    return web.json_response(job.as_dict())


async def publish_rollback(request: web.Request) -> web.Response:
    agent = require_editor(request)
    try:
        job = await run(request.app[PUBLISHER].rollback, int(request.match_info["id"]), agent.username)
    except FaqError as exc:
        return refuse(request, 409, str(exc))
    return done(request, "/faq/publish", publication=job.id)


# Spreadsheets -------------------------------------------------------------------------------------
async def export(request: web.Request) -> web.Response:
    require_editor(request)
    kind = request.match_info["kind"]
    topics = (await run(request.app[EDITOR].topics)).values()
    data = await run(export_csv if kind == "csv" else export_xlsx, topics)
    content_type = "text/csv" if kind == "csv" else "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    name = f"faq-{dt.date.today():%Y-%m-%d}.{kind}"
    return web.Response(body=data, content_type=content_type,
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})


async def import_page(request: web.Request) -> web.Response:
    require_editor(request)
    return page(request, "faq/import.html", title="Importer un tableur", plan=None, token="", error="")


async def import_preview(request: web.Request) -> web.Response:
    require_editor(request)
    form = await request.post()
    upload = form.get("file")
    if not isinstance(upload, web.FileField):
        return page(request, "faq/import.html", status=400, title="Importer un tableur", plan=None, token="",
                    error="Choisissez un fichier .csv ou .xlsx.")
    data, filename = upload.file.read(), Path(upload.filename or "faq.csv").name
    try:
        plan: ImportPlan = await run(plan_import, request.app[EDITOR], data, filename)
    except FaqError as exc:
        return page(request, "faq/import.html", status=400, title="Importer un tableur", plan=None, token="", error=str(exc))
    token = ""
    if plan.applicable and plan.changes:
        token = secrets.token_urlsafe(16)
        IMPORTS.mkdir(parents=True, exist_ok=True, mode=0o700)
        (IMPORTS / f"{token}.bin").write_bytes(data)
        (IMPORTS / f"{token}.json").write_text(json.dumps({
            "filename": filename, "versions": {c.topic_id: c.base_version for c in plan.changes}}))
    if wants_json(request):
        return web.json_response({**plan.as_dict(), "token": token})
    return page(request, "faq/import.html", title="Importer un tableur", plan=plan, token=token, error="")


async def import_apply(request: web.Request) -> web.Response:
    agent = require_editor(request)
    form = await request.post()
    token = str(form.get("token", ""))
    if not token.replace("-", "").replace("_", "").isalnum() or not (IMPORTS / f"{token}.bin").exists():
        return refuse(request, 400, "Cet aperçu a expiré : importez le fichier à nouveau.")
    data = (IMPORTS / f"{token}.bin").read_bytes()
    saved = json.loads((IMPORTS / f"{token}.json").read_text())
    editor = request.app[EDITOR]
    plan = await run(plan_import, editor, data, saved["filename"])
    if {c.topic_id: c.base_version for c in plan.changes} != saved["versions"]:
        return refuse(request, 409, "La FAQ a changé depuis l'aperçu : importez le fichier à nouveau pour voir "
                                    "les changements à jour.")
    try:
        changed = await run(apply_import, editor, plan, agent.username)
    except FaqError as exc:
        return refuse(request, 409, str(exc))
    finally:
        for suffix in (".bin", ".json"):
            (IMPORTS / f"{token}{suffix}").unlink(missing_ok=True)
    return done(request, "/faq/audit", changed=changed)


# Audit and dashboard --------------------------------------------------------------------------------
async def audit_page(request: web.Request) -> web.Response:
    require_editor(request)
    changes = await run(audit.history, request.app[EDITOR].database_url, request.query.get("sujet") or None, 200)
    if wants_json(request):
        return web.json_response({"changes": [
            {"at": c.at.isoformat(), "actor": c.actor, "action": c.action, "topic": c.topic_id, "summary": c.summary}
            for c in changes]})
    return page(request, "faq/audit.html", title="Journal des modifications", changes=changes)


def _bars(items: list[tuple[str, int]]) -> dict[str, Any]:
    top = max([n for _, n in items] or [1]) or 1
    label_width = 200
    bars = [{"label": label, "count": n, "y": i * (BAR_HEIGHT + 8),
             "width": int((CHART_WIDTH - label_width - 60) * n / top), "label_width": label_width}
            for i, (label, n) in enumerate(items)]
    return {"bars": bars, "width": CHART_WIDTH, "height": max(1, len(items)) * (BAR_HEIGHT + 8), "bar_height": BAR_HEIGHT}


def _columns(items: list[tuple[str, int]], height: int = 180) -> dict[str, Any]:
    """A column chart (time series): one column per day, or per month over long periods."""
    top = max([n for _, n in items] or [1]) or 1
    step = (CHART_WIDTH - 40) / max(len(items), 1)
    every = max(1, round(len(items) / 12))  # at most ~12 labels under the axis
    columns = [{"label": label, "count": n, "x": 40 + i * step, "width": max(step * 0.7, 1),
                "height": (height - 30) * n / top, "y": height - 20 - (height - 30) * n / top,
                "show_label": i % every == 0} for i, (label, n) in enumerate(items)]
    return {"columns": columns, "width": CHART_WIDTH, "height": height, "top": top, "axis": height - 20}


def _per_period(per_day: list[dict[str, Any]], days: int) -> list[tuple[str, int]]:
    if days <= 62:
        return [(d["day"][8:10] + "/" + d["day"][5:7], d["total"]) for d in per_day]
    months: dict[str, int] = {}
    for d in per_day:
        key = d["day"][5:7] + "/" + d["day"][:4]
        months[key] = months.get(key, 0) + d["total"]
    return list(months.items())


async def dashboard_page(request: web.Request) -> web.Response:
    require_editor(request)
    settings = _settings(request)
    days = max(1, min(int(request.query.get("jours", "30") or 30), 365))
    board = await run(dashboard, settings.database_url, days, settings.timezone)
    if wants_json(request):
        return web.json_response(board.as_dict())
    topics = await run(request.app[EDITOR].topics)
    title = {t: (topics[t].title if t in topics else t) for t, _ in board.top_topics}
    return page(request, "faq/dashboard.html", title="Tableau de bord", board=board, days=days, titles=title,
                topics=topics,
                per_day_chart=_columns(_per_period(board.per_day, days)), per_month=days > 62,
                topics_chart=_bars([(title[t], n) for t, n in board.top_topics]),
                channels_chart=_bars([(CHANNEL_LABELS.get(c, c), n) for c, n in board.channels.items()]))


def setup(app: web.Application) -> None:
    from bot.console import app as application

    settings = app[application.SETTINGS]
    editor = FaqEditor.from_settings()
    app[EDITOR] = editor
    app[UNANSWERED] = UnansweredQuestions(settings.database_url, editor)
    app[PUBLISHER] = Publisher.from_settings()
    app.router.add_get("/faq", topics_page)
    app.router.add_get("/faq/new", new_topic_page)
    app.router.add_post("/faq/new", create_topic)
    app.router.add_get("/faq/topics/{id}", topic_page)
    app.router.add_post("/faq/topics/{id}", save_topic)
    app.router.add_post("/faq/topics/{id}/delete", delete_topic)
    app.router.add_get("/faq/unanswered", unanswered_page)
    app.router.add_post("/faq/unanswered/{action:add|dismiss|new}", unanswered_action)
    app.router.add_get("/faq/publish", publish_page)
    app.router.add_post("/faq/publish", publish_start)
    app.router.add_get("/faq/publish/{id:\\d+}", publish_status)
    app.router.add_post("/faq/publish/{id:\\d+}/rollback", publish_rollback)
    app.router.add_get("/faq/export.{kind:csv|xlsx}", export)
    app.router.add_get("/faq/import", import_page)
    app.router.add_post("/faq/import", import_preview)
    app.router.add_post("/faq/import/apply", import_apply)
    app.router.add_get("/faq/audit", audit_page)
    app.router.add_get("/faq/dashboard", dashboard_page)
