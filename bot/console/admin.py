"""Account administration from the command line.

    python -m bot.console.admin create-user --role admin            # the first account
    python -m bot.console.admin create-user --username marie --name "Marie D." --role agent
    python -m bot.console.admin list-users

The password is asked twice (not echoed), or read from standard input with
`--password-stdin` (scripts).
"""

from __future__ import annotations

import argparse
import getpass
import sys

from bot.console.accounts import AccountError, Accounts
from bot.db.migrate import upgrade
from bot.db.models import ROLES
from bot.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-user", help="create an account")
    create.add_argument("--username", help="login (default: asked)")
    create.add_argument("--name", help="name shown to colleagues (default: the login)")
    create.add_argument("--role", choices=ROLES, default="agent")
    create.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    commands.add_parser("list-users", help="list the accounts")
    args = parser.parse_args(argv)

    url = get_settings().database_url
    upgrade(url)
    accounts = Accounts(url)
    if args.command == "list-users":
        for agent in accounts.list():
            state = "actif" if agent.active else "désactivé"
            print(f"{agent.username}\t{agent.display_name}\t{agent.role}\t{state}")
        return 0
    username = args.username or input("Identifiant : ").strip()
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Mot de passe : ")
        if getpass.getpass("Mot de passe (encore) : ") != password:
            print("Les deux mots de passe diffèrent.", file=sys.stderr)
            return 1
    try:
        accounts.create(username, args.name or username, password, args.role)
    except AccountError as exc:
        print(f"Erreur : {exc}", file=sys.stderr)
        return 1
    print(f"Compte {username.strip().lower()} créé (rôle {args.role}).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
