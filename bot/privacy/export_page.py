"""The page a citizen's "mes données" link opens: their data, readable on a phone, and
the same as a JSON file (bot/privacy/data.py `export_conversation`).

Everything shown is escaped (Jinja2 autoescape: messages may hold HTML or scripts) and
the page runs no script at all (its Content-Security-Policy forbids them)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape

from bot.commune import Commune

TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"),
    autoescape=select_autoescape(default=True),
)
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the link is the key: never sent to another site
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
}
# What the "other" tables of the export are, for a citizen.
OTHER_LABELS = {
    "guichet_subscribers": "Abonnement aux alertes",
    "guichet_messenger_optins": "Accord pour recevoir des messages Messenger",
    "guichet_deliveries": "Message d'information envoyé",
    "guichet_delivery_receipts": "Accusé de réception",
    "guichet_answer_ratings": "Avis sur une réponse",
}
AUTHORS = {"usager": "Vous", "assistant": "Assistant", "agent": "Agent de la mairie"}


def local_time(value: str | None, timezone: str) -> str:
    """An ISO timestamp (UTC) as the citizen's local date and time, "03/12/2026 à 14:05"."""
    if not value:
        return ""
    moment = dt.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(ZoneInfo(timezone)).strftime("%d/%m/%Y à %H:%M")


def render_page(data: dict[str, Any], commune: Commune, expires_at: dt.datetime, timezone: str,
                dpo: str, privacy: str, data_file: str) -> str:
    other = [
        {"label": OTHER_LABELS.get(table, table.removeprefix("guichet_").replace("_", " ")), "rows": rows}
        for table, rows in data["other"].items()
    ]
    return TEMPLATES.get_template("export.html").render(
        data=data, data_file=data_file, commune=commune, other=other, authors=AUTHORS, dpo=dpo, privacy=privacy,
        exported=local_time(data["exported_at"], timezone),
        expires=local_time(expires_at.replace(tzinfo=dt.timezone.utc).isoformat(), timezone),
        when=lambda value: local_time(value, timezone),
    )


def render_json(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2)


def render_unavailable(commune: Commune, expired: bool) -> str:
    """The page of an unknown or expired link (`expired`), or of a database that is down."""
    return TEMPLATES.get_template("export_unavailable.html").render(commune=commune, expired=expired)
