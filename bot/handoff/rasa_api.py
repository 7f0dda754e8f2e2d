"""Writes to conversations through Rasa's HTTP API (never to the tracker store directly).

An agent's message is a `bot` event appended with `execute_side_effects=true` and the
conversation's channel as `output_channel`: Rasa logs it in the tracker and delivers it
through that channel's output (even while the conversation is paused), so the
transcript stays whole. Its metadata marks it as a person's message (`human_agent`), which
the channels receive too (e.g. Messenger's HUMAN_AGENT tag).

Handing back appends `resume` then `action_listen`: without the latter the citizen's
last message would be processed again and re-trigger the fallback or the handoff.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import aiohttp

logger = logging.getLogger(__name__)

AGENT_KEY = "human_agent"


class RasaUnavailable(Exception):
    """Rasa's HTTP API did not accept the request (down, refused, wrong token)."""


class RasaApi:
    def __init__(self, base_url: str, token: str, timeout: float = 10) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def append_events(
        self, conversation_id: str, events: list[dict[str, Any]], output_channel: str | None
    ) -> None:
        if not self.token:
            raise RasaUnavailable("GUICHET_RASA_TOKEN is not set: cannot reach Rasa's HTTP API")
        params = {"token": self.token, "include_events": "NONE"}
        if output_channel:
            params.update(output_channel=output_channel, execute_side_effects="true")
        url = f"{self.base_url}/conversations/{quote(conversation_id, safe='')}/tracker/events"
        try:
            client = await self._client()
            async with client.post(url, params=params, json=events) as response:
                if response.status != 200:
                    body = (await response.text())[:300]
                    raise RasaUnavailable(f"Rasa answered {response.status}: {body}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RasaUnavailable(f"Rasa unreachable: {exc}") from exc

    async def send_agent_message(
        self, conversation_id: str, channel: str, text: str, agent_name: str, reference: str
    ) -> None:
        event = {
            "event": "bot",
            "text": text,
            "metadata": {AGENT_KEY: True, "agent_name": agent_name, "agent_message_ref": reference},
        }
        await self.append_events(conversation_id, [event], channel)

    async def give_back_to_bot(
        self, conversation_id: str, channel: str, text: str, buttons: list[dict[str, str]] | None = None
    ) -> None:
        bot: dict[str, Any] = {"event": "bot", "text": text}
        if buttons:
            bot["data"] = {"buttons": buttons}
        await self.append_events(
            conversation_id,
            [{"event": "resume"}, {"event": "action", "name": "action_listen"}, bot],
            channel,
        )
