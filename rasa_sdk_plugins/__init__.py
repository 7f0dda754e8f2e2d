"""Guichet's plugin for the action server (rasa_sdk imports a package of this name at
start-up): `GET /metrics` in Prometheus's text format, and the count and duration of
every action run (bot/metrics.py). The action server listens on the loopback only."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import pluggy
from sanic import Sanic, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.metrics import ACTION_SECONDS, ACTIONS, exposition

hookimpl = pluggy.HookimplMarker("rasa_sdk")


def _action_of(request: Request) -> str:
    try:
        name = json.loads(request.body or b"{}").get("next_action")
    except (ValueError, AttributeError):
        return "invalid"
    return name if isinstance(name, str) and name.isidentifier() and len(name) <= 100 else "invalid"


@hookimpl
def attach_sanic_app_extensions(app: Sanic) -> None:
    @app.route("/metrics", methods=["GET"])
    async def metrics(request: Request) -> HTTPResponse:
        body, content_type = exposition()
        return response.raw(body, content_type=content_type)

    @app.on_request
    async def start_clock(request: Request) -> None:
        if request.path == "/webhook":
            request.ctx.guichet_started = time.perf_counter()

    @app.on_response
    async def count_action(request: Request, answer: Any) -> None:
        started = getattr(request.ctx, "guichet_started", None)
        if started is None:
            return
        action = _action_of(request)
        outcome = "ok" if answer is not None and answer.status < 400 else "error"
        ACTIONS.labels(action, outcome).inc()
        ACTION_SECONDS.labels(action).observe(time.perf_counter() - started)


def init_hooks(manager: pluggy.PluginManager) -> None:
    manager.register(sys.modules[__name__], name="guichet")
