"""`python -m bot.broadcast worker [--until-idle]`: send the queued broadcasts.

Started by `make run` (bot/launcher.py) next to the console. Several workers may run at
once (each delivery is claimed by one); stop with Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from bot.broadcast.worker import Worker
from bot.db.migrate import upgrade
from bot.settings import get_settings


async def _serve(until_idle: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await Worker(get_settings()).run(stop, until_idle=until_idle)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["worker"])
    parser.add_argument("--until-idle", action="store_true", help="stop once nothing is left to send")
    args = parser.parse_args()
    upgrade(get_settings().database_url)
    asyncio.run(_serve(args.until_idle))


if __name__ == "__main__":
    main()
