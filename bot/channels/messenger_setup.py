"""Configure the Facebook Page's Messenger profile: Get Started button, greeting, menu.

    python -m bot.channels.messenger_setup             # apply
    python -m bot.channels.messenger_setup --dry-run   # print the profile, send nothing
    python -m bot.channels.messenger_setup --show      # what the Page has now
    python -m bot.channels.messenger_setup --delete    # remove the three properties

One `POST /<version>/me/messenger_profile` with the Page token (GUICHET_MESSENGER_PAGE_TOKEN;
GUICHET_GRAPH_API_URL / _VERSION as for the channel). Meta allows 10 profile calls per
10 minutes per Page. Messenger Profile API facts (copied from Meta's docs): the greeting
is 160 characters at most and needs a `default` locale; the persistent menu needs a Get
Started button, one `default` locale, at most 20 items (`postback` | `web_url`, titles of
30 characters, payloads of 1000); the Get Started tap arrives as a postback.

The menu offers the FAQ themes (the domains of bot/faq/catalog.yml) as postbacks
`/faq{"faq_theme":"<domain>"}` (action_faq answers with the theme's topics as quick
replies), the town hall's website, and "Parler à un agent" (`/human_handoff`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from typing import Any

import yaml

from bot.channels.graph_client import GraphApiError, GraphClient
from bot.channels.meta_channel import GET_STARTED
from bot.commune import Commune, load_commune
from bot.settings import Settings, get_settings

GREETING_MAX = 160
MENU_ITEMS_MAX = 20
MENU_TITLE_MAX = 30
AGENT_TITLE = "Parler à un agent"
AGENT_PAYLOAD = "/human_handoff"
THEME_INTENT, THEME_ENTITY = "faq", "faq_theme"
# Menu titles of the catalog's domains (a domain missing here gets a title from its id).
DOMAIN_TITLES = {
    "etat_civil": "État civil et papiers",
    "elections": "Élections",
    "mairie": "La mairie : horaires, contact",
    "enfance": "Enfance, école, cantine",
    "dechets": "Déchets et collecte",
    "urbanisme": "Urbanisme et travaux",
    "voirie_securite": "Voirie et sécurité",
    "social": "Solidarité et social",
    "vie_locale": "Vie locale et associations",
    "fiscalite_paiements": "Impôts et paiements",
    "autres": "Autres questions",
}


def domain_title(domain: str) -> str:
    title = DOMAIN_TITLES.get(domain) or domain.replace("_", " ").capitalize()
    return title[:MENU_TITLE_MAX]


def theme_payload(domain: str) -> str:
    return "/" + THEME_INTENT + json.dumps({THEME_ENTITY: domain}, separators=(",", ":"))


def greeting_text(commune: Commune) -> str:
    """The French greeting shown before the first message (<= 160 characters)."""
    candidates = [
        f"Bonjour ! Je suis l'assistant automatique de la mairie de {commune.name}. "
        f"Pour parler à une personne, écrivez « agent » ou appelez le {commune.phone}.",
        f"Bonjour ! Je suis l'assistant automatique de la mairie de {commune.name}. "
        "Pour parler à une personne, écrivez « agent ».",
        "Bonjour ! Je suis l'assistant automatique de la mairie. "
        "Pour parler à une personne, écrivez « agent ».",
    ]
    return next(text for text in candidates if len(text) <= GREETING_MAX)


def menu_actions(domains: list[str], website: str = "") -> list[dict[str, Any]]:
    actions: list[dict[str, Any]] = [
        {"type": "postback", "title": domain_title(d), "payload": theme_payload(d)} for d in domains
    ]
    reserved = 1 + (1 if website else 0)
    actions = actions[: MENU_ITEMS_MAX - reserved]
    if website:
        actions.append({"type": "web_url", "title": "Site de la mairie", "url": website,
                        "webview_height_ratio": "full"})
    actions.append({"type": "postback", "title": AGENT_TITLE, "payload": AGENT_PAYLOAD})
    return actions


def catalog_domains(settings: Settings) -> list[str]:
    """The catalog's domains in file order (read directly: channels import no FAQ code)."""
    data = yaml.safe_load(settings.catalog_file.read_text(encoding="utf-8")) or {}
    return [str(domain) for domain, topics in data.items() if topics]


def build_profile(commune: Commune | None = None, domains: list[str] | None = None) -> dict[str, Any]:
    commune = commune or load_commune()
    domains = domains if domains is not None else catalog_domains(get_settings())
    website = str(commune.facts.get("mairie", {}).get("site_web") or "")
    return {
        "get_started": {"payload": GET_STARTED},
        "greeting": [{"locale": "default", "text": greeting_text(commune)}],
        "persistent_menu": [{
            "locale": "default",
            "composer_input_disabled": False,
            "call_to_actions": menu_actions(domains, website if website.startswith("http") else ""),
        }],
    }


def client_for(settings: Settings) -> GraphClient:
    return GraphClient(
        settings.messenger_page_token,
        base_url=settings.graph_api_url,
        version=settings.graph_api_version,
        timeout=settings.graph_timeout,
        max_attempts=settings.graph_max_attempts,
        backoff_base=settings.graph_backoff,
        name="messenger_setup",
    )


async def apply(profile: dict[str, Any], settings: Settings) -> Any:
    client = client_for(settings)
    try:
        return await client.post("me/messenger_profile", profile)
    finally:
        await client.close()


async def show(settings: Settings) -> Any:
    client = client_for(settings)
    try:
        return await client.get("me/messenger_profile", {"fields": "get_started,greeting,persistent_menu"})
    finally:
        await client.close()


async def delete(settings: Settings) -> Any:
    client = client_for(settings)
    try:
        return await client.delete("me/messenger_profile", {"fields": ["persistent_menu", "greeting", "get_started"]})
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--dry-run", action="store_true", help="print the profile, send nothing")
    group.add_argument("--show", action="store_true", help="print the Page's current profile")
    group.add_argument("--delete", action="store_true", help="remove Get Started, greeting and menu")
    args = parser.parse_args(argv)
    settings = get_settings()
    profile = build_profile()
    if args.dry_run:
        print(json.dumps(profile, ensure_ascii=False, indent=2))
        return 0
    if not settings.messenger_page_token:
        print("GUICHET_MESSENGER_PAGE_TOKEN is not set (see .env.example)", file=sys.stderr)
        return 2
    try:
        if args.show:
            result = asyncio.run(show(settings))
        elif args.delete:
            result = asyncio.run(delete(settings))
        else:
            result = asyncio.run(apply(profile, settings))
    except GraphApiError as error:
        print(f"Messenger profile not updated: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
