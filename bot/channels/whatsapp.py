"""`whatsapp`: the WhatsApp Cloud API connector (webhook in, Graph API out).

- GET `/webhooks/whatsapp/webhook`: Meta's verification handshake (`hub.mode=subscribe`,
  `hub.verify_token`, answered with `hub.challenge`; 403 otherwise).
- POST `/webhooks/whatsapp/webhook`: checked with `X-Hub-Signature-256` over the raw body
  (403 if unsigned, forged, or while the app secret is unset), acknowledged at once and
  processed in the background, in order per citizen; every `entry[]`/`changes[]`/
  `value.messages[]` is read, redeliveries (same `wamid`) are dropped, `statuses[]` and
  `value.errors[]` are logged and never answered.
- Text and button/list taps (their id, e.g. `/faq{"faq_topic":"cni"}`, is the payload Rasa
  reads) go to Rasa through the safety net. Locations and media without a caption go to
  Rasa as `/attachment` (details in the metadata) when the model knows that intent, else
  are acknowledged by the channel; unknown types get a polite answer.
- Answers go through `POST /<ver>/<PHONE_NUMBER_ID>/messages`: text split under 4096
  characters, reply buttons (≤ 3 short titles) or lists (≤ 10 rows each), images by link.
- The 24-hour customer service window is enforced before sending; outside it nothing is
  sent (WhatsApp would need an approved template, which Guichet does not send): the reason
  is logged and recorded, readable with
  `GET /webhooks/whatsapp/deliveries?recipient=<wa_id>` (`Authorization: Bearer
  <GUICHET_RASA_TOKEN>`).
- `get_output_channel()` lets Rasa's HTTP API push agents' messages
  (`output_channel=whatsapp`).

Environment: GUICHET_WHATSAPP_ACCESS_TOKEN, GUICHET_WHATSAPP_APP_SECRET,
GUICHET_WHATSAPP_VERIFY_TOKEN, GUICHET_WHATSAPP_PHONE_NUMBER_ID, GUICHET_WHATSAPP_API_URL,
GUICHET_WHATSAPP_API_VERSION (see `.env.example` and docs/channels.md).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from rasa.shared.core.constants import ACTION_LISTEN_NAME
from rasa.shared.core.events import ActionExecuted, BotUttered
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.channels import receipts
from bot.channels import whatsapp_format as fmt
from bot.channels.inbox import inbox_for
from bot.channels.safety import handle_with_safety_net, prepare_text
from bot.channels.webhook_tools import (
    SIGNATURE_HEADER,
    SeenIds,
    SenderRateLimit,
    bearer_ok,
    verify_signature,
)
from bot.channels.whatsapp_delivery import DeliveryLog, ServiceWindow, last_user_message_time
from bot.channels.whatsapp_sender import SendFailed, WhatsAppSender
from bot.channels.whatsapp_webhook import (
    MEDIA_TYPES,
    Batch,
    Inbound,
    NotWhatsApp,
    Status,
    describe_error,
    parse_webhook,
)
from bot.settings import Settings, get_settings

logger = logging.getLogger(__name__)

CHANNEL = "whatsapp"
# A tap's payload that names an intent (`/faq{"faq_topic":"cni"}`, `/faq/cni`, `/greet`).
INTENT_PAYLOAD = re.compile(r"^/([A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)?)")
# What Rasa reads for a location or a media without caption, if the model knows the intent
# (as on Messenger, bot/channels/meta_channel.py); otherwise the channel answers itself.
ATTACHMENT_PAYLOAD = "/attachment"
# Meta batches up to 1000 updates per POST; anything far larger is not Meta.
MAX_BODY_BYTES = 3 * 1024 * 1024

LOCATION_REPLY = (
    "Merci, j'ai bien reçu votre position{where}. Je ne peux pas m'en servir moi-même : "
    "décrivez votre demande en quelques mots, ou écrivez « agent » pour parler à une personne."
)
MEDIA_REPLY = (
    "Merci, j'ai bien reçu {what}. Je ne peux lire que les messages écrits : "
    "pouvez-vous écrire votre demande en quelques mots ? Pour parler à une personne, écrivez « agent »."
)
UNKNOWN_REPLY = (
    "Désolé, je ne peux pas lire ce type de message. Écrivez votre demande en quelques mots, "
    "ou « agent » pour parler à une personne."
)
EMPTY_REPLY = "Votre message est vide. Posez votre question en quelques mots."
# The text Rasa's transcript shows for a message the channel answers itself (details in metadata).
TRANSCRIPT_NOTE = {"location": "[position partagée]", "media": "[{type}]", "unknown": "[message non lisible]"}
MEDIA_NOTES = {"image": "image", "document": "document", "audio": "message vocal", "video": "vidéo", "sticker": "autocollant"}


class WhatsAppOutput(OutputChannel):
    """Sends Rasa's messages to one WhatsApp business number, within the service window."""

    def __init__(self, sender: WhatsAppSender, window: ServiceWindow, deliveries: DeliveryLog) -> None:
        self.sender = sender
        self.window = window
        self.deliveries = deliveries

    @classmethod
    def name(cls) -> str:
        return CHANNEL

    async def _deliver(self, recipient_id: str, bodies: list[dict[str, Any]]) -> None:
        """Sends `bodies` in order; never raises (a failure is logged and recorded)."""
        to = recipient_id.removeprefix(f"{CHANNEL}:")
        for body in bodies:
            body["to"] = to
            kind = body.get("type", "")
            is_open, last = await self.window.is_open(to)
            if not is_open:
                when = f"last citizen message at {last:.0f}" if last else "no message from this citizen"
                self.deliveries.record(
                    to, "window_closed", None,
                    f"outside the 24-hour customer service window ({when}); an approved template would be needed",
                    kind,
                )
                return
            try:
                await self.sender.send(body)
            except SendFailed as failure:
                self.deliveries.record(to, failure.reason, failure.code, failure.detail, kind)
                if not failure.per_message:
                    return  # the next messages would fail the same way

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        await self._deliver(recipient_id, fmt.text_messages(recipient_id, text))

    async def send_text_with_buttons(
        self, recipient_id: str, text: str, buttons: list[dict[str, Any]], **kwargs: Any
    ) -> None:
        await self._deliver(recipient_id, fmt.buttons_messages(recipient_id, text, buttons))

    async def send_quick_replies(
        self, recipient_id: str, text: str, quick_replies: list[dict[str, Any]], **kwargs: Any
    ) -> None:
        await self.send_text_with_buttons(recipient_id, text, quick_replies)

    async def send_image_url(self, recipient_id: str, image: str, **kwargs: Any) -> None:
        if not isinstance(image, str) or not image.startswith(("https://", "http://")):
            logger.warning("whatsapp: image %r is not a URL, not sent", str(image)[:100])
            return
        await self._deliver(recipient_id, [fmt.image_message(recipient_id, image)])

    async def send_attachment(self, recipient_id: str, attachment: Any, **kwargs: Any) -> None:
        await self.send_text_message(recipient_id, str(attachment))

    async def send_custom_json(self, recipient_id: str, json_message: dict[str, Any], **kwargs: Any) -> None:
        """`{"whatsapp": {<Cloud API message>}}` is sent as is; other custom payloads are not."""
        message = json_message.get(CHANNEL) if isinstance(json_message, dict) else None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            logger.warning("whatsapp: custom payload without a 'whatsapp' message, not sent")
            return
        await self._deliver(
            recipient_id, [{"messaging_product": "whatsapp", "recipient_type": "individual", **message}]
        )


class WhatsAppInput(InputChannel):
    """WhatsApp Cloud API webhook; configured from the environment only."""

    @classmethod
    def name(cls) -> str:
        return CHANNEL

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> InputChannel:
        if credentials:
            logger.warning("whatsapp: credentials.yml values are ignored; use GUICHET_WHATSAPP_* variables")
        return cls()

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.seen = SeenIds(redis_url=self.settings.redis_url, namespace=CHANNEL)
        self.inbox = inbox_for(CHANNEL, self.settings)
        self.limit = SenderRateLimit(self.settings.sender_burst, self.settings.sender_per_minute, CHANNEL)
        self.deliveries = DeliveryLog()
        self.window = ServiceWindow(self._last_message_in_store)
        self.sender = WhatsAppSender(
            self.settings.whatsapp_api_url,
            self.settings.whatsapp_api_version,
            self.settings.whatsapp_phone_number_id,
            self.settings.whatsapp_access_token,
            timeout=self.settings.whatsapp_api_timeout,
            max_attempts=self.settings.graph_max_attempts,
            backoff=self.settings.graph_backoff,
        )
        self._app: Any = None
        for problem in self._configuration_problems():
            logger.warning("whatsapp channel: %s", problem)

    def _configuration_problems(self) -> list[str]:
        names = {
            "whatsapp_app_secret": "GUICHET_WHATSAPP_APP_SECRET is not set: every webhook is refused (403)",
            "whatsapp_verify_token": "GUICHET_WHATSAPP_VERIFY_TOKEN is not set: the verification handshake is refused (403)",
            "whatsapp_access_token": "GUICHET_WHATSAPP_ACCESS_TOKEN is not set: nothing can be sent",
            "whatsapp_phone_number_id": "GUICHET_WHATSAPP_PHONE_NUMBER_ID is not set: nothing can be sent",
        }
        return [message for attribute, message in names.items() if not getattr(self.settings, attribute)]

    @property
    def can_send(self) -> bool:
        return bool(self.settings.whatsapp_access_token and self.settings.whatsapp_phone_number_id)

    def _output(self) -> WhatsAppOutput:
        return WhatsAppOutput(self.sender, self.window, self.deliveries)

    def get_output_channel(self) -> OutputChannel | None:
        """The output Rasa's HTTP API uses for `output_channel=whatsapp` (agents' messages)."""
        return self._output() if self.can_send else None

    async def _last_message_in_store(self, wa_id: str) -> float | None:
        agent = getattr(getattr(self._app, "ctx", None), "agent", None)
        store = getattr(agent, "tracker_store", None)
        if store is None:
            return None
        tracker = await store.retrieve(wa_id)
        last = last_user_message_time(tracker)
        if last is None and tracker is not None and tracker.events:
            # The last session may hold no citizen message: look at the whole history.
            last = last_user_message_time(await store.retrieve_full_tracker(wa_id))
        return last

    # ----------------------------------------------------------------- inbound
    async def _process(
        self, inbound: Inbound, on_new_message: Callable[[UserMessage], Awaitable[Any]]
    ) -> None:
        # Here, not at receipt: the replica that processes may not be the one that received
        # the webhook (bot/channels/inbox.py).
        self.window.note(inbound.wa_id, inbound.timestamp)
        out = self._output()
        await self.sender.mark_read(inbound.wamid)
        metadata = dict(inbound.metadata)
        text = prepare_text(self._rasa_text(inbound), metadata)
        if not text and inbound.kind in ("location", "media") and self._known_intent(ATTACHMENT_PAYLOAD):
            # The dialogue decides (a report's place or photo); the details are in the metadata.
            text = ATTACHMENT_PAYLOAD
        if text:
            message = UserMessage(text, out, inbound.wa_id, input_channel=CHANNEL, metadata=metadata)
            await handle_with_safety_net(on_new_message, message, self._agent())
            return
        # Locations, media without a caption, unknown types: the channel answers itself.
        # Rasa logs the message (and its metadata) for the transcript without predicting;
        # a conversation an agent has taken over gets no answer.
        note = TRANSCRIPT_NOTE.get(inbound.kind, "[message vide]").format(
            type=MEDIA_NOTES.get(str(metadata.get("whatsapp", {}).get("media", {}).get("type")), "fichier")
        )
        message = UserMessage(note, out, inbound.wa_id, input_channel=CHANNEL, metadata=metadata)
        reply = self._channel_reply(inbound)

        async def acknowledge(user_message: UserMessage) -> None:
            await self._log_and_answer(user_message, reply)

        await handle_with_safety_net(acknowledge, message, self._agent())

    async def _log_and_answer(self, message: UserMessage, reply: str) -> None:
        agent = self._agent()
        if agent is None or getattr(agent, "processor", None) is None:
            await message.output_channel.send_text_message(message.sender_id, reply)
            return
        async with agent.lock_store.lock(message.sender_id):
            # Saved once, at the end: Rasa's SQL store counts the stored events of the
            # latest session, so a second save of a turn that started a new session
            # would write the previous session's events again.
            tracker = await agent.processor.log_message(message, should_save_tracker=False)
            try:
                if not tracker.is_paused():
                    await message.output_channel.send_text_message(message.sender_id, reply)
                    tracker.update(BotUttered(reply, metadata={"guichet": "whatsapp_channel_reply"}))
                    tracker.update(ActionExecuted(ACTION_LISTEN_NAME))
            finally:
                await agent.tracker_store.save(tracker)  # the citizen's message is kept even if sending failed

    def _rasa_text(self, inbound: Inbound) -> str:
        """What Rasa reads: a tap's payload if the model knows its intent; typed text as text."""
        text = inbound.text
        if inbound.kind == "payload":
            if text.startswith("/") and self._known_intent(text):
                return text
            title = inbound.metadata.get("whatsapp", {}).get("reply_title", "")
            logger.warning("whatsapp: payload %r unknown to the model: its title is sent as text", text[:80])
            return title or text.lstrip("/")
        # A citizen typing "/restart" must not drive the dialogue.
        return text.lstrip().lstrip("/") if text.lstrip().startswith("/") else text

    def _known_intent(self, payload: str) -> bool:
        match = INTENT_PAYLOAD.match(payload)
        domain = getattr(self._agent(), "domain", None)
        if not match or domain is None:
            return bool(match)  # no model loaded: Rasa decides
        name = match.group(1)
        intents = set(domain.intents)
        return name in intents or name.split("/")[0] in intents

    @staticmethod
    def _channel_reply(inbound: Inbound) -> str:
        details = inbound.metadata.get("whatsapp", {})
        if inbound.kind == "location":
            place = details.get("location", {})
            where = ", ".join(p for p in (place.get("name"), place.get("address")) if p)
            return LOCATION_REPLY.format(where=f" ({where})" if where else "")
        if inbound.kind == "media":
            kind = details.get("media", {}).get("type", "")
            return MEDIA_REPLY.format(what=MEDIA_TYPES.get(kind, "votre fichier"))
        if inbound.kind in ("text", "payload"):
            return EMPTY_REPLY
        logger.info("whatsapp: message of type %r from %s not understood", details.get("type"), inbound.wa_id)
        return UNKNOWN_REPLY

    def _agent(self) -> Any:
        return getattr(getattr(self._app, "ctx", None), "agent", None)

    def _log_status(self, status: Status) -> None:
        if status.status == "failed":
            for error in status.errors or [{}]:
                code = error.get("code")
                reason = "window_closed" if code == 131047 else "undeliverable" if code == 131026 else "failed"
                self.deliveries.record(
                    status.recipient, reason, code, describe_error(error, with_code=False), f"wamid {status.wamid}"
                )
        else:
            logger.info("whatsapp: message %s to %s %s", status.wamid, status.recipient, status.status or "?")

    async def _record_receipt(self, status: Status) -> None:
        """The status of a broadcast message (bot/channels/receipts.py)."""
        code = next((e.get("code") for e in status.errors if isinstance(e.get("code"), int)), None)
        detail = "; ".join(describe_error(e, with_code=False) for e in status.errors)
        await asyncio.to_thread(receipts.record_receipt, self.settings.database_url, status.callback_data, CHANNEL,
                                status.status or "unknown", status.wamid, code, detail)

    async def _status(self, status: Status) -> None:
        self._log_status(status)
        if receipts.is_ours(status.callback_data):
            await self._record_receipt(status)

    async def _dispatch(self, batch: Batch) -> dict[str, int]:
        counts = {"messages": 0, "duplicates": 0, "statuses": 0, "ignored": 0}
        configured = self.settings.whatsapp_phone_number_id
        for problem in batch.skipped:
            logger.warning("whatsapp: webhook part skipped: %s", problem)
        for error in batch.errors:
            logger.error("whatsapp: error reported by the Cloud API: %s", describe_error(error))
        for status in batch.statuses:
            if await self.seen.seen_before(f"status:{status.wamid}:{status.status}"):
                counts["duplicates"] += 1
                continue
            counts["statuses"] += 1
            await self.inbox.submit(status.recipient or "-", "status", asdict(status))
        for inbound in batch.messages:
            if configured and inbound.phone_number_id and inbound.phone_number_id != configured:
                logger.warning("whatsapp: message for another number (%s) ignored", inbound.phone_number_id)
                counts["ignored"] += 1
                continue
            if await self.seen.seen_before(inbound.wamid):
                logger.info("whatsapp: message %s delivered again, ignored", inbound.wamid)
                counts["duplicates"] += 1
                continue
            if inbound.kind == "silent":
                logger.info("whatsapp: %s from %s not answered", inbound.metadata["whatsapp"]["type"], inbound.wa_id)
                counts["ignored"] += 1
                continue
            if not self.limit.allow(inbound.wa_id):
                logger.warning("whatsapp: message from %s dropped (over the per-sender limit)", inbound.wa_id)
                counts["ignored"] += 1
                continue
            counts["messages"] += 1
            await self.inbox.submit(inbound.wa_id, "message", asdict(inbound))
        return counts

    # ------------------------------------------------------------------ routes
    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        webhook = Blueprint("guichet_whatsapp_webhook", __name__)
        self.inbox.on("message", lambda data: self._process(Inbound(**data), on_new_message))
        self.inbox.on("status", lambda data: self._status(Status(**data)))

        @webhook.listener("after_server_start")
        async def remember_app(app: Any, loop: Any) -> None:
            self._app = app
            if self.settings.whatsapp_app_secret:  # otherwise every webhook is refused
                self.inbox.start()

        @webhook.listener("before_server_stop")
        async def close(app: Any, loop: Any) -> None:
            await self.inbox.stop(timeout=10)
            await self.sender.close()

        @webhook.route("/", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            return response.json({"status": "ok" if not self._configuration_problems() else "incomplete"})

        @webhook.route("/webhook", methods=["GET"])
        async def verify(request: Request) -> HTTPResponse:
            token = self.settings.whatsapp_verify_token
            if not token:
                logger.error("whatsapp: verification refused, GUICHET_WHATSAPP_VERIFY_TOKEN is not set")
                return response.text("forbidden", status=403)
            given = request.args.get("hub.verify_token", "")
            challenge = request.args.get("hub.challenge", "")
            if request.args.get("hub.mode") != "subscribe" or not hmac.compare_digest(given.encode(), token.encode()):
                logger.warning("whatsapp: verification refused (wrong mode or verify token)")
                return response.text("forbidden", status=403)
            if not challenge or len(challenge) > 256:
                return response.text("missing hub.challenge", status=400)
            logger.info("whatsapp: webhook verified by Meta")
            return response.text(challenge)

        @webhook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            self._app = self._app or request.app
            secret = self.settings.whatsapp_app_secret
            if not secret:
                logger.error("whatsapp: webhook refused, GUICHET_WHATSAPP_APP_SECRET is not set")
                return response.json({"error": "channel not configured"}, status=403)
            body = request.body or b""
            if len(body) > MAX_BODY_BYTES:
                logger.warning("whatsapp: webhook refused, body of %d bytes", len(body))
                return response.json({"error": "payload too large"}, status=413)
            if not verify_signature(secret, body, request.headers.get(SIGNATURE_HEADER)):
                logger.warning("whatsapp: webhook refused (missing or wrong %s)", SIGNATURE_HEADER)
                return response.json({"error": "invalid signature"}, status=403)
            try:
                batch = parse_webhook(json.loads(body))
            except (ValueError, NotWhatsApp) as error:
                logger.warning("whatsapp: malformed webhook refused: %s", error)
                return response.json({"error": f"not a WhatsApp webhook: {error}"}, status=400)
            counts = await self._dispatch(batch)
            return response.json({"status": "accepted", **counts})

        @webhook.route("/deliveries", methods=["GET"])
        async def deliveries(request: Request) -> HTTPResponse:
            if not bearer_ok(request.headers.get("Authorization"), self.settings.rasa_token):
                return response.json({"error": "missing or invalid bearer token"}, status=401)
            recipient = request.args.get("recipient", "")
            return response.json({"recipient": recipient, "failures": self.deliveries.failures(recipient)})

        return webhook
