"""Rasa 3.6's stock `facebook` channel, its Graph API calls sent to the local simulator.

Only for `bench/messenger_webhook.py` (the comparison with Guichet's `messenger` channel):
fbmessenger hard-codes https://graph.facebook.com, so its client is pointed at
GUICHET_GRAPH_API_URL when this module is imported (by `rasa run`, via credentials).
"""

from __future__ import annotations

import os
from typing import Any

import fbmessenger
from rasa.core.channels.facebook import FacebookInput

_original_init = fbmessenger.MessengerClient.__init__


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    _original_init(self, *args, **kwargs)
    base = os.environ.get("GUICHET_GRAPH_API_URL", "").rstrip("/")
    if base:
        self.graph_url = f"{base}/v{self.api_version}"


fbmessenger.MessengerClient.__init__ = _init


class SimulatedFacebookInput(FacebookInput):
    """The stock channel, unchanged (name `facebook`)."""
