"""Delivery workers: a small thread pool that drains the outbox in the background.

Workers sleep on a condition that every enqueue signals, so delivery starts within
milliseconds, and a short retry wakes them at its due time. APScheduler runs the
periodic jobs: waking workers when another process's message falls due or its claim
expires, renewing the claims this process is working on, pruning old provider ids. Each
worker claims one contact at a time, so messages of a contact are delivered in order
while contacts proceed in parallel.

The jobs run in the scheduler's own thread (APScheduler's ``DebugExecutor``), not in a
``concurrent.futures`` pool: they are short, and a pool refuses work once the
interpreter starts shutting down, which printed a traceback per job while a backlog
drained at exit.
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import threading
import time
import uuid
import weakref
from collections.abc import Callable

from apscheduler.executors.debug import DebugExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from .delivery import BOT, RELAY, Deliverer, MirroredMessage
from .errors import (
    AmbiguousDelivery,
    AuthError,
    ChatwootError,
    Deferred,
    NotFound,
    RateLimited,
    Rejected,
    StoreError,
    StoreUnavailable,
)
from .outbox import Backoff, decode
from .pacing import Pacer
from .store import Store, ValueItem
from .store.base import SEEN_RETENTION

log = logging.getLogger("chatwoot_mirror.delivery")

_SCHEDULER_LOGGER = "chatwoot_mirror.scheduler"
_EXECUTOR = "chatwoot_mirror"
# APScheduler logs every job run at INFO; our periodic jobs are not news.
logging.getLogger(f"apscheduler.executors.{_EXECUTOR}").setLevel(logging.WARNING)
logging.getLogger(_SCHEDULER_LOGGER).setLevel(logging.WARNING)

DONE, RETRY, DEAD = "done", "retry", "dead"
#: what never talks to Chatwoot: a relay goes to the provider, a bot turn to the host's bot
_NOT_CHATWOOT = (RELAY, BOT)
SEEN_IDS_KEPT_FOR = SEEN_RETENTION


# Workers whose threads are running. At interpreter exit they are stopped (without
# draining: Mirror.close() drains) so that no daemon thread is still logging while the
# interpreter finalises, which can abort the process.
_RUNNING: weakref.WeakSet[DeliveryWorkers] = weakref.WeakSet()


@atexit.register
def _stop_running_workers() -> None:
    for workers in list(_RUNNING):
        workers.stop(timeout=1.0)


class DeliveryWorkers:
    """Owns the worker threads and the scheduler of one Mirror."""

    def __init__(
        self,
        store: Store,
        deliverer: Deliverer,
        *,
        workers: int = 4,
        batch: int = 20,
        claim_ttl: float = 30.0,
        tick: float = 0.5,
        backoff: Backoff | None = None,
        pacer: Pacer | None = None,
        on_result: Callable[[str, MirroredMessage, str | None], None] | None = None,
        periodic: list[tuple[float, Callable[[], object]]] | None = None,
    ) -> None:
        self.store = store
        self.deliverer = deliverer
        self.workers = workers
        self.batch = batch
        self.claim_ttl = claim_ttl
        self.tick = tick
        self.backoff = backoff or Backoff()
        self.pacer = pacer or Pacer(None)
        self.on_result = on_result
        self.periodic = list(periodic or [])
        # One claim owner per worker thread: a worker's release must never drop a claim
        # that another thread of the same process holds on the same contact.
        base = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.owners = [f"{base}-{i}" for i in range(workers)]
        self.rng = random.Random()
        # A counter under a condition, not an Event: a worker remembers the count before it
        # claims, so a wake that lands between its empty claim and its wait is never lost.
        self._signals = 0
        self._signal_cv = threading.Condition()
        # monotonic time of the earliest short retry; an idle worker wakes for it
        self._wake_at: float | None = None
        # owners (worker threads) in the middle of a run: only their claims are renewed
        self._active: set[str] = set()
        self._active_lock = threading.Lock()
        self._stop = threading.Event()
        self._progress = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._scheduler: BackgroundScheduler | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the scheduler, then the worker threads; if anything fails on the way,
        whatever was started is stopped again before the error propagates (no thread of a
        mirror that failed to start keeps running)."""
        try:
            scheduler = BackgroundScheduler(
                logger=logging.getLogger(_SCHEDULER_LOGGER),
                executors={_EXECUTOR: DebugExecutor()},
                job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
                daemon=True,
            )
            jobs = [
                (self.tick, self._wake_if_due, "outbox check"),
                (max(0.05, self.claim_ttl / 3), self._renew_claims, "claim renewal"),
                (3600.0, self._prune, "pruning provider ids"),
                (1.0, self.store.maintain, "store upkeep"),
            ] + [(seconds, job, getattr(job, "__name__", "host job"))
                 for seconds, job in self.periodic]
            for seconds, job, name in jobs:
                scheduler.add_job(self._guarded(job, name), "interval", seconds=seconds,
                                  executor=_EXECUTOR)
            self._stop.clear()
            _RUNNING.add(self)
            scheduler.start()
            self._scheduler = scheduler
            for i in range(self.workers):
                thread = threading.Thread(
                    target=self._run, args=(self.owners[i],), name=f"chatwoot-mirror-{i}",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)
            if self.store.has_spill:
                thread = threading.Thread(target=self._move_spilled, daemon=True,
                                          name="chatwoot-mirror-spill")
                thread.start()
                self._threads.append(thread)
        except BaseException:
            self.stop(timeout=1.0)
            raise
        self.wake()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the scheduler and the workers; a message mid-delivery is finished first."""
        _RUNNING.discard(self)
        self._stop.set()
        self.wake()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = []

    def wake(self) -> None:
        with self._signal_cv:
            self._signals += 1
            self._signal_cv.notify_all()

    def _wake_later(self, delay: float) -> None:
        at = time.monotonic() + delay
        with self._signal_cv:
            if self._wake_at is None or at < self._wake_at:
                self._wake_at = at
                self._signal_cv.notify_all()  # a sleeping worker shortens its wait

    def _sleep(self, seen: int) -> None:
        """Wait for a signal newer than ``seen``, a stop, or the earliest short retry."""
        with self._signal_cv:
            while self._signals == seen and not self._stop.is_set():
                timeout = None
                if self._wake_at is not None:
                    timeout = self._wake_at - time.monotonic()
                    if timeout <= 0:
                        self._wake_at = None
                        self._signals += 1  # due: every idle worker looks
                        self._signal_cv.notify_all()
                        return
                self._signal_cv.wait(timeout)

    def wait_for_progress(self, timeout: float) -> None:
        """Sleep until a worker finishes a message (or ``timeout``)."""
        with self._progress:
            self._progress.wait(timeout)

    def drain(self, target: float, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until nothing created at or before ``target`` is
        queued and the spill is empty. The whole spill, not only what is older: writes
        spilled while the backlog is delivered (its id map) belong to it. A store error
        (Redis restarting) is waited out with short pauses, not taken as the answer:
        ``False`` only when the time is up."""
        deadline = time.monotonic() + timeout
        pause, error = 0.05, None
        self.wake()
        while True:
            try:
                spilled, _ = self.store.spilled()
                busy = spilled > 0 or self.store.has_queued_before(target)
                pause, error = 0.05, None
            except StoreError as exc:
                busy, error = True, exc
                pause = min(pause * 2, 0.5)
            if not busy:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                if error is not None:
                    log.error("flush ended with the store unavailable error=%s", error)
                return False
            if error is not None:
                time.sleep(min(left, pause))
            else:
                self.wait_for_progress(min(left, 0.05))

    # -- periodic jobs ------------------------------------------------------------------------

    def _wake_if_due(self) -> None:
        due = self.store.next_due_at(time.time())
        if due is not None and due <= time.time():
            self.wake()

    def _renew_claims(self) -> None:
        # Only runs in progress keep their claims alive. A claim left behind (its release
        # failed on a store error) then lapses after claim_ttl, and the contact recovers
        # by itself: whoever claims it next checks Chatwoot before posting again.
        with self._active_lock:
            active = sorted(self._active)
        self.store.renew_claims(active, self.claim_ttl, time.time())

    def _prune(self) -> None:
        self.store.prune_seen(time.time() - SEEN_IDS_KEPT_FOR)

    @staticmethod
    def _guarded(job: Callable[[], object], name: str) -> Callable[[], None]:
        """Every periodic job runs through here: a store failure is one warning line and the
        job runs again at its next interval; anything else is logged with its traceback."""
        def run() -> None:
            try:
                job()
            except StoreUnavailable as exc:  # the store's circuit logs the outage once
                log.debug("periodic job failed job=%s error=%s", name, exc)
            except StoreError as exc:
                log.warning("periodic job failed job=%s error=%s", name, exc)
            except Exception:
                log.exception("periodic job failed job=%s", name)
        return run

    # -- the spill's mover --------------------------------------------------------------------

    def _move_spilled(self) -> None:
        """Move what the local spill holds into the store as soon as it answers again."""
        while not self._stop.is_set():
            try:
                moved = self.store.move_spilled(200)
            except StoreError as exc:
                log.warning("spill move failed error=%s", exc)
                moved = 0
                self._stop.wait(1.0)
            except Exception:  # a bug must not end the moving for good
                log.exception("spill move failed")
                moved = 0
                self._stop.wait(1.0)
            if moved:
                self.wake()
                with self._progress:
                    self._progress.notify_all()
            else:
                self._stop.wait(0.2)

    # -- the worker loop ----------------------------------------------------------------------

    def _run(self, owner: str) -> None:
        while not self._stop.is_set():
            seen = self._signals
            try:
                rows = self.store.claim(owner, self.claim_ttl, self.batch, time.time())
            except StoreUnavailable as exc:  # the store's circuit logs the outage once
                log.debug("outbox claim failed error=%s", exc)
                self._stop.wait(0.5)
                continue
            except StoreError as exc:
                log.warning("outbox claim failed error=%s", exc)
                self._stop.wait(1.0)
                continue
            if not rows:
                self._sleep(seen)
                continue
            self._deliver_run(owner, rows[0].contact_key, [decode(row) for row in rows])

    def _deliver_run(
        self, owner: str, contact_key: str, messages: list[MirroredMessage]
    ) -> None:
        """Deliver one claimed run; ``contact_key`` is the queue's key (relays have their own)."""
        with self._active_lock:
            self._active.add(owner)
        try:
            self._deliver_claimed(owner, contact_key, messages)
        finally:
            with self._active_lock:
                self._active.discard(owner)

    def _deliver_claimed(
        self, owner: str, contact_key: str, messages: list[MirroredMessage]
    ) -> None:
        with self.deliverer.one_run():
            self._deliver_each(owner, contact_key, messages)

    def _deliver_each(
        self, owner: str, contact_key: str, messages: list[MirroredMessage]
    ) -> None:
        for message in messages:
            # the pace (and an outage's probes) is Chatwoot's: a relay to the provider or
            # a bot turn never waits for it
            paced = message.direction not in _NOT_CHATWOOT
            if self._stop.is_set() or (paced and not self.pacer.acquire(self._stop)):
                break
            try:
                outcome = self._deliver_one(owner, message)
            finally:
                self.pacer.finished()
            with self._progress:
                self._progress.notify_all()
            if outcome == RETRY:
                return  # the contact's later messages wait behind this one: order is kept
        try:
            self.store.release(contact_key, owner)
        except StoreError as exc:
            log.warning("claim release failed contact=%s error=%s", contact_key, exc)

    def _deliver_one(self, owner: str, message: MirroredMessage) -> str:
        key = message.identity.key
        where: list[ValueItem] = []  # the id map, stored with the completion: one round trip
        try:
            found = (self.deliverer.find_delivered(message, record_into=where)
                     if message.ambiguous else None)
            if found is not None:
                log.info(
                    "message already in chatwoot contact=%s chatwoot_message=%s key=%s",
                    key, found, message.key,
                )
                message_id = found
            else:
                result = self.deliverer.deliver(message, record_into=where)
                message_id = int(result.get("id") or 0)
            self.store.complete_with_values(message.key, owner, message_id or None, where)
            self.pacer.reward()
            self._report(DONE, message, None)
            return DONE
        except RateLimited as exc:
            if exc.scope == "conversation":
                delay = self.backoff.flood_delay(self.rng)
                log.warning(
                    "conversation flood limit contact=%s retry_in=%.0fs", key, delay
                )
            else:
                delay = self.pacer.penalize()
                log.warning("chatwoot rate limit (429) retry_in=%.1fs", delay)
            return self._retry(owner, message, delay, str(exc), ambiguous=False, attempt=False)
        except AmbiguousDelivery as exc:
            return self._retry(owner, message, None, str(exc), ambiguous=True, attempt=True)
        except Deferred as exc:  # nothing was sent: soon again, and no attempt counted
            return self._retry(owner, message, exc.delay * (1 + self.rng.random()), str(exc),
                               ambiguous=False, attempt=False, quiet=True)
        except (Rejected, AuthError, NotFound) as exc:
            return self._dead(owner, message, str(exc))
        except ChatwootError as exc:
            return self._retry(owner, message, None, str(exc), ambiguous=False, attempt=True)
        except StoreError as exc:
            # The claim lapses by itself; whoever takes it over checks Chatwoot first.
            log.error("store failed during delivery contact=%s error=%s", key, exc)
            self._report(RETRY, message, str(exc))
            self._stop.wait(1.0)
            return RETRY
        except Exception as exc:  # a bug must not kill the worker or lose the message
            log.exception("unexpected delivery failure contact=%s", key)
            return self._retry(
                owner, message, None, type(exc).__name__, ambiguous=True, attempt=True
            )

    def _retry(
        self,
        owner: str,
        message: MirroredMessage,
        delay: float | None,
        error: str,
        *,
        ambiguous: bool,
        attempt: bool,
        quiet: bool = False,
    ) -> str:
        attempts = message.attempts + (1 if attempt else 0)
        if delay is None and message.direction in _NOT_CHATWOOT:
            delay = self.backoff.delay(attempts, self.rng)  # Chatwoot's health is not theirs
        elif delay is None:  # by Chatwoot's health: soon, after the outage, or backing off
            delay = self.pacer.retry_delay(attempts, self.backoff, self.rng)
        if delay < self.tick * 10:
            # Short retries are woken for exactly; longer ones are caught by the tick.
            self._wake_later(delay)
        # The first failure of a message is news; its retries during an outage are not
        # (a thousand contacts would otherwise log a thousand lines per backoff round).
        log.log(
            logging.WARNING if attempts <= 1 and not quiet else logging.DEBUG,
            "delivery failed contact=%s key=%s attempt=%d retry_in=%.1fs error=%s",
            message.identity.key, message.key, attempts, delay, error,
        )
        try:
            self.store.retry_later(
                message.key, owner, time.time() + delay, error,
                uncertain=ambiguous, attempt=attempt,
            )
        except StoreError as exc:
            log.error("cannot schedule retry contact=%s error=%s", message.identity.key, exc)
        self._report(RETRY, message, error)
        return RETRY

    def _dead(self, owner: str, message: MirroredMessage, reason: str) -> str:
        log.error(
            "message dead-lettered contact=%s key=%s reason=%s",
            message.identity.key, message.key, reason,
        )
        try:
            self.store.dead_letter(message.key, owner, reason)
        except StoreError as exc:
            log.error("cannot dead-letter contact=%s error=%s", message.identity.key, exc)
        self._report(DEAD, message, reason)
        return DEAD

    def _report(self, outcome: str, message: MirroredMessage, error: str | None) -> None:
        if self.on_result is not None:
            self.on_result(outcome, message, error)

