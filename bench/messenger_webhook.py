"""Messenger webhook under load: 10, 50 and 200 citizens writing at once.

    python -m bench.messenger_webhook [--levels 10,50,200]   ->  bench/results/messenger_webhook.json

Four layouts, one after the other, each an action server and a Rasa server talking to the
local Graph API simulator: the stock configuration (Rasa's default recipe, its default
pipeline and policies, trained on Guichet's domain and data, with Rasa's stock `facebook`
channel via bench/stock_facebook.py, signed with the legacy SHA-1 header it checks, on
stock `rasa run`); Rasa's stock `facebook` channel and `rasa run` with Guichet's model;
Guichet's `messenger` channel on stock `rasa run`; Guichet's `messenger` on
`bot.rasa_server` (the NLU parse off the event loop, as `make run` and the cluster run
it). For each level, that many citizens each POST one signed webhook at the same moment
(new citizens at each level). Measured:
- ack latency: until the webhook's HTTP answer (Meta times out at 20 s and then retries);
- reply latency: from the POST to the bot's first message recorded by the simulator;
- throughput: first replies per second, from the burst to the last first reply;
- resident memory of the Rasa server and the action server after the bursts, and the CPU
  time each of them used per answered message during each burst (what bounds the
  throughput on 2 cores);
- each model's NLU-only ceiling (bench/nlu.py: parses per second in one process) and
  Guichet's throughput as a share of it.

Both models are trained once, Rasa's cache off, into var/bench-models/, named by the hash of
their inputs, and their training times recorded (the default recipe: about 20 minutes on 2
cores; Guichet's: about 2).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.measures import cpu_seconds, percentiles, rss_mb
from bench.nlu import ceiling
from bot.launcher import wait_http
from bot.settings import PROJECT_ROOT, get_settings
from tests.services import free_port
from tests.simulators.graph_api import GraphApiSimulator, new_psid, now_ms, text_item, webhook

RESULTS = Path(__file__).parent / "results"
LEVELS = [10, 50, 200]
QUESTIONS = [
    "c'est quoi les horaires de la mairie ?", "comment refaire ma carte d'identité",
    "quand passe le camion poubelle", "inscription sur les listes électorales", "bonjour",
]
META_TIMEOUT = 20.0


def burst(sim: GraphApiSimulator, channel: str, citizens: int, timeout: float = 300) -> dict[str, Any]:
    """`citizens` signed webhooks at once on `channel`; waits for every first reply.

    The bodies are built and signed first, then posted together from one event loop
    (aiohttp): the client adds well under a millisecond per request, where 50 threads
    with `requests` added about 100 ms at p95 to the measured acknowledgements."""
    ids = [new_psid() for _ in range(citizens)]
    signature = "sha1" if channel == "facebook" else "valid"
    prepared = [sim.prepare(webhook("page", [{"id": sim.page_id, "messaging": [
        text_item(ids[index], sim.page_id, QUESTIONS[index % len(QUESTIONS)], timestamp=now_ms())]}]),
        platform=channel, signature=signature) for index in range(citizens)]
    posts = asyncio.run(post_all(prepared))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and sum(1 for i in ids if sim.sent_to(i)) < citizens:
        time.sleep(0.2)
    # (POST began, first reply sent) of each citizen answered
    answered = [(began, sent[0].at) for user, (began, _, _) in zip(ids, posts, strict=True)
                if (sent := sim.sent_to(user))]
    replies = [at - began for began, at in answered]
    span = max((at for _, at in answered), default=0.0) - min(began for began, _, _ in posts)
    acks = [ack for _, ack, status in posts if status == 200]
    return {
        "citizens": citizens,
        "acknowledged_200": len(acks),
        "ack": percentiles(acks),
        "acks_over_meta_timeout_20s": sum(1 for a in acks if a > META_TIMEOUT),
        "replied": len(replies),
        "reply": percentiles(replies),
        "throughput_msg_per_s": round(len(replies) / span, 2) if replies else 0.0,
    }


async def post_all(prepared: list[tuple[str, bytes, dict[str, str]]]) -> list[tuple[float, float, int]]:
    """POSTs every (url, body, headers) at once; (wall-clock start, seconds to the answer, status)."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:

        return await asyncio.gather(*(post(session, *request) for request in prepared))


async def post(session: aiohttp.ClientSession, url: str, body: bytes,
               headers: dict[str, str]) -> tuple[float, float, int]:
    """One prepared webhook: (wall-clock start, seconds to the answer, status; 0 if none)."""
    began, started = time.time(), time.perf_counter()
    try:
        async with session.post(url, data=body, headers=headers) as answer:
            await answer.read()
            status = answer.status
    except (aiohttp.ClientError, asyncio.TimeoutError):  # a timeout is a result here
        status = 0
    return began, time.perf_counter() - started, status


# (name, channel, Rasa entry module, model): the stock configuration (Rasa's default
# recipe, its stock channel, stock `rasa run`); Rasa's stock channel and server with
# Guichet's model; Guichet's channel on stock `rasa run`; Guichet as it is deployed
# (`bot.rasa_server`: action answers checked with a prepared validator, parsing in threads,
# and `bot.tracker_store`: the tracker store's SQL in a thread).
LAYOUTS = [
    ("stock_default_recipe_facebook", "facebook", "rasa", "default"),
    ("rasa_stock_facebook", "facebook", "rasa", "guichet"),
    ("guichet_messenger_stock_rasa_run", "messenger", "rasa", "guichet"),
    ("guichet_messenger", "messenger", "bot.rasa_server", "guichet"),
]
BENCH_MODELS = PROJECT_ROOT / "var" / "bench-models"


def trained_once(prefix: str, config: Path) -> tuple[Path, float]:
    """`config` trained on Guichet's domain and data, with Rasa's training cache off, once
    (kept in var/bench-models/, named by the hash of its inputs); returns the model and the
    seconds its training took."""
    from bot.faq.training import fingerprint, train

    name = prefix + fingerprint(config, PROJECT_ROOT / "domain.yml", PROJECT_ROOT / "data")
    model, timing = BENCH_MODELS / f"{name}.tar.gz", BENCH_MODELS / f"{name}.json"
    if not (model.exists() and timing.exists()):
        started = time.monotonic()
        train(config, PROJECT_ROOT / "domain.yml", PROJECT_ROOT / "data", BENCH_MODELS, name, reuse_cache=False)
        timing.write_text(json.dumps({"training_s": round(time.monotonic() - started, 1)}) + "\n")
    return model, json.loads(timing.read_text())["training_s"]


def default_recipe_model() -> tuple[Path, float]:
    """Rasa's default recipe (`bot.faq.evaluation.BASELINE_CONFIG`: the default pipeline
    and policies) trained on Guichet's domain and data."""
    from bot.faq.evaluation import BASELINE_CONFIG

    with tempfile.TemporaryDirectory(prefix="bench-default-") as tmp:
        config = Path(tmp) / "config.yml"
        config.write_text(BASELINE_CONFIG, encoding="utf-8")
        return trained_once("default-recipe-", config)


def guichet_model() -> tuple[Path, float]:
    """Guichet's configuration (config.yml) trained the same way, for its training time."""
    return trained_once("guichet-", PROJECT_ROOT / "config.yml")


CREDENTIALS = {
    "messenger": "bot.channels.messenger.MessengerInput:\n",
    "facebook": "bench.stock_facebook.SimulatedFacebookInput:\n"
                "  verify: {verify}\n  secret: {secret}\n  page-access-token: {token}\n",
}


def measure(model: Path, sim: GraphApiSimulator, channel: str, entry: str, levels: list[int]) -> dict[str, Any]:
    """Starts an action server and a Rasa server with `channel`, sends a burst per level,
    reads their memory, stops them."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-messenger-"))
    rasa_port, action_port = free_port(), free_port()
    sim.bot_url = f"http://127.0.0.1:{rasa_port}"
    env = {**os.environ, **sim.bot_env(timeout=10, backoff=0.5), "GUICHET_MODEL_CACHE": "",
           "GUICHET_RASA_TOKEN": secrets.token_urlsafe(16)}
    (workdir / "credentials.yml").write_text(CREDENTIALS[channel].format(
        verify=sim.verify_token, secret=sim.app_secret, token=sim.access_token))
    store = "SQL" if entry == "rasa" else "bot.tracker_store.ResilientSQLTrackerStore"
    (workdir / "endpoints.yml").write_text(
        f'action_endpoint:\n  url: "http://127.0.0.1:{action_port}/webhook"\n'
        f"tracker_store:\n  type: {store}\n  dialect: sqlite\n  db: {workdir / 'tracker.db'}\n"
    )
    processes: list[subprocess.Popen] = []
    log = (workdir / "servers.log").open("ab")
    try:
        actions = subprocess.Popen([sys.executable, "-m", "rasa_sdk", "--actions", "actions", "--port", str(action_port)],
                                   cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        processes.append(actions)
        wait_http(f"http://127.0.0.1:{action_port}/health", actions)
        rasa = subprocess.Popen(
            [sys.executable, "-m", entry, "run", "--model", str(model), "--endpoints", str(workdir / "endpoints.yml"),
             "--credentials", str(workdir / "credentials.yml"), "--interface", "127.0.0.1", "--port", str(rasa_port)],
            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        processes.append(rasa)
        wait_http(f"http://127.0.0.1:{rasa_port}/", rasa, timeout=300)
        burst(sim, channel, 5)  # warm-up
        results: dict[str, Any] = {}
        servers = {"rasa_server": rasa.pid, "action_server": actions.pid}
        for citizens in levels:
            before = {name: cpu_seconds(pid) for name, pid in servers.items()}
            results[str(citizens)] = burst(sim, channel, citizens)
            # CPU time each server spent per answered message during the burst
            results[str(citizens)]["cpu_ms_per_message"] = {
                name: round(1000 * (cpu_seconds(pid) - before[name]) / max(1, results[str(citizens)]["replied"]), 1)
                for name, pid in servers.items()}
            print(f"  {citizens} citizens:", json.dumps(results[str(citizens)]), flush=True)
        results["memory_rss_mb"] = {"rasa_server": rss_mb(rasa.pid), "action_server": rss_mb(actions.pid)}
        return results
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def main(levels: list[int] | None = None) -> dict[str, Any]:
    from bot.processor import nlu_threads

    levels = levels or LEVELS
    models, training_s = {}, {}
    models["guichet"], training_s["guichet"] = guichet_model()
    models["default"], training_s["default"] = default_recipe_model()
    # The NLU-only ceiling of each model: parses per second in one process, nothing else running.
    nlu = {name: ceiling(path) for name, path in models.items()}
    sim = GraphApiSimulator().start()
    results: dict[str, Any] = {}
    try:
        for name, channel, entry, model in LAYOUTS:
            print(name, flush=True)
            results[name] = measure(models[model], sim, channel, entry, levels)
    finally:
        sim.stop()

    def ratio(level: int) -> float | None:
        stock = results["stock_default_recipe_facebook"][str(level)]["throughput_msg_per_s"]
        ours = results["guichet_messenger"][str(level)]["throughput_msg_per_s"]
        return round(ours / stock, 2) if stock else None

    report = {
        "benchmark": "messenger_webhook",
        "description": f"{levels} citizens POST one signed webhook each at the same moment; "
                       "Graph API = local simulator; one Rasa server, one action server, SQLite tracker store; "
                       "each layout alone on the machine, one after the other",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_1m": round(os.getloadavg()[0], 2)},
        "guichet_meta_max_concurrent": get_settings().meta_max_concurrent,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "guichet_nlu_threads": nlu_threads(),
        "models": {key: path.name for key, path in models.items()},
        "training_s": {"guichet": training_s["guichet"], "default_recipe": training_s["default"]},
        "guichet_throughput_vs_stock": {str(level): ratio(level) for level in levels},
        "nlu_ceiling": nlu,
        "guichet_throughput_vs_nlu_ceiling": {
            str(level): round(results["guichet_messenger"][str(level)]["throughput_msg_per_s"]
                              / nlu["guichet"]["parses_per_second"], 2) for level in levels},
        **results,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "messenger_webhook.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)), help="citizens per burst, comma-separated")
    args = parser.parse_args()
    print(json.dumps(main([int(v) for v in args.levels.split(",")]), indent=2, ensure_ascii=False))
