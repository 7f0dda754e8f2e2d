"""Personal data from the command line (GUICHET_DATABASE_URL, GUICHET_RETENTION_DAYS).

    python -m bot.privacy purge [--days 365] [--dry-run]   # the retention job (cron)
    python -m bot.privacy erasures                          # finish due erasure requests
    python -m bot.privacy export CONVERSATION_ID > export.json
    python -m bot.privacy erase CONVERSATION_ID             # e.g. a request received by mail

A daily cron line, when the console does not run the purge (GUICHET_PURGE_INTERVAL_HOURS=0):
    15 3 * * *  cd /srv/guichet && .venv/bin/python -m bot.privacy purge >> var/purge.log 2>&1

`erase` deletes the conversation's tracker events at once: run it while the citizen is
not writing (Rasa would store a turn in progress again).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from bot.db.migrate import upgrade
from bot.privacy.data import (
    delete_conversation_events,
    erase_project_data,
    export_conversation,
    process_due_erasures,
    purge_expired,
)
from bot.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    purge = commands.add_parser("purge", help="delete conversations older than the retention period")
    purge.add_argument("--days", type=float, help="retention in days (default: GUICHET_RETENTION_DAYS)")
    purge.add_argument("--dry-run", action="store_true", help="count without deleting")
    commands.add_parser("erasures", help="finish the erasure requests whose grace period is over")
    export = commands.add_parser("export", help="print a conversation's data as JSON")
    export.add_argument("conversation_id")
    erase = commands.add_parser("erase", help="erase a conversation's personal data now")
    erase.add_argument("conversation_id")
    args = parser.parse_args(argv)

    settings = get_settings()
    url = settings.database_url
    upgrade(url)
    if args.command == "purge":
        days = args.days if args.days is not None else settings.retention_days
        if days <= 0:
            print("La durée de conservation doit être positive.", file=sys.stderr)
            return 2
        print(json.dumps(purge_expired(url, days, dry_run=args.dry_run)))
    elif args.command == "erasures":
        print(json.dumps({"done": process_due_erasures(url)}))
    elif args.command == "export":
        json.dump(export_conversation(url, args.conversation_id), sys.stdout, ensure_ascii=False, indent=2)
        print()
    else:
        counts = erase_project_data(url, args.conversation_id)
        counts["events"] = delete_conversation_events(url, args.conversation_id)
        print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
