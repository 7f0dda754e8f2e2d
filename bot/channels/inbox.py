"""Where a webhook's events wait between the acknowledgement and their processing.

Without Redis (`make run`), events go to this process's `SenderQueues`: processed in the
background, in order per sender. A process that dies loses what it had acknowledged and
not yet processed.

With Redis (`GUICHET_REDIS_URL`, the cluster), an event is first appended to a Redis
stream, *then* the webhook is acknowledged: nothing acknowledged is lost with a replica.
- Senders are spread over `partitions` streams (`guichet:inbox:<channel>:<n>`, by a hash
  of the sender), each read by one replica at a time, which holds the partition's lease
  (a Redis lock, renewed every second). Every replica announces itself every second; the
  partitions are shared among the live replicas (partition n goes to the n-th replica
  modulo their number, in a fixed order), so the work spreads and moves when one dies.
- The holder reads its partitions in order and hands each event to its `SenderQueues`:
  in order per sender, concurrently across senders. An event is acknowledged to Redis
  (`XACK` + `XDEL`) once processed.
- When a replica dies, its partitions' leases expire (`lease_seconds`); the replicas left
  take them over and first process, in order, what the dead one had read and not
  finished (the stream's pending entries: every holder reads as the same consumer).
  At-least-once: an event finished in the instant before the crash can be processed
  twice. An event that was taken over `MAX_DELIVERIES` times (it kills its replica?) is
  dropped with an error log.
- If Redis is unreachable when a webhook arrives, its events are processed by this
  process in memory (as without Redis) and Redis is retried 5 s later
  (`guichet_inbox_durable{channel}` is 0 meanwhile).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio.lock import Lock
from redis.exceptions import LockError, RedisError, ResponseError

from bot import metrics
from bot.channels.webhook_tools import REDIS_RETRY_SECONDS, SenderQueues, redis_client

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[None]]
GROUP = "workers"
CONSUMER = "holder"  # one holder per partition at a time: they all read as one consumer
MAX_DELIVERIES = 3
TICK = 1.0


class Inbox:
    """`submit()` an event (a JSON-able dict) of a sender with a `kind`; the handler
    registered for that kind with `on()` processes it."""

    def __init__(self, channel: str, redis_url: str = "", partitions: int = 8, lease_seconds: float = 10) -> None:
        self.channel = channel
        self.redis_url = redis_url
        self.partitions = max(1, partitions)
        self.lease_seconds = max(2 * TICK, lease_seconds)
        # Unique, and readable in the leases (`GET <stream>:lease`): host, process, random.
        self.replica = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.queues = SenderQueues(channel)
        self._handlers: dict[str, Handler] = {}
        self._redis: Any = None
        self._redis_retry_at = 0.0
        self._task: asyncio.Task | None = None
        self._held: dict[int, _Partition] = {}
        # (stream, entry id) of the events this replica is processing or will process.
        self.in_flight: set[tuple[str, bytes]] = set()
        metrics.INBOX_DURABLE.labels(channel).set_function(lambda: float(self.durable))

    # Producing ---------------------------------------------------------------------
    def on(self, kind: str, handler: Handler) -> None:
        self._handlers[kind] = handler

    @property
    def durable(self) -> bool:
        """Whether the next event goes to Redis before its acknowledgement."""
        return bool(self.redis_url) and time.monotonic() >= self._redis_retry_at

    def stream(self, partition: int) -> str:
        return f"guichet:inbox:{self.channel}:{partition}"

    def partition_of(self, sender: str) -> int:
        return zlib.crc32(sender.encode()) % self.partitions

    async def submit(self, sender: str, kind: str, data: dict[str, Any]) -> None:
        """Queues the event; returns once it is safe to acknowledge the webhook."""
        if kind not in self._handlers:
            raise KeyError(f"no handler for {kind!r}")
        if self.durable:
            fields = {"sender": sender, "kind": kind, "data": json.dumps(data, ensure_ascii=False)}
            try:
                await self._client().xadd(self.stream(self.partition_of(sender)), fields)
                return
            except (RedisError, OSError) as exc:
                self._redis_retry_at = time.monotonic() + REDIS_RETRY_SECONDS
                logger.warning("%s inbox: Redis unreachable (%s): events processed by this replica only, "
                               "without a durable copy, for %d s", self.channel, exc, REDIS_RETRY_SECONDS)
        self.queues.submit(sender, lambda: self._handle(kind, data))

    async def _handle(self, kind: str, data: dict[str, Any]) -> None:
        await self._handlers[kind](data)

    def _client(self) -> Any:
        if self._redis is None:
            self._redis = redis_client(self.redis_url)
        return self._redis

    # Consuming ---------------------------------------------------------------------
    def start(self) -> None:
        """Starts taking partitions (Redis only); call from within the event loop."""
        if self.redis_url and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self, timeout: float = 10) -> None:
        """Stops reading, finishes what was read, hands the partitions back."""
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        for number in list(self._held):
            await self._release(number, timeout)
        await self.queues.join(timeout)
        if self._redis is not None:
            try:
                await self._client().zrem(self._members_key, self.replica)
            except (RedisError, OSError):
                pass
            await self._redis.close()
            self._redis = None

    async def join(self, timeout: float = 30) -> None:
        """Waits until every event queued so far is processed (tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            backlog = 0
            if self.redis_url:
                client = self._client()
                for number in range(self.partitions):
                    backlog += await client.xlen(self.stream(number))
            if backlog == 0 and self.queues.pending == 0 and not self.queues.busy:
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"{self.channel} inbox not empty after {timeout} s")

    @property
    def _members_key(self) -> str:
        return f"guichet:inbox:{self.channel}:replicas"

    async def _run(self) -> None:
        while True:
            try:
                await self._rebalance()
            except (RedisError, OSError) as exc:
                logger.warning("%s inbox: Redis unreachable (%s); retrying", self.channel, exc)
            except Exception:  # noqa: BLE001 - the loop must survive anything
                logger.exception("%s inbox: rebalancing failed", self.channel)
            await asyncio.sleep(TICK)

    async def _rebalance(self) -> None:
        client = self._client()
        now = time.time()
        await client.zadd(self._members_key, {self.replica: now})
        await client.zremrangebyscore(self._members_key, "-inf", now - self.lease_seconds)
        members = sorted(m.decode() for m in await client.zrange(self._members_key, 0, -1))
        mine = {n for n in range(self.partitions) if members[n % len(members)] == self.replica} if members else set()
        for number, partition in list(self._held.items()):
            if partition.draining and not partition.busy():
                await self._release(number)
            elif not await partition.renew():
                logger.error("%s inbox: lost the lease of partition %d", self.channel, number)
                await self._release(number, lost=True)
            elif number not in mine or partition.reader.done():
                # Handed over once what was read from it is finished; renewed meanwhile.
                await partition.stop_reading()
        for number in sorted(mine - set(self._held)):
            lock = Lock(client, f"{self.stream(number)}:lease", timeout=self.lease_seconds, blocking=False,
                        thread_local=False)
            if await lock.acquire(token=self.replica):
                partition = _Partition(self, number, lock)
                self._held[number] = partition
                partition.reader = asyncio.get_running_loop().create_task(partition.read())
                logger.info("%s inbox: replica %s took partition %d", self.channel, self.replica, number)

    async def _release(self, number: int, timeout: float = 10, lost: bool = False) -> None:
        partition = self._held.pop(number)
        await partition.stop_reading()
        if not lost:
            await partition.finish(timeout)


async def cancel_and_wait(task: asyncio.Task) -> BaseException | None:
    """Cancels a task, waits for its end and returns its exception, if any.

    A cancellation can be lost: on Python 3.10, `async_timeout` (used by redis-py) turns
    a cancellation that coincides with its own timeout into a `TimeoutError`, which the
    reading loops below catch and retry. So the cancellation is repeated until the task
    ends (a single `cancel()` once hung a replica's shutdown forever)."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=TICK)
    return None if task.cancelled() else task.exception()


def inbox_for(channel: str, settings: Any) -> Inbox:
    """The channel's inbox as the settings (bot/settings.py) configure it."""
    return Inbox(channel, settings.redis_url, settings.inbox_partitions, settings.inbox_lease_seconds)


class _Partition:
    """One leased stream: reads it in order and hands the events to the sender queues."""

    def __init__(self, inbox: Inbox, number: int, lock: Lock) -> None:
        self.inbox = inbox
        self.number = number
        self.lock = lock
        self.stream = inbox.stream(number)
        self.reader: asyncio.Task = None  # type: ignore[assignment]
        self.draining = False

    async def stop_reading(self) -> None:
        if self.draining:
            return
        self.draining = True
        outcome = await cancel_and_wait(self.reader)
        if isinstance(outcome, Exception):
            logger.error("%s inbox: reading partition %d failed: %r", self.inbox.channel, self.number, outcome)

    def busy(self) -> bool:
        return any(stream == self.stream for stream, _ in self.inbox.in_flight)

    async def renew(self) -> bool:
        try:
            await self.lock.reacquire()
            return True
        except LockError:
            return False

    async def finish(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.busy() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        try:
            await self.lock.release()
        except (LockError, RedisError, OSError):
            pass

    async def _create_group(self, client: Any) -> None:
        try:
            await client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self) -> None:
        client = self.inbox._client()
        while True:
            try:
                await self._create_group(client)
                await self._take_over(client)
                break
            except (RedisError, OSError) as exc:
                logger.warning("%s inbox: partition %d not readable yet (%s)", self.inbox.channel, self.number, exc)
                await asyncio.sleep(TICK)
        while True:
            try:
                entries = await client.xreadgroup(GROUP, CONSUMER, {self.stream: ">"}, count=100, block=1000)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self._create_group(client)  # a Redis restarted without its data
                continue
            except (RedisError, OSError) as exc:
                logger.warning("%s inbox: reading partition %d failed (%s)", self.inbox.channel, self.number, exc)
                await asyncio.sleep(TICK)
                continue
            for _stream, items in entries or []:
                for entry_id, fields in items:
                    self._dispatch(entry_id, fields)

    async def _take_over(self, client: Any) -> None:
        """What an earlier holder read and did not finish, in order. An event read less
        than a lease ago may still be in the hands of a replica that lost the partition
        without dying (Redis restarted): it gets that long to finish it."""
        lease_ms = self.inbox.lease_seconds * 1000
        while True:
            pending = [p for p in await client.xpending_range(self.stream, GROUP, min="-", max="+", count=10_000)
                       if (self.stream, p["message_id"]) not in self.inbox.in_flight]
            if not any(p["time_since_delivered"] < lease_ms for p in pending):
                break
            await asyncio.sleep(TICK)
        if not pending:
            return
        deliveries = {p["message_id"]: p["times_delivered"] for p in pending}
        logger.warning("%s inbox: partition %d: %d events left unfinished by another replica, processing them now",
                       self.inbox.channel, self.number, len(pending))
        entries = await client.xreadgroup(GROUP, CONSUMER, {self.stream: "0"}, count=10_000)
        for _stream, items in entries or []:
            for entry_id, fields in items:
                if entry_id not in deliveries:
                    continue  # finished meanwhile, or processing in this replica
                if deliveries[entry_id] >= MAX_DELIVERIES:
                    logger.error("%s inbox: event %s of partition %d dropped after %d attempts: %s",
                                 self.inbox.channel, entry_id.decode(), self.number, MAX_DELIVERIES,
                                 (fields or {}).get(b"data", b"")[:300])
                    await self._done(entry_id)
                    continue
                self._dispatch(entry_id, fields)

    def _dispatch(self, entry_id: bytes, fields: dict[bytes, bytes] | None) -> None:
        try:
            sender = fields[b"sender"].decode()
            kind = fields[b"kind"].decode()
            data = json.loads(fields[b"data"])
            handler = self.inbox._handlers[kind]
        except (TypeError, KeyError, ValueError) as exc:
            logger.error("%s inbox: unreadable event %s dropped (%r)", self.inbox.channel, entry_id, exc)
            asyncio.get_running_loop().create_task(self._done(entry_id))
            return
        key = (self.stream, entry_id)
        self.inbox.in_flight.add(key)

        async def job() -> None:
            try:
                await handler(data)
            except Exception:  # noqa: BLE001 - a failed event is not retried: logged, done
                logger.exception("%s inbox: processing an event of %s failed", self.inbox.channel, sender)
            except asyncio.CancelledError:
                self.inbox.in_flight.discard(key)  # unfinished: pending for the next holder
                raise
            await self._done(entry_id)

        self.inbox.queues.submit(sender, job)

    async def _done(self, entry_id: bytes) -> None:
        try:
            # Twice: after a Redis restart, the first try may fall on a pooled connection
            # to the old server (XACK and XDEL can be repeated safely).
            for attempt in (1, 2):
                try:
                    async with self.inbox._client().pipeline(transaction=True) as pipe:
                        await pipe.xack(self.stream, GROUP, entry_id).xdel(self.stream, entry_id).execute()
                    return
                except (RedisError, OSError) as exc:
                    if attempt == 2:
                        # It stays pending: the next holder of the partition processes it again.
                        logger.warning("%s inbox: could not mark %s done (%s)", self.inbox.channel, entry_id, exc)
        finally:
            self.inbox.in_flight.discard((self.stream, entry_id))
