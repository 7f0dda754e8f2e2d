"""What Messenger and Instagram share: a signed webhook in, the Send API out.

Inbound (`POST /webhooks/<channel>/webhook`):
- the `X-Hub-Signature-256` HMAC of the raw body is checked in constant time with the app
  secret; unsigned or forged requests get 403, as does everything while a secret is unset;
- a correctly signed body that is not JSON gets 200 and an error log line: Meta retries
  any non-200 answer for hours and the same bytes will never parse, so refusing would only
  flood the log;
- the POST is acknowledged at once; its events are processed in the background, each
  citizen's in timestamp order, through the channel's inbox (`bot/channels/inbox.py`: in
  memory, or a Redis stream first in a cluster); Meta's redeliveries are dropped by
  `mid` (`SeenIds`); echoes, deliveries, reads, reactions and `standby[]` items are logged
  and not answered;
- every citizen message goes through the safety net (`handle_with_safety_net`).

Outbound: the Send API through `GraphClient` (retries, typed errors), within Meta's
messaging windows (`meta_window`): a bot reply is `RESPONSE`, a proactive message
`UPDATE`, a human agent's message past 24 hours `MESSAGE_TAG` + `HUMAN_AGENT`; anything
else is not sent and recorded. A message is a human agent's when the bot event's metadata
(or its custom JSON) holds a truthy `human_agent` (the agent's name or id) or `from_agent`.

`GET /webhooks/<channel>/deliveries?recipient=<id>` (bearer `GUICHET_RASA_TOKEN`) lists the
messages to a citizen that could not be delivered, with the reason.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.channels import meta_send, receipts
from bot.channels.graph_client import GraphApiError, GraphClient
from bot.channels.inbox import inbox_for
from bot.channels.meta_events import (
    ATTACHMENT,
    EMPTY,
    POSTBACK,
    QUICK_REPLY,
    Ignored,
    InboundEvent,
    NotAWebhook,
    parse_webhook,
)
from bot.channels.meta_window import ConversationWindows, DeliveryLog, last_user_message_time
from bot.channels.safety import handle_with_safety_net, prepare_text
from bot.channels.webhook_tools import (
    SIGNATURE_HEADER,
    SeenIds,
    SenderRateLimit,
    bearer_ok,
    verify_signature,
)
from bot.settings import Settings, get_settings

logger = logging.getLogger(__name__)

GET_STARTED = "GET_STARTED"
# Postback payloads that are not Rasa payloads.
PAYLOAD_ALIASES = {GET_STARTED: "/greet"}
# What Rasa reads for an attachment without text: this intent if the model knows it,
# else Rasa's `nlu_fallback` (the bot asks the citizen to write the request and offers an
# agent), else a French marker such as "[photo]". The attachment itself (type, URL,
# coordinates) is in the message metadata either way.
ATTACHMENT_INTENT = "attachment"
FALLBACK_INTENT = "nlu_fallback"
ATTACHMENT_MARKERS = {
    "image": "photo", "video": "vidéo", "audio": "message vocal", "file": "fichier",
    "sticker": "autocollant", "location": "position", "reel": "vidéo", "ig_reel": "vidéo",
    "post": "publication", "ig_post": "publication", "fallback": "lien", "share": "partage",
}
AGENT_FLAGS = ("human_agent", "from_agent")
_INTENT = re.compile(r"^/([A-Za-z0-9_\-]+(?:/[A-Za-z0-9_\-]+)?)")
_CHALLENGE = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")
TYPING_TIMEOUT = 5.0


@dataclass(frozen=True)
class MetaConfig:
    access_token: str
    app_secret: str
    verify_token: str
    graph_url: str
    graph_version: str
    timeout: float
    max_attempts: int
    backoff: float
    max_concurrent: int = 3

    @classmethod
    def from_settings(cls, settings: Settings, access_token: str, app_secret: str, verify_token: str) -> MetaConfig:
        """One channel's credentials with the Graph API settings every Meta channel shares."""
        return cls(
            access_token=access_token, app_secret=app_secret, verify_token=verify_token,
            graph_url=settings.graph_api_url, graph_version=settings.graph_api_version,
            timeout=settings.graph_timeout, max_attempts=settings.graph_max_attempts,
            backoff=settings.graph_backoff, max_concurrent=settings.meta_max_concurrent,
        )


def _is_human_agent(values: dict[str, Any]) -> bool:
    sources = [values]
    for key in ("custom", "metadata"):
        if isinstance(values.get(key), dict):
            sources.append(values[key])
    return any(bool(source.get(flag)) for source in sources for flag in AGENT_FLAGS)


def _agent_of(app: Any) -> Any:
    return getattr(getattr(app, "ctx", None), "agent", None) if app is not None else None


class MetaOutput(OutputChannel):
    """Sends to one platform through its input channel's Graph client and windows.

    `in_reply`: created for a webhook message (bot answers are `RESPONSE`); otherwise
    created by `get_output_channel()` for Rasa's HTTP API (proactive: `UPDATE`).
    """

    channel_name: ClassVar[str] = "meta"

    def __init__(self, channel: MetaInput, in_reply: bool) -> None:
        self.channel = channel
        self.in_reply = in_reply

    @classmethod
    def name(cls) -> str:
        return cls.channel_name

    @property
    def limits(self) -> meta_send.Limits:
        return self.channel.limits

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        await self.deliver(recipient_id, meta_send.text_messages(str(text or ""), self.limits), kwargs)

    async def send_text_with_buttons(
        self, recipient_id: str, text: str, buttons: list[dict[str, Any]], **kwargs: Any
    ) -> None:
        await self.deliver(recipient_id, meta_send.button_messages(str(text or ""), list(buttons or []), self.limits), kwargs)

    async def send_quick_replies(
        self, recipient_id: str, text: str, quick_replies: list[dict[str, Any]], **kwargs: Any
    ) -> None:
        await self.send_text_with_buttons(recipient_id, text, quick_replies, **kwargs)

    async def send_image_url(self, recipient_id: str, image: str, **kwargs: Any) -> None:
        await self.deliver(recipient_id, [meta_send.image_message(str(image))], kwargs)

    async def send_attachment(self, recipient_id: str, attachment: Any, **kwargs: Any) -> None:
        if isinstance(attachment, str):
            messages = [meta_send.file_message(attachment)]
        elif isinstance(attachment, dict) and "type" in attachment and "payload" in attachment:
            messages = [{"attachment": attachment}]
        else:
            logger.warning("%s: attachment of an unknown form not sent: %r", self.name(), attachment)
            return
        await self.deliver(recipient_id, messages, kwargs)

    async def send_elements(self, recipient_id: str, elements: Any, **kwargs: Any) -> None:
        await self.deliver(recipient_id, meta_send.element_messages(list(elements or []), self.limits), kwargs)

    async def send_custom_json(self, recipient_id: str, json_message: Any, **kwargs: Any) -> None:
        """Custom JSON: `{"text", "buttons"|"quick_replies", "human_agent"}` or a raw
        Send API `message` object (`{"attachment": ...}`)."""
        if not isinstance(json_message, dict):
            logger.warning("%s: custom JSON that is not an object not sent", self.name())
            return
        context = {**kwargs, "custom": json_message}
        if isinstance(json_message.get("text"), str):
            buttons = json_message.get("buttons") or json_message.get("quick_replies") or []
            messages = meta_send.button_messages(json_message["text"], list(buttons), self.limits)
        elif isinstance(json_message.get("attachment"), dict):
            messages = [{"attachment": json_message["attachment"]}]
        else:
            # `{"human_agent": ...}` alone only flags the text sent with it.
            if set(json_message) - set(AGENT_FLAGS):
                logger.warning("%s: custom JSON without text or attachment not sent: keys %s",
                               self.name(), sorted(json_message)[:10])
            return
        await self.deliver(recipient_id, messages, context)

    async def deliver(self, recipient: str, messages: list[dict[str, Any]], context: dict[str, Any]) -> None:
        """Sends `messages` if Meta's windows allow it; never raises."""
        if not messages:
            return
        human = _is_human_agent(context)
        try:
            await self.channel.send_messages(recipient, messages, human_agent=human, proactive=not self.in_reply)
        except Exception:  # noqa: BLE001 - a send must never break Rasa's processing
            logger.exception("%s: unexpected failure sending to %s", self.name(), recipient)


class MetaInput(InputChannel):
    """The webhook and sender of one Meta platform; subclasses set the class attributes."""

    channel_name: ClassVar[str] = "meta"
    webhook_object: ClassVar[str] = "page"
    limits: ClassVar[meta_send.Limits] = meta_send.MESSENGER
    output_class: ClassVar[type[MetaOutput]] = MetaOutput
    env_names: ClassVar[str] = ""

    def __init__(self, config: MetaConfig | None = None) -> None:
        self.config = config or self.config_from_settings(get_settings())
        self.client = GraphClient(
            self.config.access_token,
            base_url=self.config.graph_url,
            version=self.config.graph_version,
            timeout=self.config.timeout,
            max_attempts=self.config.max_attempts,
            backoff_base=self.config.backoff,
            name=self.channel_name,
        )
        settings = get_settings()
        self.inbox = inbox_for(self.channel_name, settings)
        self.limit = SenderRateLimit(settings.sender_burst, settings.sender_per_minute, self.channel_name)
        self.seen = SeenIds(redis_url=settings.redis_url, namespace=self.channel_name)
        self.windows = ConversationWindows(self.channel_name, self._stored_last_message)
        self.deliveries = DeliveryLog(self.channel_name)
        self.app: Any = None
        # Rasa's processing blocks the event loop (inference, SQL): few at once keep the
        # webhook's acknowledgements fast under load; the others wait their turn.
        self.max_concurrent = self.config.max_concurrent
        self._slots: asyncio.Semaphore | None = None

    @classmethod
    def config_from_settings(cls, settings: Settings) -> MetaConfig:
        raise NotImplementedError

    @classmethod
    def name(cls) -> str:
        return cls.channel_name

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> InputChannel:
        # Secrets come from the environment only (bot/settings.py), never credentials.yml.
        return cls()

    def get_output_channel(self) -> OutputChannel | None:
        """For Rasa's HTTP API (`output_channel=<name>`), e.g. an agent's message."""
        return self.output_class(self, in_reply=False)

    # Configuration -----------------------------------------------------------------
    def missing_secrets(self) -> list[str]:
        names = {"access_token": self.config.access_token, "app_secret": self.config.app_secret,
                 "verify_token": self.config.verify_token}
        return [name for name, value in names.items() if not value]

    def _refuse_unconfigured(self, needed: tuple[str, ...]) -> HTTPResponse | None:
        missing = [name for name in self.missing_secrets() if name in needed]
        if not missing:
            return None
        logger.error("%s: webhook refused: %s not set (%s)", self.name(), ", ".join(missing), self.env_names)
        return response.text("channel not configured", status=403)

    # Tracker store -------------------------------------------------------------------
    async def _stored_last_message(self, sender: str) -> float | None:
        agent = _agent_of(self.app)
        store = getattr(agent, "tracker_store", None)
        if store is None:
            return None
        retrieve = getattr(store, "retrieve_full_tracker", None) or store.retrieve
        return last_user_message_time(await retrieve(sender), self.name())

    # Sending -------------------------------------------------------------------------
    async def send_messages(
        self, recipient: str, messages: list[dict[str, Any]], *, human_agent: bool, proactive: bool
    ) -> bool:
        """Sends each message in order; stops at the first failure. True if all were sent."""
        permission = await self.windows.permission(recipient, human_agent=human_agent, proactive=proactive)
        if not permission.allowed:
            self.deliveries.record(
                recipient, permission.reason, code=None, human_agent=human_agent,
                detail="not sent: outside Meta's messaging window",
                extra={"last_user_message_age_h": permission.age_hours(time.time()), "messages": len(messages)},
            )
            return False
        for index, message in enumerate(messages):
            body: dict[str, Any] = {
                "recipient": {"id": recipient},
                "messaging_type": permission.messaging_type,
                "message": message,
            }
            if permission.tag:
                body["tag"] = permission.tag
            try:
                await self.client.post("me/messages", body, context=f"message to {recipient}")
            except GraphApiError as error:
                reason = ("token_invalid" if error.is_invalid_token
                          else "window_closed" if error.is_window_closed else "graph_error")
                self.deliveries.record(
                    recipient, reason, code=error.code, detail=str(error), human_agent=human_agent,
                    extra={"part": index + 1, "parts": len(messages)},
                )
                return False
        return True

    async def typing_on(self, recipient: str) -> None:
        """Best effort, one attempt, only inside the standard window."""
        permission = await self.windows.permission(recipient, human_agent=False, proactive=False)
        if not permission.allowed:
            return
        try:
            await self.client.post(
                "me/messages", {"recipient": {"id": recipient}, "sender_action": "typing_on"},
                max_attempts=1, timeout=min(TYPING_TIMEOUT, self.config.timeout), context="typing_on",
            )
        except GraphApiError:
            pass  # already logged by the client; typing is cosmetic

    # Inbound -------------------------------------------------------------------------
    def _known_intent(self, payload: str) -> bool:
        match = _INTENT.match(payload)
        if not match:
            return False
        domain = getattr(_agent_of(self.app), "domain", None)
        if domain is None:
            return True  # no model loaded yet: let Rasa decide
        intents = set(getattr(domain, "intents", []) or [])
        name = match.group(1)
        return name in intents or name.split("/")[0] in intents

    def rasa_text(self, event: InboundEvent, metadata: dict[str, Any]) -> str | None:
        """What Rasa reads for `event` (None: nothing to process)."""
        if event.kind in (QUICK_REPLY, POSTBACK):
            payload = PAYLOAD_ALIASES.get(event.payload or "", event.payload or "")
            if payload.startswith("/") and self._known_intent(payload):
                return payload[:2000]
            if payload.startswith("/") or not (event.title or event.text):
                logger.warning("%s: payload %r not understood by the model: sent its title", self.name(), payload[:80])
            return prepare_text(event.title or event.text or payload.lstrip("/"), metadata) or None
        if event.kind == ATTACHMENT:
            if event.text.strip():
                return prepare_text(event.text, metadata) or None
            for intent in (ATTACHMENT_INTENT, FALLBACK_INTENT):
                if self._known_intent("/" + intent):
                    return "/" + intent
            labels = []
            for attachment in event.attachments:
                label = ATTACHMENT_MARKERS.get(attachment["type"], "pièce jointe")
                if "coordinates" in attachment:
                    label = f"position {attachment['coordinates']['lat']:.5f}, {attachment['coordinates']['long']:.5f}"
                labels.append(f"[{label}]")
            return " ".join(dict.fromkeys(labels))
        if event.kind == EMPTY:
            return None
        text = prepare_text(event.text, metadata)
        if text.startswith("/"):
            # A citizen typing "/restart" must not drive the dialogue: typed text is text.
            text = text.lstrip("/ ").strip()
        return text or None

    def metadata_for(self, event: InboundEvent) -> dict[str, Any]:
        details: dict[str, Any] = {"mid": event.mid, "timestamp": event.timestamp, "kind": event.kind}
        if event.recipient:
            details["page_id" if self.webhook_object == "page" else "account_id"] = event.recipient
        if event.payload:
            details["payload"] = event.payload
        if event.title:
            details["title"] = event.title
        if event.attachments:
            details["attachments"] = event.attachments
            locations = [a["coordinates"] for a in event.attachments if "coordinates" in a]
            if locations:
                details["location"] = locations[0]
        if event.reply_to:
            details["reply_to"] = event.reply_to
        if event.referral:
            details["referral"] = event.referral
        return {self.name(): details}

    async def process(self, event: InboundEvent, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> None:
        # Here, not at receipt: in a cluster, the replica that processes may not be the
        # one that received the webhook (bot/channels/inbox.py).
        self.windows.note(event.sender, event.timestamp / 1000)
        metadata = self.metadata_for(event)
        text = self.rasa_text(event, metadata)
        if text is None:
            logger.info("%s: empty message %s from %s not processed", self.name(), event.mid, event.sender)
            return
        output = self.output_class(self, in_reply=True)
        await self.typing_on(event.sender)
        message = UserMessage(
            text, output, event.sender, input_channel=self.name(), metadata=metadata, message_id=event.mid,
        )
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrent)
        async with self._slots:
            await handle_with_safety_net(on_new_message, message, _agent_of(self.app))

    async def accept(self, body: bytes) -> dict[str, int]:
        """Parses a verified body and queues its events in the inbox; returns counts for the log."""
        try:
            data = json.loads(body)
        except ValueError:
            logger.error("%s: signed webhook body is not JSON (%d bytes): acknowledged and dropped",
                         self.name(), len(body))
            return {"malformed": 1}
        try:
            batch = parse_webhook(data, self.webhook_object, int(time.time() * 1000))
        except NotAWebhook as exc:
            logger.error("%s: signed webhook body dropped: %s", self.name(), exc)
            return {"malformed": 1}
        counts = {"queued": 0, "duplicate": 0, "rate_limited": 0, "ignored": len(batch.ignored)}
        for ignored in batch.ignored:
            if ignored.reason == "optin" or (
                    ignored.reason == "echo" and receipts.is_ours((ignored.details or {}).get("metadata"))):
                await self.inbox.submit(ignored.sender or "-", "record", asdict(ignored))
            if ignored.reason.startswith("object_"):
                logger.warning("%s: webhook for %r ignored: this URL is the %s webhook (object %r)",
                               self.name(), batch.object, self.name(), self.webhook_object)
            elif ignored.reason.startswith("malformed") or ignored.reason == "no_sender":
                logger.warning("%s: %s item ignored", self.name(), ignored.reason)
            elif ignored.reason in ("standby", "unknown_event", "changes"):
                logger.info("%s: %s event from %s ignored (not answered)", self.name(), ignored.reason, ignored.sender)
            else:
                logger.debug("%s: %s from %s ignored", self.name(), ignored.reason, ignored.sender)
        for event in batch.events:
            if await self.seen.seen_before(event.dedupe_key):
                logger.info("%s: redelivery of %s from %s dropped", self.name(), event.dedupe_key, event.sender)
                counts["duplicate"] += 1
                continue
            if not self.limit.allow(event.sender):
                logger.warning("%s: message from %s dropped (over the per-sender limit)", self.name(), event.sender)
                counts["rate_limited"] += 1
                continue
            await self.inbox.submit(event.sender, "event", asdict(event))
            counts["queued"] += 1
        return counts

    async def record(self, ignored: Ignored) -> None:
        """A notification-messages opt-in, or the echo of a broadcast message (kept for
        bot.broadcast, see bot/channels/receipts.py)."""
        url = get_settings().database_url
        details = ignored.details or {}
        if ignored.reason == "optin":
            await asyncio.to_thread(receipts.record_optin, url, ignored.sender, details)
        else:
            await asyncio.to_thread(receipts.record_receipt, url, details["metadata"], self.name(), "echo",
                                    details.get("mid"))

    def _authorized_staff(self, request: Request) -> bool:
        return bearer_ok(request.headers.get("Authorization"), getattr(get_settings(), "rasa_token", ""))

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        webhook = Blueprint(f"guichet_{self.name()}_webhook", __name__)
        self.inbox.on("event", lambda data: self.process(InboundEvent(**data), on_new_message))
        self.inbox.on("record", lambda data: self.record(Ignored(**data)))

        @webhook.listener("after_server_start")
        async def remember_app(app: Any, _loop: Any) -> None:
            self.app = app
            missing = self.missing_secrets()
            if not missing:
                self.inbox.start()
            else:
                logger.warning("%s channel: %s not set (%s): webhooks are refused",
                               self.name(), ", ".join(missing), self.env_names)

        @webhook.listener("before_server_stop")
        async def drain(_app: Any, _loop: Any) -> None:
            await self.inbox.stop(timeout=10)
            await self.client.close()

        @webhook.route("/", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            return response.json({"status": "ok", "configured": not self.missing_secrets()})

        @webhook.route("/webhook", methods=["GET"])
        async def verify(request: Request) -> HTTPResponse:
            refused = self._refuse_unconfigured(("verify_token",))
            if refused:
                return refused
            mode = request.args.get("hub.mode")
            token = request.args.get("hub.verify_token") or ""
            challenge = request.args.get("hub.challenge") or ""
            if mode != "subscribe" or not hmac.compare_digest(token.encode(), self.config.verify_token.encode()):
                logger.warning("%s: webhook verification refused (mode %r, wrong token)", self.name(), mode)
                return response.text("verification failed", status=403)
            if not _CHALLENGE.match(challenge):
                return response.text("invalid hub.challenge", status=400)
            logger.info("%s: webhook verified by Meta", self.name())
            return response.text(challenge)

        @webhook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            if self.app is None:
                self.app = request.app
            refused = self._refuse_unconfigured(("app_secret", "access_token"))
            if refused:
                return refused
            body = request.body or b""
            if not verify_signature(self.config.app_secret, body, request.headers.get(SIGNATURE_HEADER)):
                logger.warning("%s: webhook refused: missing or wrong %s (%d bytes)",
                               self.name(), SIGNATURE_HEADER, len(body))
                return response.text("invalid signature", status=403)
            counts = await self.accept(body)
            logger.debug("%s: webhook acknowledged %s", self.name(), counts)
            return response.text("EVENT_RECEIVED")

        @webhook.route("/deliveries", methods=["GET"])
        async def deliveries(request: Request) -> HTTPResponse:
            if not self._authorized_staff(request):
                return response.json({"error": "missing or invalid bearer token"}, status=401)
            recipient = request.args.get("recipient") or ""
            if not recipient:
                return response.json({"error": "the recipient query parameter is required"}, status=400)
            return response.json({"recipient": recipient, "undelivered": self.deliveries.for_recipient(recipient)})

        return webhook
