"""The webhook channels' inbox (bot/channels/inbox.py) on the real local Redis: several
"replicas" (Inbox objects in one event loop, as processes would be) share the partitions,
keep each sender's order, and a dead replica's acknowledged events are processed by
another one. Without Redis, or with Redis down, events are processed in memory."""

from __future__ import annotations

import asyncio
import random
import secrets
from typing import Any

import pytest
import redis

from bot.channels import inbox as inbox_module
from bot.channels.inbox import GROUP, MAX_DELIVERIES, Inbox, cancel_and_wait
from tests.services import redis_available

REDIS_URL = "redis://127.0.0.1:6379/4"




needs_redis = pytest.mark.skipif(not redis_available(REDIS_URL), reason="no Redis on 127.0.0.1:6379")


@pytest.fixture
def channel() -> Any:
    name = f"test-{secrets.token_hex(4)}"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"guichet:inbox:{name}:*"))
    if keys:
        client.delete(*keys)


class Recorder:
    """A handler that records (replica, sender, sequence number) after a short random pause."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int]] = []

    def handler(self, replica: str) -> Any:
        async def handle(data: dict[str, Any]) -> None:
            await asyncio.sleep(random.uniform(0, 0.004))
            self.seen.append((replica, data["sender"], data["n"]))
        return handle

    def of(self, sender: str) -> list[int]:
        return [n for _, s, n in self.seen if s == sender]


def replica(channel: str, recorder: Recorder, name: str, partitions: int = 4, lease: float = 2) -> Inbox:
    inbox = Inbox(channel, REDIS_URL, partitions=partitions, lease_seconds=lease)
    inbox.on("message", recorder.handler(name))
    return inbox


def run(scenario: Any, timeout: float = 90) -> Any:
    """Runs a scenario; one that hangs fails instead of stalling the suite."""
    return asyncio.run(asyncio.wait_for(scenario, timeout))


async def until(condition: Any, timeout: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def crash(inbox: Inbox) -> None:
    """What SIGKILL does to a replica: everything stops at once, nothing is handed back."""
    tasks = [inbox._task, *(p.reader for p in inbox._held.values()), *inbox.queues._tasks]
    for task in tasks:
        task.cancel()
    for task in tasks:
        await cancel_and_wait(task)
    await inbox._redis.close()


def test_a_lost_cancellation_is_repeated_until_the_task_ends():
    """What async_timeout does to a cancellation that meets its own timeout (Python 3.10):
    the reader gets an error instead, and its loop retries."""
    cancellations = 0

    async def stubborn_reader() -> None:
        nonlocal cancellations
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancellations += 1
                if cancellations == 1:
                    continue  # lost: converted into an error the loop retries
                raise

    async def scenario() -> bool:
        task = asyncio.get_running_loop().create_task(stubborn_reader())
        await asyncio.sleep(0)
        await asyncio.wait_for(cancel_and_wait(task), timeout=10)
        return task.cancelled()

    assert run(scenario())
    assert cancellations == 2


def test_without_redis_events_are_processed_in_memory_in_order():
    recorder = Recorder()

    async def scenario() -> None:
        inbox = replica("memory", recorder, "solo")
        inbox.redis_url = ""
        inbox.start()
        for n in range(30):
            await inbox.submit(f"s{n % 3}", "message", {"sender": f"s{n % 3}", "n": n})
        await inbox.join(10)
        await inbox.stop()

    run(scenario())
    assert len(recorder.seen) == 30
    for s in range(3):
        assert recorder.of(f"s{s}") == list(range(s, 30, 3))


def test_with_redis_down_events_are_processed_in_memory():
    recorder = Recorder()

    async def scenario() -> None:
        inbox = Inbox("down", "redis://127.0.0.1:9/0", partitions=2)
        inbox.on("message", recorder.handler("solo"))
        for n in range(5):
            await inbox.submit("s", "message", {"sender": "s", "n": n})
        await inbox.queues.join(10)

    run(scenario())
    assert recorder.of("s") == list(range(5))


def test_an_unknown_kind_is_refused_before_the_acknowledgement():
    inbox = Inbox("kinds")
    with pytest.raises(KeyError):
        asyncio.run(inbox.submit("s", "nope", {}))


@needs_redis
def test_replicas_share_the_partitions_and_keep_each_senders_order(channel):
    recorder = Recorder()
    senders = [f"citizen-{i}" for i in range(20)]

    async def scenario() -> tuple[int, int]:
        first, second = replica(channel, recorder, "first"), replica(channel, recorder, "second")
        first.start()
        second.start()
        await until(lambda: len(first._held) == 2 and len(second._held) == 2)
        for n in range(10):
            for index, sender in enumerate(senders):
                # A webhook reaches either replica; events are appended in arrival order.
                await (first, second)[index % 2 ^ n % 2].submit(sender, "message", {"sender": sender, "n": n})
        await first.join(30)
        await second.join(30)
        held = len(first._held), len(second._held)
        await first.stop()
        await second.stop()
        return held

    assert run(scenario()) == (2, 2)
    assert len(recorder.seen) == 200  # each event once
    for sender in senders:
        assert recorder.of(sender) == list(range(10)), sender
    # The work is spread: each replica processed its partitions' senders.
    assert {name for name, _, _ in recorder.seen} == {"first", "second"}
    client = redis.Redis.from_url(REDIS_URL)
    assert all(client.xlen(f"guichet:inbox:{channel}:{n}") == 0 for n in range(4))


@needs_redis
def test_a_dead_replicas_acknowledged_events_are_processed_by_another(channel):
    recorder = Recorder()
    stuck = asyncio.Event()

    async def scenario() -> Inbox:
        doomed = Inbox(channel, REDIS_URL, partitions=2, lease_seconds=2)

        async def hangs_on_first(data: dict[str, Any]) -> None:
            if data["sender"] == "slow" and data["n"] == 0:
                stuck.set()
                await asyncio.sleep(3600)  # dies before finishing
            recorder.seen.append(("doomed", data["sender"], data["n"]))

        doomed.on("message", hangs_on_first)
        doomed.start()
        await until(lambda: len(doomed._held) == 2)
        for n in range(3):
            await doomed.submit("slow", "message", {"sender": "slow", "n": n})
            await doomed.submit("quick", "message", {"sender": "quick", "n": n})
        await until(lambda: stuck.is_set() and recorder.of("quick") == [0, 1, 2])
        await crash(doomed)
        # The webhooks of "slow" were acknowledged: its three events wait in Redis.
        heir = replica(channel, recorder, "heir", partitions=2)
        heir.start()
        await until(lambda: recorder.of("slow") == [0, 1, 2], timeout=20)
        await heir.join(10)
        await heir.stop()
        return heir

    run(scenario())
    assert [(name, n) for name, sender, n in recorder.seen if sender == "slow"] == [("heir", 0), ("heir", 1),
                                                                                  ("heir", 2)]
    assert recorder.of("quick") == [0, 1, 2]  # finished before the crash: not processed again


@needs_redis
def test_an_event_that_keeps_killing_its_replica_is_dropped(channel, caplog):
    recorder = Recorder()
    client = redis.Redis.from_url(REDIS_URL)
    stream = f"guichet:inbox:{channel}:0"
    client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    client.xadd(stream, {"sender": "s", "kind": "message", "data": '{"sender": "s", "n": 0}'})
    client.xadd(stream, {"sender": "s", "kind": "message", "data": '{"sender": "s", "n": 1}'})
    # Read (taken) by MAX_DELIVERIES holders in turn, each of which died before finishing it.
    for _ in range(MAX_DELIVERIES):
        client.xreadgroup(GROUP, inbox_module.CONSUMER, {stream: "0"}, count=1)
        client.xreadgroup(GROUP, inbox_module.CONSUMER, {stream: ">"}, count=1)

    async def scenario() -> None:
        inbox = replica(channel, recorder, "last", partitions=1)
        inbox.start()
        await until(lambda: recorder.of("s") == [1])
        await inbox.join(10)
        await inbox.stop()

    run(scenario())
    assert recorder.of("s") == [1]
    assert any("dropped after 3 attempts" in r.getMessage() for r in caplog.records)
    assert client.xlen(stream) == 0 and client.xpending(stream, GROUP)["pending"] == 0


@needs_redis
def test_a_new_replica_gets_its_share_and_the_old_one_hands_it_over(channel):
    recorder = Recorder()

    async def scenario() -> tuple[int, int]:
        first = replica(channel, recorder, "first")
        first.start()
        await until(lambda: len(first._held) == 4)
        for n in range(5):
            for s in range(8):
                await first.submit(f"s{s}", "message", {"sender": f"s{s}", "n": n})
        second = replica(channel, recorder, "second")
        second.start()
        await until(lambda: len(first._held) == 2 and len(second._held) == 2)
        for n in range(5, 10):
            for s in range(8):
                await second.submit(f"s{s}", "message", {"sender": f"s{s}", "n": n})
        await first.join(30)
        held = len(first._held), len(second._held)
        await first.stop()
        await second.stop()
        return held

    assert run(scenario()) == (2, 2)
    for s in range(8):
        assert recorder.of(f"s{s}") == list(range(10))


@needs_redis
def test_a_partition_lost_while_busy_is_not_processed_twice(channel):
    recorder = Recorder()

    async def scenario() -> None:
        first = Inbox(channel, REDIS_URL, partitions=1, lease_seconds=3)

        async def slow(data: dict[str, Any]) -> None:
            await asyncio.sleep(1.0)
            recorder.seen.append(("first", data["sender"], data["n"]))

        first.on("message", slow)
        first.start()
        await until(lambda: len(first._held) == 1)
        await first.submit("s", "message", {"sender": "s", "n": 0})
        await until(lambda: bool(first.in_flight))
        # Redis forgets the lease and the replicas while the event is processed (a restart):
        # whichever replica takes the partition next must not process it again.
        redis.Redis.from_url(REDIS_URL).delete(f"guichet:inbox:{channel}:0:lease", f"guichet:inbox:{channel}:replicas")
        second = replica(channel, recorder, "second", partitions=1, lease=3)
        second.start()
        await asyncio.sleep(5)
        await first.stop()
        await second.stop()

    run(scenario())
    assert recorder.of("s") == [0]


@needs_redis
def test_a_partition_handed_over_while_busy_is_kept_until_its_events_are_done(channel, caplog):
    recorder = Recorder()

    async def scenario() -> dict[int, str]:
        first = Inbox(channel, REDIS_URL, partitions=2, lease_seconds=2)

        async def slow(data: dict[str, Any]) -> None:
            await asyncio.sleep(4)  # longer than the lease
            recorder.seen.append(("first", data["sender"], data["n"]))

        first.on("message", slow)
        first.start()
        await until(lambda: len(first._held) == 2)
        senders = {first.partition_of(f"s{i}"): f"s{i}" for i in range(20)}
        for sender in senders.values():  # one busy sender in each partition
            await first.submit(sender, "message", {"sender": sender, "n": 0})
        await until(lambda: len(first.in_flight) == 2)
        second = replica(channel, recorder, "second", partitions=2, lease=2)
        second.start()
        await until(lambda: len(first._held) == 1 and len(second._held) == 1, timeout=20)
        await first.stop()
        await second.stop()
        return senders

    senders = run(scenario())
    assert sorted(recorder.seen) == sorted(("first", s, 0) for s in senders.values())  # each once
    assert not any("lost the lease" in r.getMessage() or "left unfinished" in r.getMessage() for r in caplog.records)
