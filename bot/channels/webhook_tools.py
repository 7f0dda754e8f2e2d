"""Building blocks shared by the webhook connectors (Messenger, Instagram, WhatsApp).

- `verify_signature`: Meta's `X-Hub-Signature-256` check over the raw body.
- `bearer_ok`: the `Authorization: Bearer` check of the staff and API endpoints.
- `SeenIds`: de-duplicates redeliveries of the same event id for a while (shared by
  every replica through Redis when `GUICHET_REDIS_URL` is set).
- `SenderRateLimit`: drops a flood from one sender before it reaches Rasa.
- `SenderQueues`: processes events in the background, in order for each sender and
  concurrently across senders, so that a webhook is acknowledged at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from redis import asyncio as redis_asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from bot import metrics

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Hub-Signature-256"
# After a Redis failure, this process uses its memory this long before trying Redis again.
REDIS_RETRY_SECONDS = 5
# Generous: Rasa's inference blocks the event loop for a while, and a timer that fires late
# would take a slow loop for a dead Redis.
REDIS_TIMEOUT_SECONDS = 5


def redis_client(url: str) -> Any:
    """The asyncio Redis client of the webhook tools and the inbox. A pooled connection
    idle for a second is checked with a PING first, and replaced if it is dead (after a
    Redis restart, every pooled connection is): without the check, each dead connection
    failed one command and put the channel in its degraded mode for REDIS_RETRY_SECONDS.
    Commands themselves are never retried (a retried XADD could enqueue an event twice)."""
    return redis_asyncio.from_url(url, socket_timeout=REDIS_TIMEOUT_SECONDS,
                                  socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                                  health_check_interval=1, retry=Retry(NoBackoff(), 1))


def sign(app_secret: str, body: bytes) -> str:
    """The header value Meta sends: `sha256=<lowercase hex HMAC-SHA256>`."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(app_secret: str, body: bytes, header: str | None) -> bool:
    """True only if `header` is the HMAC-SHA256 of the raw `body` (constant-time compare)."""
    if not app_secret or not header or not header.startswith("sha256="):
        return False
    return hmac.compare_digest(sign(app_secret, body), header.strip())


def bearer_ok(header: str | None, token: str) -> bool:
    """True only if `header` is `Bearer <token>` and a token is set (constant-time compare)."""
    if not token or not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer "):].encode(), token.encode())


class SeenIds:
    """Remembers event ids for `ttl` seconds to drop redeliveries: in this process (bounded
    in size), or in Redis when `redis_url` is set, so that every replica behind a load
    balancer drops a redelivery the first one received (`SET NX EX`: atomic). While Redis
    is unreachable it falls back on this process's memory: never lose a message for it."""

    def __init__(self, ttl: float = 36 * 3600, max_size: int = 100_000, redis_url: str = "",
                 namespace: str = "") -> None:
        self.ttl = ttl
        self.max_size = max_size
        self.namespace = namespace
        self.redis_url = redis_url
        self._redis: Any = None
        self._redis_retry_at = 0.0
        self._seen: OrderedDict[str, float] = OrderedDict()

    async def seen_before(self, key: str) -> bool:
        """Records `key`; returns True if it was already recorded and not expired."""
        seen = None
        if self.redis_url and time.monotonic() >= self._redis_retry_at:
            try:
                seen = await self._seen_in_redis(key)
            except (RedisError, OSError) as exc:
                # Not retried for a while: a webhook must not wait for a dead Redis each time.
                self._redis_retry_at = time.monotonic() + REDIS_RETRY_SECONDS
                logger.warning("Redis unreachable for de-duplication (%s): this process's memory for %d s",
                               exc, REDIS_RETRY_SECONDS)
        if seen is None:
            seen = self._seen_in_memory(key)
        if seen:
            metrics.DUPLICATES.labels(self.namespace or "unknown").inc()
        return seen

    async def _seen_in_redis(self, key: str) -> bool:
        if self._redis is None:
            self._redis = redis_client(self.redis_url)
        added = await self._redis.set(f"guichet:seen:{self.namespace}:{key}", "1", nx=True, ex=max(1, int(self.ttl)))
        return not added

    def _seen_in_memory(self, key: str) -> bool:
        now = time.monotonic()
        while self._seen:
            oldest, stamp = next(iter(self._seen.items()))
            if now - stamp < self.ttl and len(self._seen) < self.max_size:
                break
            self._seen.popitem(last=False)
        if key in self._seen:
            return True
        self._seen[key] = now
        return False


class SenderRateLimit:
    """A token bucket per sender: `burst` messages at once, then `per_minute`. A flood from
    one sender (a script, a stuck client) is dropped here, before Rasa, so that it cannot
    take the processing time of the other citizens. Per process: with N replicas behind a
    load balancer, a sender gets at most N times the limit. `per_minute` <= 0: no limit."""

    def __init__(self, burst: int, per_minute: float, channel: str = "", max_senders: int = 100_000) -> None:
        self.burst = max(1, burst)
        self.rate = per_minute / 60
        self.channel = channel
        self.max_senders = max_senders
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, sender: str, now: float | None = None) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(sender, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        allowed = tokens >= 1
        self._buckets[sender] = (tokens - 1 if allowed else tokens, now)
        while len(self._buckets) > self.max_senders:
            self._buckets.popitem(last=False)  # the least recently seen sender
        if not allowed:
            metrics.RATE_LIMITED.labels(self.channel or "unknown").inc()
        return allowed


Job = Callable[[], Awaitable[None]]


class SenderQueues:
    """One FIFO per sender, drained by its own task; idle queues are removed."""

    def __init__(self, channel: str = "") -> None:
        self._queues: dict[str, asyncio.Queue[Job]] = {}
        self._tasks: set[asyncio.Task] = set()
        if channel:
            metrics.QUEUED.labels(channel).set_function(lambda: self.pending)

    def submit(self, sender: str, job: Job) -> None:
        queue = self._queues.get(sender)
        if queue is None:
            queue = self._queues[sender] = asyncio.Queue()
            task = asyncio.get_running_loop().create_task(self._drain(sender, queue))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        queue.put_nowait(job)

    async def _drain(self, sender: str, queue: asyncio.Queue[Job]) -> None:
        while True:
            job = await queue.get()
            try:
                await job()
            except Exception:  # noqa: BLE001 - one bad event must not stop the queue
                logger.exception("Processing an event of sender %s failed", sender)
            if queue.empty():
                del self._queues[sender]
                return

    @property
    def pending(self) -> int:
        return sum(q.qsize() for q in self._queues.values())

    @property
    def busy(self) -> bool:
        """True while an event is being processed or waits."""
        return bool(self._tasks)

    async def join(self, timeout: float = 30) -> None:
        """Waits until every queued event is processed (tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while self._tasks and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
