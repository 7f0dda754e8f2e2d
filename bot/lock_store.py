"""Rasa's Redis lock store, kept working while Redis is unreachable.

Rasa's `RedisLockStore` raises on every message while Redis is down or restarting, and
each citizen then gets the safety net's contact details instead of an answer. This one
falls back on the process's own memory (Rasa's `InMemoryLockStore`) and tries Redis
again `RETRY_SECONDS` later. Meanwhile a conversation is locked within one replica only:
the webhook channels keep a citizen's messages on one replica anyway (bot/channels/inbox.py
falls back on the receiving replica's memory too), so the gap is the web chat's and the
HTTP API's concurrent messages of one conversation on two replicas during the outage.

endpoints.yml: `lock_store: {type: bot.lock_store.ResilientRedisLockStore, url: <host>,
port: …, db: …, password: …, key_prefix: …}` (the options of Rasa's `redis` type).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from rasa.core.lock import TicketLock
from rasa.core.lock_store import InMemoryLockStore, RedisLockStore
from rasa.utils.endpoints import EndpointConfig
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

RETRY_SECONDS = 5.0


class ResilientRedisLockStore(RedisLockStore):
    def __init__(self, endpoint_config: EndpointConfig | None = None, **kwargs: Any) -> None:
        if endpoint_config is not None:
            kwargs = {"host": endpoint_config.url or "127.0.0.1", **endpoint_config.kwargs, **kwargs}
        super().__init__(**kwargs)
        self.memory = InMemoryLockStore()
        self._retry_at = 0.0

    def _redis_usable(self) -> bool:
        return time.monotonic() >= self._retry_at

    def _redis_failed(self, exc: Exception) -> None:
        self._retry_at = time.monotonic() + RETRY_SECONDS
        logger.warning("Redis lock store unreachable (%s): conversations locked in this replica's memory "
                       "for %.0f s", exc, RETRY_SECONDS)

    def get_lock(self, conversation_id: str) -> TicketLock | None:
        if self._redis_usable():
            try:
                return super().get_lock(conversation_id) or self.memory.get_lock(conversation_id)
            except (RedisConnectionError, RedisTimeoutError) as exc:
                self._redis_failed(exc)
        return self.memory.get_lock(conversation_id)

    def delete_lock(self, conversation_id: str) -> None:
        self.memory.delete_lock(conversation_id)
        if self._redis_usable():
            try:
                super().delete_lock(conversation_id)
            except (RedisConnectionError, RedisTimeoutError) as exc:
                self._redis_failed(exc)

    def save_lock(self, lock: TicketLock) -> None:
        if self._redis_usable():
            try:
                super().save_lock(lock)
                self.memory.delete_lock(lock.conversation_id)
                return
            except (RedisConnectionError, RedisTimeoutError) as exc:
                self._redis_failed(exc)
        self.memory.save_lock(lock)
