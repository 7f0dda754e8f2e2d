"""The production layout (bot/cluster.py, `make run-cluster`) on the real local
PostgreSQL, Redis and nginx: 2 Rasa replicas sharing a PostgreSQL tracker store and a
Redis lock store, 2 action servers, all behind nginx, with the real model. Citizens write
through the signed Messenger webhook (Graph API simulator) and the web chat (Socket.IO).

Checked: 200 citizens writing 10 messages each at once, every message answered once, to
the right person, in order; a redelivery that reaches the other replica is dropped (Redis
de-duplication); an agent's message reaches a web chat citizen whichever replica handles
it (Socket.IO rooms in Redis); messages acknowledged just before their replica is killed
are answered by the other one (the durable inbox, bot/channels/inbox.py), which then
carries on the conversations; every process is healthy.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
import redis
import requests
import socketio

from bench.cluster import level, references
from bot.channels.inbox import Inbox
from bot.channels.webchat.channel import sender_id
from bot.cluster import Cluster, Layout, find_nginx
from bot.settings import PROJECT_ROOT
from tests.fuzzing import fuzzed_bodies, meta_template
from tests.services import PostgresServer, RedisServer, free_port, private_postgres
from tests.simulators.graph_api import GraphApiSimulator, new_mid, new_psid, text_item, webhook

QUESTIONS = [
    "c'est quoi les horaires de la mairie ?", "comment refaire ma carte d'identité",
    "quand passe le camion poubelle", "inscription sur les listes électorales", "acte de naissance",
]
# Issue 7's load: 200 citizens at once, 10 messages each.
CITIZENS = 200
MESSAGES = 10


def wait(condition, timeout: float = 60, message: str = "timed out") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(message)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is missing (Debian's redis-server package)")
    server = RedisServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    with private_postgres() as server:
        yield server


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, model_path: Path, redis_server: RedisServer,
            postgres_server: PostgresServer) -> Iterator[tuple[Cluster, GraphApiSimulator]]:
    if not find_nginx():
        pytest.fail("nginx is missing: `make nginx` (called by `make test`) installs Debian's package")
    workdir = tmp_path_factory.mktemp("cluster")
    commune = workdir / "commune.yml"
    shutil.copy(PROJECT_ROOT / "commune.yml", commune)
    sim = GraphApiSimulator().start()
    base = random.randrange(20000, 30000, 100)  # base..base+60: below the ephemeral ports (32768-)
    env = {
        **os.environ,
        "GUICHET_DATABASE_URL": postgres_server.url,
        "GUICHET_REDIS_URL": redis_server.url,
        "GUICHET_CLUSTER_BASE_PORT": str(base),
        "GUICHET_RASA_PORT": str(base + 1),
        "GUICHET_ACTION_PORT": str(base + 2),
        "GUICHET_CONSOLE_PORT": str(base + 3),
        "GUICHET_CLUSTER_DIR": str(workdir),
        "GUICHET_COMMUNE_FILE": str(commune),
        "GUICHET_API_TOKEN": secrets.token_urlsafe(16),
        "GUICHET_RASA_TOKEN": secrets.token_urlsafe(16),
        "GUICHET_MODEL_CACHE": "",
        "GUICHET_NOW": "2026-03-03T10:00",
        "GUICHET_INBOX_LEASE_SECONDS": "3",
        # The restart tests' citizens write without pause for a while: above the per-sender
        # limit of a real citizen (tested in test_messenger.py), which would drop messages.
        "GUICHET_SENDER_BURST": "1000",
        "GUICHET_SENDER_PER_MINUTE": "1000",
        "TICKET_LOCK_LIFETIME": "8",
        **sim.bot_env(),
    }
    layout = Layout.from_env(env)
    sim.bot_url = layout.public_url
    cluster = Cluster(layout, model_path, env)
    try:
        cluster.start()
        yield cluster, sim
    finally:
        cluster.stop()
        sim.stop()


def ask(sim: GraphApiSimulator, psid: str, text: str, mid: str | None = None, expected: int = 0) -> list[str]:
    """Sends `text` as the citizen through nginx; returns the messages the bot sent back
    for it: `expected` of them, or (unknown) once nothing more arrives for 1.5 s."""
    before = len(sim.texts(psid))
    item = text_item(psid, sim.page_id, text, mid=mid) if mid else text_item(psid, sim.page_id, text)
    response = sim.deliver(webhook("page", [{"id": sim.page_id, "time": item["timestamp"], "messaging": [item]}]))
    assert response.status_code == 200, response.text
    wait(lambda: len(sim.texts(psid)) >= before + max(1, expected), 90, f"no answer to {text!r} for {psid}")
    if expected:
        return sim.texts(psid)[before:]
    settled = len(sim.texts(psid))
    while True:
        time.sleep(1.5)
        if len(sim.texts(psid)) == settled:
            return sim.texts(psid)[before:]
        settled = len(sim.texts(psid))


# nginx's own refusal of the oversized body in the fuzzing test, not a failure.
EXPECTED_NGINX_ERRORS = ("client intended to send too large body",)


def assert_no_errors(cluster: Cluster) -> None:
    """No failed action, lock error or nginx error in any log so far."""
    logs = {path.name: path.read_text(errors="replace") for path in cluster.layout.workdir.glob("*.log")}
    nginx = (cluster.layout.workdir / "nginx" / "error.log").read_text(errors="replace").splitlines()
    logs["nginx/error.log"] = "\n".join(line for line in nginx if not any(e in line for e in EXPECTED_NGINX_ERRORS))
    for name, text in logs.items():
        for needle in ("Failed to execute custom action", "LockError", "[crit]", "[error]", "[alert]"):
            assert needle not in text, f"{needle!r} in {name}"


def test_every_process_is_healthy(cluster):
    cluster, _ = cluster
    layout = cluster.layout
    assert requests.get(f"{layout.public_url}/nginx-health", timeout=5).text == "ok\n"
    for url in layout.replica_urls():
        assert requests.get(f"{url}/", timeout=5).status_code == 200
    for port in layout.action_ports:
        assert requests.get(f"http://127.0.0.1:{port}/health", timeout=5).json()["status"] == "ok"
    assert requests.get(f"http://127.0.0.1:{layout.console_port}/healthz", timeout=5).status_code == 200


def test_200_citizens_sending_10_messages_each_lose_none(cluster):
    """200 Messenger citizens at once, 10 questions each (the next once the previous is
    answered), signed webhooks through nginx to the 2 replicas (bench/cluster.py's client):
    every message acknowledged and answered; each transcript is exactly the one of the same
    questions asked alone (nothing lost, doubled, reordered or meant for someone else)."""
    cluster, sim = cluster
    reference = references(sim, MESSAGES)
    # Real answers from the action server (not the safety net's contact details).
    assert all(texts and not any("problème technique" in t for t in texts) for texts in reference.values())
    result = level(sim, CITIZENS, MESSAGES, reference)
    assert result["not_acknowledged_200"] == 0, result
    assert (result["messages_sent"], result["answered"]) == (CITIZENS * MESSAGES, CITIZENS * MESSAGES), result
    assert result["transcripts"] == {"conversations": CITIZENS, "exact": CITIZENS, "missing_texts": 0,
                                     "extra_texts": 0, "out_of_order": 0, "foreign_texts": 0}, result
    print(f"{CITIZENS} x {MESSAGES}: {result['throughput_msg_per_s']} msg/s, reply p95 {result['reply']['p95_ms']} ms")
    assert_no_errors(cluster)


def test_a_redelivery_reaching_the_other_replica_is_not_answered_twice(cluster):
    _, sim = cluster
    for _ in range(2):  # nginx alternates: a copy reaches the replica that did not answer
        psid, mid = new_psid(), new_mid()
        first = ask(sim, psid, QUESTIONS[0], mid=mid)
        again = sim.deliver(webhook("page", [{"id": sim.page_id, "time": 1, "messaging": [
            text_item(psid, sim.page_id, QUESTIONS[0], mid=mid)]}]))
        assert again.status_code == 200
        time.sleep(1.5)
        assert sim.texts(psid) == first


def test_an_agent_message_reaches_a_web_chat_citizen_through_any_replica(cluster):
    cluster, _ = cluster
    client = socketio.Client()
    received: list[str] = []
    session: dict[str, str] = {}
    client.on("session_confirm", lambda data=None: session.update(id=str(data)))
    client.on("bot_uttered", lambda data=None: received.append((data or {}).get("text", "")))
    client.connect(cluster.layout.public_url, socketio_path="/socket.io", transports=["polling"])
    try:
        client.emit("session_request", {})
        wait(lambda: session.get("id"), 30, "no web chat session")
        client.emit("user_uttered", {"message": QUESTIONS[0]})
        wait(lambda: received, 60, "no answer in the web chat")
        sender = sender_id(session["id"])
        token = cluster.env["GUICHET_RASA_TOKEN"]
        for index, url in enumerate(cluster.layout.replica_urls()):
            text = f"Message de l'agent n°{index + 1}"
            response = requests.post(
                f"{url}/conversations/{sender}/tracker/events", params={
                    "output_channel": "webchat", "execute_side_effects": "true", "token": token},
                json=[{"event": "bot", "text": text}], timeout=30)
            assert response.status_code == 200, response.text
            wait(lambda t=text: t in received, 30, f"the web chat did not get {text!r} sent through {url}")
    finally:
        client.eio.disconnect(abort=True)


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a Prometheus text exposition (0 if absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_each_process_reports_its_metrics(cluster):
    cluster, _ = cluster
    token = cluster.env["GUICHET_RASA_TOKEN"]
    public = requests.get(f"{cluster.layout.public_url}/webhooks/metrics/", timeout=5,
                          headers={"Authorization": f"Bearer {token}"})
    assert public.status_code == 404  # scraped on each replica's own port, not through nginx
    duplicates = 0.0
    for url in cluster.layout.replica_urls():
        assert requests.get(f"{url}/webhooks/metrics/", timeout=5).status_code == 401
        text = requests.get(f"{url}/webhooks/metrics/", headers={"Authorization": f"Bearer {token}"}, timeout=5).text
        # Both replicas answered citizens (nginx spread the webhooks), none through the safety net.
        assert metric(text, "guichet_messages_total", channel="messenger") >= 5, text[:2000]
        assert metric(text, "guichet_message_seconds_count", channel="messenger") >= 5
        assert metric(text, "guichet_no_reply_total", channel="messenger") == 0
        duplicates += metric(text, "guichet_webhook_duplicates_total", channel="messenger")
    assert duplicates == 2  # the two redeliveries of the test above
    for port in cluster.layout.action_ports:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert metric(text, "guichet_actions_total", action="action_faq", outcome="ok") >= 5, text[:2000]
        assert metric(text, "guichet_action_seconds_count", action="action_faq") >= 5


# After the metrics test: the fuzzed bodies would add to its counts.
def test_signed_fuzzed_webhooks_through_nginx_never_get_a_5xx(cluster):
    cluster, sim = cluster
    # Raw bytes, signed like Meta, through nginx to either replica. A signed body is
    # always acknowledged (200: Meta would retry anything else for hours); what cannot be
    # read is logged and dropped, and nothing fails in the background.
    template = meta_template(sim.page_id, new_psid())
    mids = [item[kind]["mid"] for item in template["entry"][0]["messaging"]
            for kind in ("message", "postback") if "mid" in item.get(kind, {})]

    def with_new_mids(body: object) -> bytes:
        # Each body a new delivery, not a redelivery of another.
        text = json.dumps(body)
        for mid in mids:
            text = text.replace(mid, new_mid())
        return text.encode()

    bodies = [with_new_mids(body) for body in fuzzed_bodies(template, 40)]
    broken = [b"", b"{not json", b"[]", b'{"object": "page", "entry": "x"}', b"\xff\xfe" * 100]
    statuses = [sim.deliver(None, raw=body, platform="messenger").status_code for body in bodies + broken]
    assert statuses == [200] * len(statuses), statuses
    # Bigger than nginx's client_max_body_size (4 MB): refused before any replica reads it.
    huge = json.dumps(meta_template(sim.page_id, "x" * (5 << 20))).encode()
    assert sim.deliver(None, raw=huge, platform="messenger").status_code == 413
    time.sleep(3)  # accepted events are processed in the background
    logs = "".join(log.read_text(errors="replace") for log in cluster.layout.workdir.glob("rasa-*.log"))
    assert "Processing an event of sender" not in logs and "Exception occurred while handling uri" not in logs
    assert logs.count("signed webhook body is not JSON") >= 3 and "signed webhook body dropped" in logs
    assert_no_errors(cluster)
    assert ask(sim, new_psid(), "horaires de la mairie", expected=1)


@dataclass
class Sent:
    at: float
    seconds: float
    question: str
    replies: list[str]


def write_through_an_outage(sim: GraphApiSimulator, questions: list[str], expected: dict[str, int],
                            server: RedisServer | PostgresServer, after: float) -> tuple[dict[str, list[Sent]], float, float]:
    """6 citizens write without pause (0.3 s between an answer and their next question);
    2 s in, `server` is stopped for 4 s, then restarted; they stop `after` seconds later.
    Returns what each citizen sent, and when the server went down and came back."""
    sent: dict[str, list[Sent]] = {}
    failures: list[BaseException] = []
    stop = threading.Event()

    def citizen() -> None:
        psid = new_psid()
        sent[psid] = []
        try:
            while not stop.is_set():
                question = questions[len(sent[psid]) % len(questions)]
                started = time.monotonic()
                replies = ask(sim, psid, question, expected=expected[question])
                sent[psid].append(Sent(started, time.monotonic() - started, question, replies))
                time.sleep(0.3)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=citizen) for _ in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(2)
    down = time.monotonic()
    server.stop()
    time.sleep(4)
    server.start()
    up = time.monotonic()
    time.sleep(after)
    stop.set()
    for thread in threads:
        thread.join(300)
    assert not failures, failures[:3]
    return sent, down, up


def test_a_redis_restart_under_load_delays_answers_and_loses_none(cluster, redis_server):
    cluster, sim = cluster
    questions = QUESTIONS[:3]
    reference = {q: ask(sim, new_psid(), q) for q in questions}
    # Everything Redis held is gone at the restart: locks, inbox, de-duplication.
    sent, down, up = write_through_an_outage(sim, questions, {q: len(r) for q, r in reference.items()},
                                             redis_server, after=3)
    for psid, messages in sent.items():
        # Every message answered with its real answer (not the safety net's), once, in order.
        asked = [m.question for m in messages]
        assert [m.replies[0] for m in messages] == [reference[q][0] for q in asked], (psid, messages)
        assert len(sim.texts(psid)) == sum(len(reference[q]) for q in asked)
    during = [m.seconds for messages in sent.values() for m in messages if down <= m.at <= up]
    others = [m.seconds for messages in sent.values() for m in messages if not down <= m.at <= up]
    assert len(during) >= 6, "too few messages sent while Redis was down"
    print(f"Redis down {up - down:.1f} s: {len(during)} messages sent meanwhile, answered in up to "
          f"{max(during):.1f} s (the {len(others)} others: up to {max(others):.1f} s)")
    assert_no_errors(cluster)


SAFETY_NET = "Désolé, je rencontre un problème technique"


def wait_until_durable(cluster: Cluster, steady: float = 6.0) -> None:
    """Waits until every replica's Messenger inbox has used Redis again for `steady`
    seconds (longer than a degraded spell after a Redis failure, REDIS_RETRY_SECONDS): the
    tests after the Redis restart start from a recovered cluster, as their outage is
    meant to be the only one (with the inbox degraded too, a conversation's messages go
    to both replicas: docs/deployment.md)."""
    token = cluster.env["GUICHET_RASA_TOKEN"]

    def durable() -> bool:
        return all(metric(requests.get(f"{url}/webhooks/metrics/", headers={"Authorization": f"Bearer {token}"},
                                       timeout=5).text, "guichet_inbox_durable", channel="messenger") == 1
                   for url in cluster.layout.replica_urls())

    since = None
    deadline = time.monotonic() + 60
    while since is None or time.monotonic() - since < steady:
        assert time.monotonic() < deadline, "the Messenger inbox does not use Redis again"
        if durable():
            since = since or time.monotonic()
        else:
            since = None
        time.sleep(0.5)


def test_a_postgresql_restart_under_load_gets_every_message_a_reply(cluster, postgres_server):
    cluster, sim = cluster
    wait_until_durable(cluster)
    questions = [q for q in QUESTIONS if q != QUESTIONS[0]][:3]
    reference = {q: ask(sim, new_psid(), q) for q in questions}
    assert all(len(replies) == 1 for replies in reference.values())  # one text: the safety net's size
    sent, down, up = write_through_an_outage(sim, questions, dict.fromkeys(questions, 1), postgres_server, after=4)
    time.sleep(1.5)  # anything sent twice would have arrived by now
    contact_details = 0
    for psid, messages in sent.items():
        texts = sim.texts(psid)
        assert len(texts) == len(messages), psid  # one reply per message: none lost, none doubled
        for message, text in zip(messages, texts, strict=True):
            if text.startswith(SAFETY_NET):
                # Only while PostgreSQL was away: no conversation can be read or written.
                assert down - 1 <= message.at <= up + 1, (psid, message.question, text)
                contact_details += 1
            else:
                assert text == reference[message.question][0], (psid, message.question, text)
    after = [m.at for messages in sent.values() for m in messages if m.at > up + 1]
    assert len(after) >= 6, "too few messages after the restart"
    # The transcripts (what agents and the citizen's data export read): the turns of the
    # outage, kept in the replicas' memory, are written back once PostgreSQL is back
    # (bot/tracker_store.py): every message is stored, once.
    connection = psycopg2.connect(postgres_server.url)
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT sender_id, data FROM events WHERE type_name = 'user' AND sender_id = ANY(%s) "
                       "ORDER BY id", (list(sent),))
        stored: dict[str, list[str]] = {}
        for sender, data in cursor.fetchall():
            stored.setdefault(sender, []).append(json.loads(data)["text"])
    connection.close()
    during = sum(1 for messages in sent.values() for m in messages if down - 1 <= m.at <= up + 1)
    for psid, messages in sent.items():
        assert stored.get(psid) == [m.question for m in messages], psid
    total = sum(len(messages) for messages in sent.values())
    print(f"PostgreSQL down {up - down:.1f} s: {contact_details} messages got the contact details instead "
          f"of their answer, {total - contact_details} their answer; all {total} turns stored, "
          f"the {during} of the outage written back")


def psids_held_by(cluster: Cluster, pid: int, count: int) -> list[str]:
    """New citizens whose Messenger events the replica of process `pid` processes (the
    holder of their inbox partition, read from the partitions' leases in Redis)."""
    client = redis.Redis.from_url(cluster.env["GUICHET_REDIS_URL"])
    inbox = Inbox("messenger")
    held = {n for n in range(inbox.partitions)
            if (client.get(f"{inbox.stream(n)}:lease") or b"").decode().split(":")[1:2] == [str(pid)]}
    assert held, "the replica holds no Messenger partition"
    psids: list[str] = []
    while len(psids) < count:
        psid = new_psid()
        if inbox.partition_of(psid) in held:
            psids.append(psid)
    return psids


def test_messages_acknowledged_before_a_replica_is_killed_are_answered_by_the_other(cluster):
    cluster, sim = cluster
    wait_until_durable(cluster)
    expected = ask(sim, new_psid(), QUESTIONS[1])
    victim = cluster.processes["rasa-1"]
    psids = psids_held_by(cluster, victim.pid, 6)
    items = [text_item(psid, sim.page_id, QUESTIONS[1]) for psid in psids]
    response = sim.deliver(webhook("page", [{"id": sim.page_id, "time": items[0]["timestamp"], "messaging": items}]))
    assert response.status_code == 200  # acknowledged: Meta will not send these again
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    assert any(len(sim.texts(psid)) < len(expected) for psid in psids), "answered before the kill: nothing tested"
    wait(lambda: all(sim.texts(psid)[-len(expected):] == expected for psid in psids), 90,
         "an acknowledged message was lost with its replica")
    # The conversations carry on with the replica left.
    with ThreadPoolExecutor(len(psids)) as pool:
        after = list(pool.map(lambda p: ask(sim, p, QUESTIONS[1], expected=len(expected)), psids))
    assert all(replies == expected for replies in after)
