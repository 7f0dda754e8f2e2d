"""`python -m bot.db upgrade|current|revision -m MESSAGE [--url URL]`.

The URL defaults to GUICHET_DATABASE_URL (var/guichet.db, Rasa's tracker store file).
"""

from __future__ import annotations

import argparse
import logging

from alembic import command

from bot.db.migrate import alembic_config, current, upgrade


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["upgrade", "current", "revision"])
    parser.add_argument("--url", help="database URL (default: GUICHET_DATABASE_URL)")
    parser.add_argument("-m", "--message", default="change", help="revision message")
    args = parser.parse_args()
    url = args.url
    if not url:
        # Entry point only: the library itself never reads the settings.
        from bot.settings import get_settings

        url = get_settings().database_url
    if args.command == "upgrade":
        upgrade(url)
        print(f"database at revision {current(url)}")
    elif args.command == "current":
        print(current(url) or "empty database (run: python -m bot.db upgrade)")
    else:
        command.revision(alembic_config(url), message=args.message, autogenerate=True)


if __name__ == "__main__":
    main()
