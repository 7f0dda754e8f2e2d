"""Write to the assistant as a Messenger or Instagram citizen and print its answer.

    python -m tests.simulators.say "horaires de la mairie ?"
    python -m tests.simulators.say --channel instagram "bonjour"
    python -m tests.simulators.say --payload '/faq{"faq_topic":"cni"}' "Carte d'identité"
    python -m tests.simulators.say --postback GET_STARTED "Démarrer"
    python -m tests.simulators.say --image https://example.org/trou.jpg ""

Needs `make run-sim` (the assistant with the Graph API simulator, tests/simulators/graph_api.py).
The simulator builds the webhook like Meta, signs it with X-Hub-Signature-256, POSTs it
to the assistant, and records what the assistant sends back through the Send API.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import requests

DEFAULT_SENDERS = {"messenger": "6123456789012345", "instagram": "17841400000000123"}
QUIET_SECONDS = 2.0


def sent_to(sim_url: str, sender: str) -> list[dict]:
    answer = requests.get(f"{sim_url}/_sim/sent", params={"recipient": sender}, timeout=10)
    answer.raise_for_status()
    return answer.json()["sent"]


def describe(item: dict) -> str:
    if item.get("sender_action"):
        return f"({item['sender_action']})"
    message = item.get("message") or {}
    tag = f" [{item['messaging_type']}{' ' + item['tag'] if item.get('tag') else ''}]"
    lines = []
    if "text" in message:
        lines.append(message["text"])
    attachment = message.get("attachment") or {}
    payload = attachment.get("payload") or {}
    if attachment.get("type") == "template":
        lines.append(payload.get("text", f"<{payload.get('template_type')} template>"))
        for button in payload.get("buttons", []):
            lines.append(f"  [{button['title']}] -> {button.get('url') or button.get('payload')}")
    elif attachment:
        lines.append(f"<{attachment.get('type')}: {payload.get('url')}>")
    for reply in message.get("quick_replies", []):
        lines.append(f"  ({reply.get('title')}) -> {reply.get('payload')}")
    return "\n".join(lines) + tag


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("text", help="the citizen's message (the button title with --payload/--postback)")
    parser.add_argument("--channel", choices=["messenger", "instagram"], default="messenger")
    parser.add_argument("--sender", help="the citizen's id (default: one fixed id per channel)")
    parser.add_argument("--payload", help="tap a quick reply with this payload")
    parser.add_argument("--postback", help="tap a button / menu item with this payload")
    parser.add_argument("--image", metavar="URL", help="send a photo (the text is ignored)")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--sim-url", default=f"http://127.0.0.1:{os.environ.get('GUICHET_GRAPH_SIM_PORT', '5099')}")
    args = parser.parse_args(argv)
    sender = args.sender or DEFAULT_SENDERS[args.channel]
    try:
        before = len(sent_to(args.sim_url, sender))
        body = {"channel": args.channel, "sender": sender, "text": args.text, "title": args.text}
        if args.payload:
            body["payload"] = args.payload
        if args.postback:
            body["postback"] = args.postback
        if args.image:
            body["image"] = args.image
        answer = requests.post(f"{args.sim_url}/_sim/citizen", json=body, timeout=30)
    except requests.RequestException as exc:
        print(f"The Graph API simulator is not reachable at {args.sim_url} ({exc}). Start it with `make run-sim`.",
              file=sys.stderr)
        return 2
    result = answer.json()
    if answer.status_code != 200 or result.get("webhook_status") != 200:
        print(f"The assistant refused the webhook: {result}", file=sys.stderr)
        return 1
    deadline = time.monotonic() + args.timeout
    last_change, seen = time.monotonic(), before
    while time.monotonic() < deadline:
        items = sent_to(args.sim_url, sender)
        replies = [i for i in items[before:] if not i.get("sender_action")]
        if len(items) != seen:
            seen, last_change = len(items), time.monotonic()
        if replies and time.monotonic() - last_change >= QUIET_SECONDS:
            break
        time.sleep(0.2)
    new = [i for i in sent_to(args.sim_url, sender)[before:] if not i.get("sender_action")]
    if not new:
        print("No answer (outside the messaging window, or the assistant is still busy: see its log).",
              file=sys.stderr)
        return 1
    print(f"{args.channel} {sender} -> assistant: {args.text}\n")
    for item in new:
        print(describe(item) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
