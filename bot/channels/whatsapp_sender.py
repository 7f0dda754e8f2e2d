"""Sending to the WhatsApp Cloud API through the shared Graph API client.

`POST <base>/<version>/<PHONE_NUMBER_ID>/messages` with `Authorization: Bearer <token>`.
The Graph client retries transient failures with backoff; WhatsApp adds its own error
codes (Meta's WhatsApp Cloud API error codes, as mirrored by pywa):

| code                          | meaning                                  | here                 |
|-------------------------------|------------------------------------------|----------------------|
| 130429, 131056, 80007, 4      | throughput / pair / WABA / app rate limit | retried with backoff |
| 131000, 131016                | unknown error / service unavailable      | retried with backoff |
| 131047                        | > 24 h since the citizen's last message  | not retried: window  |
| 131026                        | undeliverable                            | not retried          |
| 190                           | invalid or expired access token          | not retried          |
| 131048, 131008/9, 131051, 132… | spam limit, bad payload, template issues | not retried          |
"""

from __future__ import annotations

import logging
from typing import Any

from bot.channels.graph_client import GraphApiError, GraphClient
from bot.channels.whatsapp_format import read_receipt

logger = logging.getLogger(__name__)

RETRYABLE = frozenset({130429, 131056, 80007, 4, 131000, 131016})
NOT_RETRYABLE = frozenset({131047, 131026, 131048, 131008, 131009, 131051, 131030, 131031, 368, 190})
REASONS = {131047: "window_closed", 131026: "undeliverable", 190: "token_invalid"}


class SendFailed(Exception):
    """A message that was not sent; `per_message` if the next ones may still succeed."""

    def __init__(self, reason: str, code: int | None, detail: str, per_message: bool) -> None:
        super().__init__(f"{reason} (code {code}): {detail}")
        self.reason, self.code, self.detail, self.per_message = reason, code, detail, per_message


class WhatsAppGraphClient(GraphClient):
    """The Graph client with WhatsApp's error codes classified (see the module docstring)."""

    async def _attempt(self, method: str, path: str, json_body: Any, params: Any, timeout: float) -> Any:
        try:
            return await super()._attempt(method, path, json_body, params, timeout)
        except GraphApiError as error:
            if error.code in RETRYABLE:
                error.retryable = True
            elif error.code in NOT_RETRYABLE:
                error.retryable = False
            raise


class WhatsAppSender:
    """Sends message bodies for one business phone number."""

    def __init__(
        self,
        api_url: str,
        version: str,
        phone_number_id: str,
        access_token: str,
        timeout: float = 10.0,
        max_attempts: int = 4,
        backoff: float = 0.5,
    ) -> None:
        self.phone_number_id = phone_number_id
        self.client = WhatsAppGraphClient(
            access_token, base_url=api_url, version=version, timeout=timeout,
            max_attempts=max_attempts, backoff_base=backoff, token_in="header", name="whatsapp",
        )

    @property
    def path(self) -> str:
        return f"{self.phone_number_id}/messages"

    async def send(self, body: dict[str, Any]) -> str:
        """Sends one message; returns its `wamid`; raises `SendFailed`."""
        if not self.client.access_token or not self.phone_number_id:
            raise SendFailed("not_configured", None, "WhatsApp access token or phone number id not set", False)
        try:
            answer = await self.client.post(self.path, body, context=f"{body.get('type')} to {body.get('to')}")
        except GraphApiError as error:
            reason = REASONS.get(error.code or 0) or ("unreachable" if error.code is None else "rejected")
            # A malformed message fails alone; a closed window, a bad token or an API
            # still failing after the retries would fail the next messages too.
            per_message = reason == "rejected" and error.code not in RETRYABLE
            raise SendFailed(reason, error.code, error.message, per_message) from error
        except Exception as error:  # noqa: BLE001 - a send failure must not break the conversation
            logger.exception("whatsapp: unexpected failure while sending")
            raise SendFailed("unreachable", None, repr(error)[:300], False) from error
        messages = answer.get("messages") if isinstance(answer, dict) else None
        wamid = messages[0].get("id", "") if isinstance(messages, list) and messages and isinstance(messages[0], dict) else ""
        if not wamid:
            logger.warning("whatsapp: unexpected answer to a send: %s", str(answer)[:300])
        return str(wamid)

    async def mark_read(self, wamid: str) -> None:
        """Marks a citizen's message as read, with the typing indicator (best effort)."""
        if not self.client.access_token or not self.phone_number_id:
            return
        try:
            await self.client.post(self.path, read_receipt(wamid), max_attempts=1, context="mark as read")
        except Exception as error:  # noqa: BLE001 - cosmetic only
            logger.info("whatsapp: could not mark %s as read: %s", wamid, error)

    async def close(self) -> None:
        await self.client.close()

