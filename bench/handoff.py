"""Handoff latency with 20 conversations in handoff at once (not a test).

    python -m bench.handoff   ->  bench/results/handoff.json

Starts the local Graph API simulator, an action server, a Rasa server and the agents'
console on a fresh SQLite database. 20 Messenger citizens ask for a person; 4 agents
claim 5 conversations each. Then, in rounds, every citizen writes once and every agent
replies once to each of their conversations, spread over 5 s ("steady", the target's
case) or all at the same moment ("burst", the worst case). Measured:
- citizen -> agent: from the signed webhook POST to the message arriving on the agents'
  live connection (server-sent events of the console);
- agent -> citizen: from the agent's reply POST to the console until the simulator's
  Send API records the message.
Targets (issue 4): both <= 1 s at the 95th percentile.
"""

from __future__ import annotations

import json
import os
import platform
import random
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from bench.measures import percentiles
from bot.launcher import wait_http
from bot.settings import PROJECT_ROOT
from tests.services import free_port
from tests.simulators.graph_api import GraphApiSimulator, new_psid, now_ms, text_item, webhook

RESULTS = Path(__file__).parent / "results"
CONVERSATIONS = 20
AGENTS = 4
ROUNDS = 5
PASSWORD = "bench-mot-de-passe"
TARGET_MS = 1000
# Seconds over which the steady load spreads each round's messages (20 per 5 s).
STEADY_SPREAD = 5.0


class LiveListener:
    """Reads the console's server-sent events; remembers when each citizen text arrived."""

    def __init__(self, session: requests.Session, url: str) -> None:
        self.arrived: dict[str, float] = {}
        self._response = session.get(f"{url}/events", stream=True, timeout=(5, None),
                                     headers={"Accept": "text/event-stream"})
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        event = ""
        try:
            for line in self._response.iter_lines(decode_unicode=True):
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "message":
                    data = json.loads(line[6:])
                    if data.get("author") == "citizen":
                        self.arrived.setdefault(data["text"], time.time())
        except Exception:  # noqa: BLE001 - the connection closes at the end
            return

    def close(self) -> None:
        self._response.close()


def login(url: str, username: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{url}/login", timeout=10).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    session.post(f"{url}/login", data={"csrf_token": token, "username": username, "password": PASSWORD}, timeout=10)
    session.csrf = re.search(r'name="csrf_token" value="([^"]+)"', session.get(f"{url}/", timeout=10).text).group(1)
    return session


def wait(condition: Any, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise RuntimeError("benchmark condition not met in time")


def main(conversations: int = CONVERSATIONS, rounds: int = ROUNDS) -> dict[str, Any]:
    from bot.console.accounts import Accounts
    from bot.db.migrate import upgrade
    from bot.faq.training import ensure_model

    model = ensure_model()
    workdir = Path(tempfile.mkdtemp(prefix="bench-handoff-"))
    sim = GraphApiSimulator().start()
    rasa_port, action_port, console_port = free_port(), free_port(), free_port()
    sim.bot_url = f"http://127.0.0.1:{rasa_port}"
    database = f"sqlite:///{workdir / 'tracker.db'}"
    env = {**os.environ, **sim.bot_env(timeout=10, backoff=0.5), "GUICHET_MODEL_CACHE": "",
           "GUICHET_RASA_TOKEN": secrets.token_urlsafe(16), "GUICHET_DATABASE_URL": database,
           "GUICHET_NOW": "2026-03-03T10:00", "GUICHET_RASA_URL": f"http://127.0.0.1:{rasa_port}",
           "GUICHET_CONSOLE_PORT": str(console_port)}
    (workdir / "credentials.yml").write_text("bot.channels.messenger.MessengerInput:\n")
    (workdir / "endpoints.yml").write_text(
        f'action_endpoint:\n  url: "http://127.0.0.1:{action_port}/webhook"\n'
        f"tracker_store:\n  type: bot.tracker_store.ResilientSQLTrackerStore\n  dialect: sqlite\n  db: {workdir / 'tracker.db'}\n"
    )
    upgrade(database)
    accounts = Accounts(database)
    names = [f"agent{i}" for i in range(AGENTS)]
    for name in names:
        accounts.create(name, name.title(), PASSWORD)
    processes: list[subprocess.Popen] = []
    log = (workdir / "servers.log").open("ab")
    console_url = f"http://127.0.0.1:{console_port}"
    listener = None
    results: dict[str, Any] = {}
    try:
        def spawn(*command: str) -> subprocess.Popen:
            process = subprocess.Popen([sys.executable, *command], cwd=PROJECT_ROOT, env=env, stdout=log,
                                       stderr=subprocess.STDOUT)
            processes.append(process)
            return process

        wait_http(f"http://127.0.0.1:{action_port}/health",
                  spawn("-m", "rasa_sdk", "--actions", "actions", "--port", str(action_port)))
        wait_http(f"http://127.0.0.1:{rasa_port}/", spawn(
            "-m", "bot.rasa_server", "run", "--model", str(model), "--endpoints", str(workdir / "endpoints.yml"),
            "--credentials", str(workdir / "credentials.yml"), "--interface", "127.0.0.1", "--port", str(rasa_port),
            "--enable-api", f"--auth-token={env['GUICHET_RASA_TOKEN']}"), timeout=300)
        wait_http(f"{console_url}/healthz", spawn("-m", "bot.console"))
        agents = [login(console_url, name) for name in names]
        listener = LiveListener(agents[0], console_url)

        citizens = [new_psid() for _ in range(conversations)]

        def say(psid: str, text: str) -> float:
            began = time.time()
            sim.deliver(webhook("page", [{"id": sim.page_id, "messaging": [
                text_item(psid, sim.page_id, text, timestamp=now_ms())]}]), platform="messenger", timeout=60)
            return began

        with ThreadPoolExecutor(conversations) as pool:
            list(pool.map(lambda p: say(p, "je voudrais parler à un agent de la mairie"), citizens))
        for psid in citizens:
            wait(lambda p=psid: any("Je vous mets en relation" in t for t in sim.texts(p)))
        queue = agents[0].get(f"{console_url}/fragments/queue", timeout=30).text
        escalations = [int(i) for i in re.findall(r'data-escalation-id="(\d+)"', queue)]
        assert len(escalations) == conversations, f"{len(escalations)} escalations in the queue"
        owner = {}
        for index, escalation in enumerate(escalations):
            agent = agents[index % AGENTS]
            agent.post(f"{console_url}/escalations/{escalation}/claim", data={"csrf_token": agent.csrf},
                       headers={"Accept": "application/json"}, timeout=30).raise_for_status()
            owner[escalation] = agent
        conversation_of = {}
        for escalation in escalations:
            data = owner[escalation].get(f"{console_url}/escalations/{escalation}/messages", timeout=30).json()
            psid = next(m["conversation_id"] for m in data["messages"])
            conversation_of[escalation] = psid

        def run_round(round_: int, spread: float) -> tuple[list[float], list[float]]:
            """Every citizen writes, then every agent replies, each at a random moment
            within `spread` seconds (0: all at the same moment)."""
            rng = random.Random(round_)

            def ask(index_psid: tuple[int, str]) -> tuple[str, float]:
                index, psid = index_psid
                time.sleep(rng.uniform(0, spread))
                text = f"Question {round_}-{index} du citoyen"
                return text, say(psid, text)

            with ThreadPoolExecutor(conversations) as pool:
                sent_at = dict(pool.map(ask, enumerate(citizens)))
            wait(lambda: all(t in listener.arrived for t in sent_at))
            inbound = [listener.arrived[t] - began for t, began in sent_at.items()]

            def reply(escalation: int) -> tuple[str, str, float]:
                time.sleep(rng.uniform(0, spread))
                text = f"Réponse {round_}-{escalation} de l'agent"
                agent = owner[escalation]
                began = time.time()
                agent.post(f"{console_url}/escalations/{escalation}/reply",
                           data={"csrf_token": agent.csrf, "text": text},
                           headers={"Accept": "application/json"}, timeout=60).raise_for_status()
                return conversation_of[escalation], text, began

            with ThreadPoolExecutor(conversations) as pool:
                replies = list(pool.map(reply, escalations))
            outbound = []
            for psid, text, began in replies:
                delivered = wait(lambda p=psid, t=text: [s for s in sim.sent_to(p) if s.text == t])
                outbound.append(delivered[0].at - began)
            return inbound, outbound

        for mode, spread in (("steady", STEADY_SPREAD), ("burst", 0.0)):
            inbound: list[float] = []
            outbound: list[float] = []
            for round_ in range(rounds):
                new_in, new_out = run_round(round_ + (100 if mode == "burst" else 0), spread)
                inbound += new_in
                outbound += new_out
                print(f"{mode} round {round_ + 1}/{rounds}: citizen->agent p95 {percentiles(inbound)['p95_ms']} ms, "
                      f"agent->citizen p95 {percentiles(outbound)['p95_ms']} ms", flush=True)
            results[mode] = {
                "citizen_to_agent": {"samples": len(inbound), **percentiles(inbound)},
                "agent_to_citizen": {"samples": len(outbound), **percentiles(outbound)},
            }
    finally:
        if listener:
            listener.close()
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        sim.stop()
    report = {
        "benchmark": "handoff",
        "description": f"{conversations} Messenger conversations in handoff at once ({AGENTS} agents); "
                       f"{rounds} rounds where every citizen writes once then every agent replies once: "
                       f"'steady' spreads them over {STEADY_SPREAD:.0f} s (the target's case), 'burst' sends them "
                       "all at the same moment (worst case); Graph API = local simulator; one Rasa server, one "
                       "action server, one console, SQLite",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "target_p95_ms": TARGET_MS,
        "steady": results.get("steady"),
        "burst": results.get("burst"),
    }
    report["meets_target"] = bool(results.get("steady")) and all(
        (results["steady"][k]["p95_ms"] or 1e9) <= TARGET_MS for k in ("citizen_to_agent", "agent_to_citizen"))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "handoff.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report


if __name__ == "__main__":
    print(json.dumps(main(), indent=2, ensure_ascii=False))
