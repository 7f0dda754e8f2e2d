"""Helpers of the Messenger and Instagram tests: the stack seen from Meta's side."""

from __future__ import annotations

import requests

from tests.simulators.graph_api import Citizen

COLLECTE = '/faq{"faq_topic":"collecte_ordures"}'
CNI = '/faq{"faq_topic":"cni"}'
HOUR = 3600
DAY = 24 * HOUR


def settle(person: Citizen) -> None:
    """Sends a barrier message and waits for its answer: everything sent before it by this
    citizen has been processed by then (one ordered queue per citizen)."""
    before = len(person.sent())
    assert person.tap("Collecte", COLLECTE).status_code == 200
    person.sim.wait_for(lambda: any("bac gris" in s.text for s in person.sent()[before:]))


def rasa_api(stack, method: str, path: str, **kwargs) -> requests.Response:
    params = {"token": stack.env["GUICHET_RASA_TOKEN"], **kwargs.pop("params", {})}
    return requests.request(method, f"{stack.url}{path}", params=params, timeout=60, **kwargs)


def agent_says(stack, conversation: str, text: str, channel: str = "messenger", agent: str | None = "Marie") -> None:
    """What the agent console does: a `bot` event through Rasa's HTTP API, sent on `channel`."""
    event = {"event": "bot", "text": text, "metadata": {"human_agent": agent} if agent else {}}
    answer = rasa_api(stack, "POST", f"/conversations/{conversation}/tracker/events", json=event,
                      params={"output_channel": channel, "execute_side_effects": "true"})
    assert answer.status_code == 200, answer.text


def undelivered(stack, recipient: str, channel: str = "messenger") -> list[dict]:
    answer = requests.get(f"{stack.url}/webhooks/{channel}/deliveries", params={"recipient": recipient},
                          headers={"Authorization": f"Bearer {stack.env['GUICHET_RASA_TOKEN']}"}, timeout=10)
    assert answer.status_code == 200
    return answer.json()["undelivered"]
