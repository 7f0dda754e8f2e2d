"""Configuration from the environment (a `.env` file is read if present).

Every tunable of the project is read here, once, so that the rest of the code never
touches `os.environ` directly. `.env.example` documents each variable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dotenv import load_dotenv

PROJECT_ROOT = Path(__file__).resolve().parent.parent

load_dotenv(PROJECT_ROOT / ".env", override=False)


def _path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


def _str(*names: str, default: str = "") -> str:
    """The first of these variables that is set and not blank, stripped; else `default`."""
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return default


def _list(name: str, default: str = "") -> tuple[str, ...]:
    """A comma-separated variable, without blanks."""
    return tuple(item.strip() for item in _str(name, default=default).split(",") if item.strip())


def _float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


@dataclass(frozen=True)
class Settings:
    """Runtime settings; build with `Settings.from_env()`."""

    commune_file: Path
    faq_dir: Path
    catalog_file: Path
    # Below this FAQ-topic confidence an FAQ answer is not given: the citizen is
    # offered the likely topics instead (tuned with `make eval`).
    faq_min_confidence: float
    # Bearer token for the `api` REST channel; the channel refuses every request if unset.
    api_token: str
    # Telegram: the bot token from @BotFather, the webhook secret Telegram echoes in
    # `X-Telegram-Bot-Api-Secret-Token`, the Bot API base URL (a local simulator in
    # tests) and the public HTTPS URL of the webhook given to `setWebhook` at start-up.
    telegram_token: str = ""
    telegram_webhook_secret: str = ""
    telegram_api_url: str = "https://api.telegram.org"
    telegram_webhook_url: str = ""
    # Web chat: origins (scheme://host[:port]) allowed to open the Socket.IO connection,
    # besides the assistant's own address; "*" allows any site.
    webchat_origins: tuple[str, ...] = ()

    # Handoff and agent console (bot/handoff, bot/console). The project's database holds
    # Rasa's tracker store too: SQLite file var/guichet.db unless a URL is given.
    database_url: str = ""
    rasa_url: str = "http://127.0.0.1:5005"
    rasa_token: str = ""
    console_host: str = "127.0.0.1"
    console_port: int = 5080
    # Secure cookies (HTTPS only): set when the console is served behind HTTPS.
    console_https: bool = False
    # A queued citizen nobody claims within this many seconds gets the callback offer back.
    handoff_queue_timeout: float = 600.0
    # An online agent whose console has not been seen for this long counts as offline.
    agent_presence_timeout: float = 90.0
    # Minutes an agent spends per conversation, for the expected wait when no history.
    handoff_minutes_per_conversation: float = 4.0
    # FAQ topics always handed to a person after the answer (emergencies, complaints).
    always_human_topics: tuple[str, ...] = ("urgence", "reclamation")
    timezone: str = "Europe/Paris"
    # Regional public holidays (holidays library subdivision, e.g. "57" for Moselle).
    holidays_subdivision: str = ""
    # Tests only: the local time ("2026-03-03T10:00") used for opening-hours decisions.
    now_override: str = ""
    # WhatsApp Cloud API (bot/channels/whatsapp.py): the system user's access token, the
    # Meta app secret (webhook signatures), the webhook verify token chosen in the app
    # dashboard, the business phone number id, and the API base URL and version (a local
    # simulator in tests). The channel refuses every webhook while a secret is missing.
    whatsapp_access_token: str = ""
    whatsapp_app_secret: str = ""
    whatsapp_verify_token: str = ""
    whatsapp_phone_number_id: str = ""
    whatsapp_api_url: str = "https://graph.facebook.com"
    whatsapp_api_version: str = "v26.0"
    # Seconds before a send is abandoned (then retried by the Graph client).
    whatsapp_api_timeout: float = 10.0
    # Messenger and Instagram (bot/channels/messenger.py, instagram.py): the Page access
    # token, the Meta app secret (X-Hub-Signature-256) and the webhook verify token. The
    # Instagram ones default to the Messenger ones (Instagram messaging through the Page).
    # A channel refuses every webhook (403) while one of them is missing.
    messenger_page_token: str = ""
    messenger_app_secret: str = ""
    messenger_verify_token: str = ""
    instagram_access_token: str = ""
    instagram_app_secret: str = ""
    instagram_verify_token: str = ""
    # Graph API used by the Messenger and Instagram channels (a local simulator in tests):
    # base URL, version, per-call timeout (s), attempts per call and first backoff (s).
    graph_api_url: str = "https://graph.facebook.com"
    graph_api_version: str = "v26.0"
    graph_timeout: float = 10.0
    graph_max_attempts: int = 4
    graph_backoff: float = 0.5

    # FAQ publication (bot/faq/publishing.py): every Rasa server that must receive a newly
    # published model (comma-separated base URLs; default: rasa_url), and the drop of FAQ
    # accuracy accepted before a new model is refused (0: any drop refuses).
    rasa_model_urls: tuple[str, ...] = ()
    publish_tolerance: float = 0.0

    # Alerts and news (bot/broadcast, bot/outreach). Sends per second per platform (Meta:
    # 300 calls/s per Page for text; WhatsApp's throughput and Telegram's ~30 messages/s
    # are conservative defaults), calls under way at once, attempts per delivery, first
    # retry delay and its ceiling (s), and after how long a delivery left `sending` by a
    # crashed worker is checked against the platform's receipts and retried.
    broadcast_rates: tuple[tuple[str, float], ...] = (
        ("messenger", 300.0), ("instagram", 300.0), ("whatsapp", 80.0), ("telegram", 30.0))
    broadcast_concurrency: int = 16
    broadcast_max_attempts: int = 5
    broadcast_retry_base: float = 5.0
    broadcast_retry_max: float = 600.0
    broadcast_stale_after: float = 300.0
    broadcast_poll_interval: float = 2.0
    # WhatsApp outside the 24-hour window: an approved template with one body parameter
    # (the alert's text); unset, such citizens are skipped ("template required").
    whatsapp_alert_template: str = ""
    whatsapp_alert_template_language: str = "fr"
    # Rumours are answered when a question is at least this similar to a published one.
    rumour_min_similarity: float = 0.35
    # Messenger / Instagram messages handed to Rasa at once per channel (Rasa's processing
    # blocks the event loop: fewer at once keep webhook acknowledgements fast under load).
    meta_max_concurrent: int = 3
    # Personal data (bot/privacy): conversations silent for this many days are deleted (and
    # their reports anonymised) by the purge job, which the console runs every
    # `purge_interval_hours` (0: never; then run `python -m bot.privacy purge` from cron).
    # An erased conversation's tracker rows are deleted `erase_grace_seconds` after the
    # request, once Rasa has stored the turn in which the citizen asked.
    retention_days: float = 365.0
    purge_interval_hours: float = 24.0
    erase_grace_seconds: float = 10.0
    # "mes données" answers with a download link on the Rasa server's public address
    # (the one Meta and Telegram reach for webhooks), valid this many hours.
    public_url: str = "http://127.0.0.1:5005"
    # Per-sender limit on the webhook channels (bot/channels/webhook_tools.py): messages
    # at once, then per minute; beyond, messages are dropped before Rasa (0: no limit).
    sender_burst: int = 20
    sender_per_minute: float = 20.0
    # Redis shared by the replicas of a cluster (webhook de-duplication, the durable inbox
    # of bot/channels/inbox.py); empty: in memory.
    redis_url: str = ""
    # The inbox: streams per channel, and how long a dead replica keeps its streams.
    inbox_partitions: int = 8
    inbox_lease_seconds: float = 10.0
    export_link_hours: float = 24.0

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            commune_file=_path("GUICHET_COMMUNE_FILE", PROJECT_ROOT / "commune.yml"),
            faq_dir=_path("GUICHET_FAQ_DIR", PROJECT_ROOT / "data" / "faq"),
            catalog_file=_path("GUICHET_CATALOG_FILE", PROJECT_ROOT / "bot" / "faq" / "catalog.yml"),
            faq_min_confidence=_float("GUICHET_FAQ_MIN_CONFIDENCE", 0.2),
            api_token=_str("GUICHET_API_TOKEN"),
            telegram_token=_str("GUICHET_TELEGRAM_TOKEN"),
            telegram_webhook_secret=_str("GUICHET_TELEGRAM_WEBHOOK_SECRET"),
            telegram_api_url=_str("GUICHET_TELEGRAM_API_URL", default="https://api.telegram.org"),
            telegram_webhook_url=_str("GUICHET_TELEGRAM_WEBHOOK_URL"),
            webchat_origins=tuple(o.rstrip("/") for o in _list("GUICHET_WEBCHAT_ORIGINS")),
            database_url=_str("GUICHET_DATABASE_URL", default=f"sqlite:///{PROJECT_ROOT / 'var' / 'guichet.db'}"),
            rasa_url=_str("GUICHET_RASA_URL", default=f"http://127.0.0.1:{_str('GUICHET_RASA_PORT', default='5005')}")
            .rstrip("/"),
            rasa_token=_str("GUICHET_RASA_TOKEN"),
            public_url=_str("GUICHET_PUBLIC_URL", "GUICHET_RASA_URL",
                            default=f"http://127.0.0.1:{_str('GUICHET_RASA_PORT', default='5005')}").rstrip("/"),
            export_link_hours=_float("GUICHET_EXPORT_LINK_HOURS", 24.0),
            redis_url=_str("GUICHET_REDIS_URL"),
            inbox_partitions=int(_float("GUICHET_INBOX_PARTITIONS", 8)),
            inbox_lease_seconds=_float("GUICHET_INBOX_LEASE_SECONDS", 10.0),
            sender_burst=int(_float("GUICHET_SENDER_BURST", 20)),
            sender_per_minute=_float("GUICHET_SENDER_PER_MINUTE", 20.0),
            console_host=_str("GUICHET_CONSOLE_HOST", "GUICHET_HOST", default="127.0.0.1"),
            console_port=int(_float("GUICHET_CONSOLE_PORT", 5080)),
            console_https=_str("GUICHET_CONSOLE_HTTPS").lower() in {"1", "true", "yes"},
            handoff_queue_timeout=_float("GUICHET_HANDOFF_QUEUE_TIMEOUT", 600.0),
            agent_presence_timeout=_float("GUICHET_AGENT_PRESENCE_TIMEOUT", 90.0),
            handoff_minutes_per_conversation=_float("GUICHET_HANDOFF_MINUTES_PER_CONVERSATION", 4.0),
            always_human_topics=_list("GUICHET_ALWAYS_HUMAN_TOPICS", default="urgence,reclamation"),
            timezone=_str("GUICHET_TIMEZONE", default="Europe/Paris"),
            holidays_subdivision=_str("GUICHET_HOLIDAYS_SUBDIV"),
            now_override=_str("GUICHET_NOW"),
            whatsapp_access_token=_str("GUICHET_WHATSAPP_ACCESS_TOKEN"),
            whatsapp_app_secret=_str("GUICHET_WHATSAPP_APP_SECRET"),
            whatsapp_verify_token=_str("GUICHET_WHATSAPP_VERIFY_TOKEN"),
            whatsapp_phone_number_id=_str("GUICHET_WHATSAPP_PHONE_NUMBER_ID"),
            # Unset WhatsApp API values fall back on the GUICHET_GRAPH_* ones (same host).
            whatsapp_api_url=_str("GUICHET_WHATSAPP_API_URL", "GUICHET_GRAPH_API_URL",
                                  default="https://graph.facebook.com").rstrip("/"),
            whatsapp_api_version=_str("GUICHET_WHATSAPP_API_VERSION", "GUICHET_GRAPH_API_VERSION", default="v26.0"),
            whatsapp_api_timeout=_float("GUICHET_WHATSAPP_API_TIMEOUT", _float("GUICHET_GRAPH_TIMEOUT", 10.0)),
            messenger_page_token=_str("GUICHET_MESSENGER_PAGE_TOKEN"),
            messenger_app_secret=_str("GUICHET_MESSENGER_APP_SECRET"),
            messenger_verify_token=_str("GUICHET_MESSENGER_VERIFY_TOKEN"),
            # Unset Instagram credentials fall back on Messenger's (the same Page).
            instagram_access_token=_str("GUICHET_INSTAGRAM_ACCESS_TOKEN", "GUICHET_MESSENGER_PAGE_TOKEN"),
            instagram_app_secret=_str("GUICHET_INSTAGRAM_APP_SECRET", "GUICHET_MESSENGER_APP_SECRET"),
            instagram_verify_token=_str("GUICHET_INSTAGRAM_VERIFY_TOKEN", "GUICHET_MESSENGER_VERIFY_TOKEN"),
            graph_api_url=_str("GUICHET_GRAPH_API_URL", default="https://graph.facebook.com").rstrip("/"),
            graph_api_version=_str("GUICHET_GRAPH_API_VERSION", default="v26.0"),
            graph_timeout=_float("GUICHET_GRAPH_TIMEOUT", 10.0),
            graph_max_attempts=int(_float("GUICHET_GRAPH_MAX_ATTEMPTS", 4)),
            graph_backoff=_float("GUICHET_GRAPH_BACKOFF", 0.5),
            rasa_model_urls=tuple(u.rstrip("/") for u in _list("GUICHET_RASA_REPLICAS")),
            publish_tolerance=_float("GUICHET_PUBLISH_TOLERANCE", 0.0),
            broadcast_rates=tuple(
                (name, _float(f"GUICHET_BROADCAST_RATE_{name.upper()}", default))
                for name, default in (("messenger", 300.0), ("instagram", 300.0), ("whatsapp", 80.0), ("telegram", 30.0))
            ),
            broadcast_concurrency=max(1, int(_float("GUICHET_BROADCAST_CONCURRENCY", 16))),
            broadcast_max_attempts=max(1, int(_float("GUICHET_BROADCAST_MAX_ATTEMPTS", 5))),
            broadcast_retry_base=_float("GUICHET_BROADCAST_RETRY_BASE", 5.0),
            broadcast_retry_max=_float("GUICHET_BROADCAST_RETRY_MAX", 600.0),
            broadcast_stale_after=_float("GUICHET_BROADCAST_STALE_AFTER", 300.0),
            broadcast_poll_interval=_float("GUICHET_BROADCAST_POLL_INTERVAL", 2.0),
            whatsapp_alert_template=_str("GUICHET_WHATSAPP_ALERT_TEMPLATE"),
            whatsapp_alert_template_language=_str("GUICHET_WHATSAPP_ALERT_TEMPLATE_LANGUAGE", default="fr"),
            rumour_min_similarity=_float("GUICHET_RUMOUR_MIN_SIMILARITY", 0.35),
            meta_max_concurrent=max(1, int(_float("GUICHET_META_MAX_CONCURRENT", 3))),
            retention_days=max(1.0, _float("GUICHET_RETENTION_DAYS", 365.0)),
            purge_interval_hours=max(0.0, _float("GUICHET_PURGE_INTERVAL_HOURS", 24.0)),
            erase_grace_seconds=max(0.0, _float("GUICHET_ERASE_GRACE_SECONDS", 10.0)),
        )


def get_settings() -> Settings:
    return Settings.from_env()
