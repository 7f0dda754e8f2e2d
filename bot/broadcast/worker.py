"""The broadcast worker: sends due deliveries, within each platform's rate, exactly once.

A delivery's life, each step one committed, conditional UPDATE:

    pending --claim--> sending --route recorded--> (the platform call) --> sent | failed | skipped
                                                                      \\-> pending (transient:
                                                                          retried later, with backoff)

- Claiming is `UPDATE … SET status='sending' WHERE id=? AND status='pending'`: two workers
  (or a worker and a restarted one) can never both send a delivery.
- A transient failure (rate limit, 5xx, timeout) puts the delivery back with
  `next_attempt_at` = now + exponential backoff (at least the platform's Retry-After);
  after `GUICHET_BROADCAST_MAX_ATTEMPTS` attempts it fails with its last reason. A rate
  limit also pauses the whole platform.
- A worker that dies mid-call leaves deliveries in `sending`. Once they are older than
  `GUICHET_BROADCAST_STALE_AFTER` seconds, the platform's receipts decide (Messenger echo
  of our `metadata`, WhatsApp status with our `biz_opaque_callback_data`): a receipt means
  it went out (-> sent), none means it did not (-> pending, sent again). Telegram gives no
  receipts: such a delivery fails as `interrupted` rather than risk a duplicate.
- A WhatsApp `failed` status arriving after a successful call turns the delivery to failed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from datetime import timedelta

from sqlalchemy import func, select, update

from bot.broadcast.content import Content, build
from bot.broadcast.senders import RECEIPT_CHANNELS, Job, NoPush, Outcome, Sender, senders_for
from bot.broadcast.service import Broadcasts
from bot.channels import receipts
from bot.db import session_scope, utcnow
from bot.db.outreach_models import Delivery, DeliveryReceipt
from bot.outreach.polls import Polls
from bot.settings import Settings, get_settings

logger = logging.getLogger(__name__)

BATCH = 200
MAX_PAUSE = 60.0  # seconds a rate limit may pause a whole platform
OK_RECEIPTS = frozenset({"echo", "sent", "delivered", "read", "played"})
RECEIPT_REASONS = {131047: "window_closed", 131026: "undeliverable"}


class RateGate:
    """At most `rate` calls per second (evenly spaced); `pause()` after a rate limit."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(self._next, now) + self.interval
        if delay > 0:
            await asyncio.sleep(delay)

    def pause(self, seconds: float) -> None:
        self._next = max(self._next, time.monotonic() + seconds)


class Worker:
    def __init__(self, settings: Settings | None = None, senders: dict[str, Sender] | None = None,
                 worker_id: str = "") -> None:
        self.settings = settings or get_settings()
        self.url = self.settings.database_url
        self.broadcasts = Broadcasts(self.url)
        self.senders = senders if senders is not None else senders_for(self.settings)
        self.rates = dict(self.settings.broadcast_rates)
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self._gates: dict[str, RateGate] = {}
        self._contents: dict[int, Content] = {}
        self._receipt_cursor = 0

    def gate(self, channel: str) -> RateGate:
        if channel not in self._gates:
            self._gates[channel] = RateGate(self.rates.get(channel, 10.0))
        return self._gates[channel]

    # Database steps (synchronous, run in a thread) ------------------------------------
    def due(self, limit: int = BATCH) -> list[int]:
        with session_scope(self.url) as s:
            return list(s.execute(
                select(Delivery.id).where(Delivery.status == "pending", Delivery.next_attempt_at <= utcnow())
                .order_by(Delivery.id).limit(limit)
            ).scalars().all())

    def unfinished(self) -> int:
        with session_scope(self.url) as s:
            return int(s.execute(
                select(func.count()).select_from(Delivery).where(Delivery.status.in_(("pending", "sending")))
            ).scalar_one())

    def claim(self, delivery_id: int) -> Delivery | None:
        now = utcnow()
        with session_scope(self.url) as s:
            claimed = s.execute(
                update(Delivery).where(Delivery.id == delivery_id, Delivery.status == "pending")
                .values(status="sending", claimed_at=now, claimed_by=self.worker_id, attempts=Delivery.attempts + 1,
                        updated_at=now)
                .execution_options(synchronize_session=False)
            ).rowcount
            return s.get(Delivery, delivery_id) if claimed else None

    def set_route(self, delivery_id: int, route: str) -> None:
        with session_scope(self.url) as s:
            s.execute(update(Delivery).where(Delivery.id == delivery_id).values(route=route)
                      .execution_options(synchronize_session=False))

    def backoff(self, attempts: int, retry_after: float | None) -> float:
        base = self.settings.broadcast_retry_base * (2 ** max(0, attempts - 1))
        delay = min(self.settings.broadcast_retry_max, base) * random.uniform(0.8, 1.2)
        return max(delay, retry_after or 0.0)

    def finish(self, delivery: Delivery, outcome: Outcome) -> None:
        now = utcnow()
        values: dict = {"updated_at": now, "reason": outcome.reason or None, "detail": outcome.detail or None}
        if outcome.route:
            values["route"] = outcome.route
        if outcome.status == "sent":
            values.update(status="sent", sent_at=now, external_id=outcome.external_id or None)
        elif outcome.status == "retry" and delivery.attempts < self.settings.broadcast_max_attempts:
            delay = self.backoff(delivery.attempts, outcome.retry_after)
            values.update(status="pending", next_attempt_at=now + timedelta(seconds=delay))
        elif outcome.status == "retry":
            values.update(status="failed", detail=f"{delivery.attempts} tentatives : {outcome.detail}"[:1000])
        else:
            values.update(status=outcome.status)
        with session_scope(self.url) as s:
            changed = s.execute(
                update(Delivery).where(Delivery.id == delivery.id, Delivery.status == "sending",
                                       Delivery.claimed_by == self.worker_id)
                .values(**values).execution_options(synchronize_session=False)
            ).rowcount
        if not changed:
            logger.warning("Delivery %s changed hands while being sent (%s)", delivery.id, outcome.status)
        elif outcome.status in ("failed", "retry"):
            logger.info("Delivery %s to %s %s: %s %s", delivery.id, delivery.channel, values["status"],
                        outcome.reason, outcome.detail[:200])

    def reclaim_stale(self) -> int:
        """Deliveries left `sending` by a dead worker: the receipts decide (module docstring)."""
        cutoff = utcnow() - timedelta(seconds=self.settings.broadcast_stale_after)
        with session_scope(self.url) as s:
            stale = s.execute(
                select(Delivery).where(Delivery.status == "sending", Delivery.claimed_at < cutoff)
                .order_by(Delivery.id).limit(1000)
            ).scalars().all()
        if not stale:
            return 0
        found = receipts.receipts(self.url, [receipts.delivery_key(d.id) for d in stale])
        now = utcnow()
        for delivery in stale:
            seen = found.get(receipts.delivery_key(delivery.id), [])
            ok = [r for r in seen if r.event in OK_RECEIPTS]
            bad = [r for r in seen if r.event == "failed"]
            if bad:
                values = {"status": "failed", "reason": RECEIPT_REASONS.get(bad[-1].error_code or 0, "rejected"),
                          "detail": f"refusé par la plateforme : {bad[-1].detail or bad[-1].error_code}"}
            elif ok:
                values = {"status": "sent", "sent_at": ok[0].at, "external_id": ok[0].external_id or None,
                          "reason": None, "detail": "envoi confirmé par la plateforme après une interruption"}
            elif delivery.channel in RECEIPT_CHANNELS:
                values = {"status": "pending", "next_attempt_at": now, "reason": "interrupted",
                          "detail": "envoi interrompu sans accusé de la plateforme : renvoyé"}
            else:
                values = {"status": "failed", "reason": "interrupted",
                          "detail": "envoi interrompu ; pas renvoyé, pour ne pas l'envoyer deux fois"}
            with session_scope(self.url) as s:
                s.execute(update(Delivery).where(Delivery.id == delivery.id, Delivery.status == "sending",
                                                 Delivery.claimed_at < cutoff)
                          .values(updated_at=now, **values).execution_options(synchronize_session=False))
            logger.warning("Delivery %s found interrupted (worker %s): now %s", delivery.id, delivery.claimed_by,
                           values["status"])
        return len(stale)

    def apply_failed_receipts(self) -> int:
        """A platform refusing a message after accepting the call (WhatsApp `failed` status)."""
        with session_scope(self.url) as s:
            rows = s.execute(
                select(DeliveryReceipt).where(DeliveryReceipt.id > self._receipt_cursor, DeliveryReceipt.event == "failed")
                .order_by(DeliveryReceipt.id)
            ).scalars().all()
            newest = s.execute(select(func.max(DeliveryReceipt.id))).scalar_one() or 0
        changed = 0
        for receipt in rows:
            try:
                delivery_id = int(receipt.key.removeprefix(receipts.KEY_PREFIX + "d"))
            except ValueError:
                continue
            with session_scope(self.url) as s:
                changed += s.execute(
                    update(Delivery).where(Delivery.id == delivery_id, Delivery.status == "sent")
                    .values(status="failed", reason=RECEIPT_REASONS.get(receipt.error_code or 0, "rejected"),
                            detail=f"refusé après envoi : {receipt.detail or receipt.error_code}", updated_at=utcnow())
                    .execution_options(synchronize_session=False)
                ).rowcount
        self._receipt_cursor = max(self._receipt_cursor, newest)
        return changed

    def _content(self, broadcast_id: int) -> Content:
        if broadcast_id not in self._contents:
            info = self.broadcasts.get(broadcast_id)
            if info is None:
                raise LookupError(f"broadcast {broadcast_id} not found")
            poll = Polls(self.url).get(info.poll_id) if info.poll_id else None
            self._contents[broadcast_id] = build(info, poll)
        return self._contents[broadcast_id]

    # Sending ----------------------------------------------------------------------------
    async def deliver(self, delivery_id: int) -> None:
        delivery = await asyncio.to_thread(self.claim, delivery_id)
        if delivery is None:
            return  # another worker has it
        sender = self.senders.get(delivery.channel) or NoPush()
        try:
            content = await asyncio.to_thread(self._content, delivery.broadcast_id)
            plan = await sender.plan(Job(delivery.id, delivery.channel, delivery.recipient, content))
            if isinstance(plan, Outcome):
                outcome = plan
            else:
                await asyncio.to_thread(self.set_route, delivery.id, plan.route)
                outcome = await plan.run(self.gate(delivery.channel))
        except Exception as exc:  # noqa: BLE001 - one broken delivery must not stop the others
            logger.exception("Delivery %s failed unexpectedly", delivery.id)
            outcome = Outcome("retry", "error", repr(exc)[:500])
        if outcome.slow_down:
            # Capped well below the stale delay: a delivery waiting here is still `sending`.
            pause = min(outcome.retry_after or self.settings.broadcast_retry_base, MAX_PAUSE,
                        self.settings.broadcast_stale_after / 4)
            self.gate(delivery.channel).pause(pause)
        await asyncio.to_thread(self.finish, delivery, outcome)

    async def run_once(self) -> int:
        """Checks interrupted deliveries, then sends one batch of due ones; returns its size."""
        await asyncio.to_thread(self.reclaim_stale)
        await asyncio.to_thread(self.apply_failed_receipts)
        due = await asyncio.to_thread(self.due)
        slots = asyncio.Semaphore(self.settings.broadcast_concurrency)
        tasks = []

        async def one(delivery_id: int) -> None:
            try:
                await self.deliver(delivery_id)
            finally:
                slots.release()

        for delivery_id in due:
            await slots.acquire()
            tasks.append(asyncio.create_task(one(delivery_id)))
        if tasks:
            await asyncio.gather(*tasks)
        for broadcast_id in await asyncio.to_thread(self.broadcasts.finish_done):
            logger.info("Broadcast %s: every delivery is done", broadcast_id)
            self._contents.pop(broadcast_id, None)
        return len(due)

    async def run(self, stop: asyncio.Event | None = None, until_idle: bool = False) -> None:
        """Works until `stop` is set (or, with `until_idle`, until nothing is left to do)."""
        stop = stop or asyncio.Event()
        logger.info("Broadcast worker %s started", self.worker_id)
        try:
            while not stop.is_set():
                try:
                    handled = await self.run_once()
                except Exception:  # noqa: BLE001 - the database away for a while: try again
                    logger.exception("Broadcast worker pass failed")
                    handled = 0
                if handled:
                    continue
                if until_idle and not await asyncio.to_thread(self.unfinished):
                    return
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self.settings.broadcast_poll_interval)
                except asyncio.TimeoutError:
                    pass
        finally:
            for sender in self.senders.values():
                try:
                    await sender.close()
                except Exception:  # noqa: BLE001
                    logger.debug("Closing a sender failed", exc_info=True)
