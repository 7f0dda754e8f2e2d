"""The production layout under load: 1 Rasa replica vs 2 behind nginx (bot/cluster.py).

    python -m bench.cluster [--levels 10,50,200] [--messages 3] [--out cluster.json]  ->  bench/results/<out>

For each layout (PostgreSQL tracker store, Redis lock store and webhook inbox, nginx, as many action
servers as replicas) and each level, that many Messenger citizens write at once through
the signed webhook (Graph API = local simulator), each sending `messages` questions one
after the other (the next once the previous is answered, as people do). Measured:
throughput (answered messages per second of the level's wall time), acknowledgement and
reply latency (POST to the bot's first message for it) p50/p95/p99, messages left
unanswered, each citizen's transcript against the answers of their own questions in order
(nothing missing, doubled, reordered or meant for someone else), and the resident memory
of every process at the end.

Both layouts share this machine's cores: 2 replicas on 2 cores compete with each other,
with PostgreSQL, Redis, nginx and the action servers (README: Benchmarks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import psycopg2
import redis

from bench.measures import percentiles, rss_mb
from bench.messenger_webhook import QUESTIONS, RESULTS, post
from bot.cluster import Cluster, Layout
from bot.settings import PROJECT_ROOT
from tests.simulators.graph_api import GraphApiSimulator, new_psid, now_ms, text_item, webhook

REPLY_TIMEOUT = 120.0


async def conversation(session: aiohttp.ClientSession, sim: GraphApiSimulator, messages: int,
                       out: list[dict[str, Any]]) -> None:
    """One citizen: each question once the previous one is answered, as people do."""
    psid = new_psid()
    offset = hash(psid) % len(QUESTIONS)
    for index in range(messages):
        question = QUESTIONS[(index + offset) % len(QUESTIONS)]
        before = len(sim.sent_to(psid))
        url, body, headers = sim.prepare(webhook("page", [{"id": sim.page_id, "messaging": [
            text_item(psid, sim.page_id, question, timestamp=now_ms())]}]), platform="messenger")
        began, ack, status = await post(session, url, body, headers)
        deadline = time.monotonic() + REPLY_TIMEOUT
        while time.monotonic() < deadline and len(sim.sent_to(psid)) <= before:
            await asyncio.sleep(0.05)
        sent = sim.sent_to(psid)[before:]
        out.append({"psid": psid, "offset": offset, "status": status, "ack": ack,
                    "reply": sent[0].at - began if sent else None})
        if not sent:
            return  # unanswered: the citizen gives up


async def citizens(sim: GraphApiSimulator, conversations: int, messages: int) -> list[dict[str, Any]]:
    """All the conversations at once, from one event loop (a thread per citizen with
    `requests` added about 100 ms to the measured acknowledgements)."""
    results: list[dict[str, Any]] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        await asyncio.gather(*(conversation(session, sim, messages, results) for _ in range(conversations)))
    return results


def settle(sim: GraphApiSimulator, psids: list[str], quiet: float = 2.0) -> None:
    """Waits until nothing more is sent to these citizens for `quiet` seconds."""
    count = -1
    while count != (count := sum(len(sim.sent_to(p)) for p in psids)):
        time.sleep(quiet)


def references(sim: GraphApiSimulator, messages: int) -> dict[int, list[str]]:
    """The transcript of each sequence of questions the citizens ask (by its first
    question), written alone: one message after the other once the answer is complete
    (the sequences side by side, each in its own conversation)."""

    def alone(offset: int) -> list[str]:
        psid = new_psid()
        for index in range(messages):
            question = QUESTIONS[(index + offset) % len(QUESTIONS)]
            sim.deliver(webhook("page", [{"id": sim.page_id, "messaging": [text_item(psid, sim.page_id, question)]}]))
            settle(sim, [psid], quiet=1.0)
        return sim.texts(psid)

    with ThreadPoolExecutor(len(QUESTIONS)) as pool:
        return dict(enumerate(pool.map(alone, range(len(QUESTIONS)))))


def transcripts(sim: GraphApiSimulator, results: list[dict[str, Any]], reference: dict[int, list[str]]) -> dict:
    """Each citizen's transcript against the one of the same questions asked alone."""
    offsets = {result["psid"]: result["offset"] for result in results}
    counts = {"exact": 0, "missing_texts": 0, "extra_texts": 0, "out_of_order": 0, "foreign_texts": 0}
    for psid, offset in offsets.items():
        expected = reference[offset]
        got = sim.texts(psid)
        counts["foreign_texts"] += sum(1 for text in got if text not in expected)
        if got == expected:
            counts["exact"] += 1
        elif len(got) < len(expected):
            counts["missing_texts"] += len(expected) - len(got)
        elif len(got) > len(expected):
            counts["extra_texts"] += len(got) - len(expected)
        else:
            counts["out_of_order"] += 1
        if got != expected and "first_mismatch" not in counts:
            at = next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
                      min(len(got), len(expected)))
            counts["first_mismatch"] = {"index": at, "got": [t[:80] for t in got[at:at + 2]],
                                        "expected": [t[:80] for t in expected[at:at + 2]]}
    return {"conversations": len(offsets), **counts}


def level(sim: GraphApiSimulator, conversations: int, messages: int,
          reference: dict[int, list[str]] | None = None) -> dict[str, Any]:
    began = time.monotonic()
    results = asyncio.run(citizens(sim, conversations, messages))
    wall = time.monotonic() - began
    replies = [r["reply"] for r in results if r["reply"] is not None]
    checked = {}
    if reference:
        settle(sim, list({r["psid"] for r in results}))
        checked = {"transcripts": transcripts(sim, results, reference)}
    return {
        "conversations": conversations, "messages_sent": len(results), "answered": len(replies),
        "unanswered": conversations * messages - len(replies), "not_acknowledged_200": sum(
            1 for r in results if r["status"] != 200),
        "wall_s": round(wall, 1), "throughput_msg_per_s": round(len(replies) / wall, 2),
        "ack": percentiles([r["ack"] for r in results]), "reply": percentiles(replies), **checked,
    }


def run_layout(replicas: int, levels: list[int], messages: int, model: Path) -> dict[str, Any]:
    database = f"guichet_bench_{secrets.token_hex(4)}"
    redis_url = "redis://127.0.0.1:6379/3"
    # The benchmark's own Redis database: no inbox stream, lease or replica of an earlier run.
    redis.Redis.from_url(redis_url).flushdb()
    sim = GraphApiSimulator().start()
    base = 21000 + 200 * replicas  # below the ephemeral ports (32768-)
    env = {
        **os.environ, **sim.bot_env(timeout=10, backoff=0.5),
        "GUICHET_DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{database}",
        "GUICHET_REDIS_URL": redis_url,
        "GUICHET_CLUSTER_REPLICAS": str(replicas), "GUICHET_CLUSTER_ACTION_SERVERS": str(replicas),
        "GUICHET_CLUSTER_BASE_PORT": str(base), "GUICHET_RASA_PORT": str(base + 1),
        "GUICHET_ACTION_PORT": str(base + 2), "GUICHET_CONSOLE_PORT": str(base + 3),
        "GUICHET_CLUSTER_DIR": str(PROJECT_ROOT / "var" / f"bench-cluster-{replicas}"),
        "GUICHET_RASA_TOKEN": secrets.token_urlsafe(16), "GUICHET_API_TOKEN": secrets.token_urlsafe(16),
        "GUICHET_MODEL_CACHE": "",
        # The benchmark's citizens ask 3 questions each: well within the per-sender limit.
    }
    layout = Layout.from_env(env)
    sim.bot_url = layout.public_url
    cluster = Cluster(layout, model, env)
    try:
        cluster.start()
        level(sim, 5, 1)  # warm-up
        reference = references(sim, messages)
        results = {}
        for conversations in levels:
            results[str(conversations)] = level(sim, conversations, messages, reference)
            print(f"{replicas} replica(s), {conversations} conversations:", json.dumps(results[str(conversations)]),
                  flush=True)
        memory = {name: rss_mb(process.pid) for name, process in cluster.processes.items()}
    finally:
        cluster.stop()
        sim.stop()
        connection = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
        connection.autocommit = True
        connection.cursor().execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        connection.close()
    return {"replicas": replicas, "levels": results, "memory_rss_mb": memory}


def main(levels: list[int] | None = None, messages: int = 3, out: str = "cluster.json") -> dict[str, Any]:
    from bot.faq.training import ensure_model

    levels = levels or [10, 50, 200]
    model = ensure_model()
    layouts = [run_layout(replicas, levels, messages, model) for replicas in (1, 2)]
    one, two = (layouts[0]["levels"], layouts[1]["levels"])
    report = {
        "benchmark": "cluster",
        "description": f"{levels} Messenger citizens at once, {messages} questions each (next after the answer), "
                       "signed webhooks through nginx; PostgreSQL tracker store, Redis lock store and webhook inbox",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_1m": round(os.getloadavg()[0], 2)},
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "layouts": layouts,
        "throughput_2_vs_1": {k: round(two[k]["throughput_msg_per_s"] / one[k]["throughput_msg_per_s"], 2)
                              for k in one if one[k]["throughput_msg_per_s"]},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / out).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="10,50,200")
    parser.add_argument("--messages", type=int, default=3)
    parser.add_argument("--out", default="cluster.json", help="file name in bench/results/")
    args = parser.parse_args()
    print(json.dumps(main([int(v) for v in args.levels.split(",")], args.messages, args.out), indent=2,
                     ensure_ascii=False))
