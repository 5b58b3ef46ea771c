"""Dispatch workers inside the parent.

Each worker takes one slice at a time (stream or retry), posts it to the app's child, records the
outcomes and gives the work back to the queue, so a small send waits behind at most one batch of
a large broadcast per worker, never the whole broadcast. Workers sleep until the API's NOTIFY or
the next poll; they coordinate with other parents only through PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid

import asyncpg
import structlog

from common.wire import Batch, BatchItem, ItemResult
from config.settings import ParentSettings
from parent.dispatch.backoff import retry_delay
from parent.dispatch.child_client import ChildClients, ChildUnavailable
from parent.dispatch.queue import DispatchQueue, LeaseLost, Work

log = structlog.get_logger("tocsin.dispatch")

WAKE_CHANNEL = "tocsin_dispatch"
#: per-minute app outcome counts kept for health (the API shows the last hour)
OUTCOME_HISTORY = "1 day"
MAINTENANCE_SECONDS = 600.0


class Dispatcher:
    def __init__(self, pool: asyncpg.Pool, settings: ParentSettings) -> None:
        self._pool = pool
        self._settings = settings
        self._queue = DispatchQueue(pool, settings)
        self._children = ChildClients(settings.child_timeout_seconds)
        self._stopping = asyncio.Event()
        self._wakeups: list[asyncio.Event] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._listener: asyncpg.Connection | None = None

    async def start(self) -> None:
        if self._settings.dispatch_workers == 0:
            return
        self._listener = await asyncpg.connect(self._settings.database_url)
        await self._listener.add_listener(WAKE_CHANNEL, self._on_notify)
        for n in range(self._settings.dispatch_workers):
            wake = asyncio.Event()
            self._wakeups.append(wake)
            task = asyncio.create_task(self._run(wake), name=f"dispatch-{n}")
            task.add_done_callback(self._on_worker_exit)
            self._tasks.append(task)
        maintenance = asyncio.create_task(self._maintain(), name="dispatch-maintenance")
        maintenance.add_done_callback(self._on_worker_exit)
        self._tasks.append(maintenance)
        log.info("dispatch started", workers=self._settings.dispatch_workers)

    async def stop(self) -> None:
        """Shutdown, in order: stop claiming, let in-flight slices finish, close connections."""
        self._stopping.set()
        for wake in self._wakeups:
            wake.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=self._settings.shutdown_grace_seconds)
            for task in pending:  # their leases expire and another parent takes over
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._listener is not None:
            await self._listener.close()
        await self._children.close()

    def _on_notify(self, *_: object) -> None:
        for wake in self._wakeups:
            wake.set()

    def _on_worker_exit(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._stopping.is_set():
            return
        # A bug, not a transient fault: fail fast so the supervisor restarts a clean process.
        log.error("dispatch worker crashed", worker=task.get_name(),
                  error=repr(task.exception()))
        os.kill(os.getpid(), signal.SIGTERM)

    async def _run(self, wake: asyncio.Event) -> None:
        failures = 0
        while not self._stopping.is_set():
            wake.clear()
            try:
                worked = await self._step()
                failures = 0
            except (OSError, asyncpg.PostgresConnectionError,
                    asyncpg.InterfaceError, asyncpg.CannotConnectNowError) as exc:
                failures += 1
                log.warning("database unavailable, dispatch waits", error=exc.__class__.__name__)
                worked = False
                await asyncio.sleep(min(30.0, 0.5 * 2**failures))
            if not worked:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), self._settings.idle_poll_seconds)

    async def _maintain(self) -> None:
        """Prune old health counts now and then; several parents doing it at once is harmless."""
        while not self._stopping.is_set():
            try:
                await self._pool.execute(
                    f"DELETE FROM app_outcomes WHERE minute < now() - interval '{OUTCOME_HISTORY}'")
            except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
                log.warning("maintenance skipped", error=exc.__class__.__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), MAINTENANCE_SECONDS)

    async def _step(self) -> bool:
        """Do one slice of work; False when nothing was due."""
        worked = False
        for claim in (self._queue.claim_stream, self._queue.claim_retry):
            if self._stopping.is_set():
                break
            work = await claim()
            if work is not None:
                await self._process(work)
                worked = True
        return worked

    async def _process(self, work: Work) -> None:
        results: dict[int, ItemResult] = {}
        app_throttled_for = None
        if work.targets:
            batch = Batch(
                batch_id=str(uuid.uuid4()),
                app=work.route.app_name,
                payloads=[work.payload],
                items=[BatchItem(id=str(t.installation_pk), channel=t.channel)
                       for t in work.targets],
            )
            try:
                answer = await self._children.post(work.route, batch)
            except ChildUnavailable as exc:
                delay = retry_delay(work.child_failures + 1, self._settings.retry_base_seconds,
                                    self._settings.retry_max_seconds)
                log.warning("child unavailable, slice released", app=work.route.app_name,
                            error=str(exc), retry_in=round(delay, 1))
                await self._queue.release(work, str(exc), delay)
                return
            results = {int(r.id): r for r in answer.results}
            app_throttled_for = answer.app_throttled_for
            if app_throttled_for:
                log.warning("WNS throttled the app", app=work.route.app_name,
                            seconds=app_throttled_for)
        try:
            await self._queue.record(work, results, app_throttled_for)
        except LeaseLost:
            log.warning("lease lost before results were recorded; the slice will be redone",
                        notification=str(work.notification_id), app=work.route.app_name)
