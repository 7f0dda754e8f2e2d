"""`python -m bot.console`: serve the agents' console (GUICHET_CONSOLE_HOST/PORT)."""

from __future__ import annotations

import logging

from aiohttp import web

from bot.console.app import create_app
from bot.settings import get_settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    settings = get_settings()
    app = create_app(settings)
    logging.getLogger("guichet.console").info(
        "Console on http://%s:%s", settings.console_host, settings.console_port)
    web.run_app(app, host=settings.console_host, port=settings.console_port, print=None,
                shutdown_timeout=5)


if __name__ == "__main__":
    main()
