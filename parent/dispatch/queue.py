"""The durable dispatch queue in PostgreSQL.

Two kinds of work, both claimed with `FOR UPDATE SKIP LOCKED` and a lease token:

* a *stream slice*: the next `batch_size` targets of one notification for one app, read after the
  delivery's keyset cursor. The cursor, the outcome counts and the lease are updated in the same
  transaction as the results, so a crash repeats at most the batches in flight, and memory never
  depends on how many installations a notification targets.
* a *retry slice*: due targets of one notification for one app that came back throttled or with
  a transient error.

Results are recorded only while the lease is still ours (fencing): a worker that lost its lease
rolls back and the targets are sent again by whoever holds it now.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from common import secretbox
from common.wire import ItemResult, Outcome, Payload
from config.settings import ParentSettings
from parent.db import Connection
from parent.dispatch.backoff import retry_delay
from parent.dispatch.child_client import ChildRoute
from parent.targeting import predicate

#: outcomes after which the target gets another attempt
RETRYABLE = {Outcome.throttled: "throttled", Outcome.retry: "retry",
             Outcome.credentials_invalid: "retry"}
#: every count a delivery keeps; they add up to `targeted`
COUNTS = ("delivered", "dropped", "throttled", "rejected", "forbidden", "channel_gone", "retry",
          "failed")


#: apps whose credentials were refused (paused) or that WNS throttled get no work until then
_APP_MAY_SEND = "a.paused_at IS NULL AND (a.throttled_until IS NULL OR a.throttled_until <= now())"


class LeaseLost(Exception):
    """Another worker took over this work; our results must not be recorded."""


@dataclass(frozen=True)
class Target:
    installation_pk: int
    channel: str
    revision: int
    attempt: int = 1
    #: the count this target sits in while it waits for a retry
    counted_as: str | None = None


@dataclass
class Work:
    kind: str  # "stream" or "retry"
    notification_id: uuid.UUID
    hub_id: int
    route: ChildRoute
    payload: Payload
    lease_token: uuid.UUID
    targets: list[Target]
    #: targets resolved without a post (installation deleted or retired meanwhile)
    vanished: list[Target] = field(default_factory=list)
    last_page: bool = False
    #: consecutive times the child did not answer for this work (drives its backoff)
    child_failures: int = 0
    #: time left before the notification's deliver-by deadline
    seconds_left: float = float("inf")


@dataclass
class _Tally:
    counts: Counter[str] = field(default_factory=Counter)
    retries: list[tuple[int, int, str, float]] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    gone: list[tuple[int, int, str]] = field(default_factory=list)
    #: what WNS said per installation: (pk, outcome, WNS details as JSON)
    last: list[tuple[int, str, str]] = field(default_factory=list)
    #: outcomes as WNS answered them, for the app's health
    answered: Counter[str] = field(default_factory=Counter)


class DispatchQueue:
    def __init__(self, pool: asyncpg.Pool, settings: ParentSettings) -> None:
        self._pool = pool
        self._settings = settings
        self._master_key = settings.master_key.get_secret_value()

    async def _context(self, conn: Connection, notification_id: uuid.UUID,
                       app_id: int) -> tuple[asyncpg.Record, ChildRoute, Payload]:
        row = await conn.fetchrow(
            "SELECT n.hub_id, n.target, n.payload, a.name, a.child_url, a.signing_key_id,"
            " a.signing_key_enc, extract(epoch FROM n.deliver_by - now())::float8 AS seconds_left"
            " FROM notifications n JOIN apps a ON a.id = $2"
            " WHERE n.id = $1", notification_id, app_id)
        assert row is not None
        route = ChildRoute(app_id, row["name"], row["child_url"], row["signing_key_id"],
                           secretbox.decrypt(self._master_key, row["signing_key_enc"]).encode())
        return row, route, Payload.model_validate(row["payload"])

    async def claim_stream(self) -> Work | None:
        token = uuid.uuid4()
        async with self._pool.acquire() as conn, conn.transaction():
            claimed = await conn.fetchrow(
                "UPDATE deliveries d SET due_at = now() + make_interval(secs => $1),"
                " lease_token = $2"
                " FROM (SELECT d2.notification_id, d2.app_id FROM deliveries d2"
                "       JOIN apps a ON a.id = d2.app_id"
                f"       WHERE NOT d2.streamed AND d2.due_at <= now() AND {_APP_MAY_SEND}"
                "       ORDER BY d2.due_at LIMIT 1 FOR UPDATE OF d2 SKIP LOCKED) pick"
                " WHERE d.notification_id = pick.notification_id AND d.app_id = pick.app_id"
                " RETURNING d.notification_id, d.app_id, d.cursor, d.child_failures",
                self._settings.lease_seconds, token)
            if claimed is None:
                return None
            nid, app_id = claimed["notification_id"], claimed["app_id"]
            ctx, route, payload = await self._context(conn, nid, app_id)
            await conn.execute(
                "UPDATE notifications SET state = 'dispatching' WHERE id = $1 AND state = 'accepted'",
                nid)
        where, params = predicate(ctx["target"], 5)
        rows = await self._pool.fetch(
            "SELECT i.id, i.push_channel, i.revision FROM installations i"
            " WHERE i.hub_id = $1 AND i.app_id = $2 AND i.id > $3 AND NOT i.push_channel_expired"
            f" AND {where} ORDER BY i.id LIMIT $4",
            ctx["hub_id"], app_id, claimed["cursor"], self._settings.batch_size, *params)
        targets = [Target(r["id"], r["push_channel"], r["revision"]) for r in rows]
        return Work("stream", nid, ctx["hub_id"], route, payload, token, targets,
                    last_page=len(targets) < self._settings.batch_size,
                    child_failures=claimed["child_failures"],
                    seconds_left=_seconds(ctx["seconds_left"]))

    async def claim_retry(self) -> Work | None:
        token = uuid.uuid4()
        async with self._pool.acquire() as conn, conn.transaction():
            pick = await conn.fetchrow(
                "SELECT r.notification_id, r.app_id FROM retries r JOIN apps a ON a.id = r.app_id"
                f" WHERE r.due_at <= now() AND {_APP_MAY_SEND}"
                " ORDER BY r.due_at LIMIT 1 FOR UPDATE OF r SKIP LOCKED")
            if pick is None:
                return None
            nid, app_id = pick["notification_id"], pick["app_id"]
            rows = await conn.fetch(
                "UPDATE retries r SET due_at = now() + make_interval(secs => $3), lease_token = $4"
                " FROM (SELECT installation_pk FROM retries WHERE notification_id = $1"
                "       AND app_id = $2 AND due_at <= now() ORDER BY due_at LIMIT $5"
                "       FOR UPDATE SKIP LOCKED) due"
                " WHERE r.notification_id = $1 AND r.installation_pk = due.installation_pk"
                " RETURNING r.installation_pk, r.attempt, r.outcome",
                nid, app_id, self._settings.lease_seconds, token, self._settings.batch_size)
            ctx, route, payload = await self._context(conn, nid, app_id)
            live = {
                r["id"]: r for r in await conn.fetch(
                    "SELECT id, push_channel, revision FROM installations"
                    " WHERE id = ANY($1) AND NOT push_channel_expired",
                    [r["installation_pk"] for r in rows])
            }
        work = Work("retry", nid, ctx["hub_id"], route, payload, token, [],
                    seconds_left=_seconds(ctx["seconds_left"]))
        for r in rows:
            inst = live.get(r["installation_pk"])
            target = Target(r["installation_pk"], inst["push_channel"] if inst else "",
                            inst["revision"] if inst else 0, r["attempt"], r["outcome"])
            (work.targets if inst else work.vanished).append(target)
        return work

    def _tally(self, work: Work, results: dict[int, ItemResult]) -> _Tally:
        tally = _Tally()
        s = self._settings
        for target in work.vanished:
            tally.counts["channel_gone"] += 1
            tally.resolved.append(target.installation_pk)
        for target in work.targets:
            result = results.get(target.installation_pk)
            outcome = result.outcome if result else Outcome.retry
            tally.answered[outcome.value] += 1
            if result is not None:
                tally.last.append((target.installation_pk, outcome.value,
                                   result.wns.model_dump_json(exclude_none=True)))
            count = RETRYABLE.get(outcome)
            if count is not None:
                delay = retry_delay(target.attempt, s.retry_base_seconds, s.retry_max_seconds,
                                    result.retry_after if result else None)
                if target.attempt < s.max_attempts and delay < work.seconds_left:
                    tally.retries.append((target.installation_pk, target.attempt + 1, count, delay))
                    tally.counts[count] += 1
                    continue
                count = "failed"
            else:
                count = outcome.value
                if outcome is Outcome.channel_gone:
                    tally.gone.append((target.installation_pk, target.revision,
                                       _gone_reason(result)))
            tally.counts[count] += 1
            tally.resolved.append(target.installation_pk)
        for target in work.targets + work.vanished:
            if target.counted_as is not None:
                tally.counts[target.counted_as] -= 1
        return tally

    async def record(self, work: Work, results: dict[int, ItemResult],
                     app_throttled_for: float | None = None) -> None:
        """Store a slice's outcomes, retire gone channels, schedule retries and update the
        installations' last outcome and the app's health, atomically."""
        tally = self._tally(work, results)
        deltas = [tally.counts.get(name, 0) for name in COUNTS]
        async with self._pool.acquire() as conn, conn.transaction():
            if work.kind == "stream":
                cursor = max((t.installation_pk for t in work.targets), default=None)
                fenced = await conn.fetchval(
                    f"UPDATE deliveries SET {_count_sets(4)}, targeted = targeted + $3,"
                    f" cursor = coalesce(${len(COUNTS) + 4}, cursor),"
                    f" streamed = ${len(COUNTS) + 5}, due_at = now(), lease_token = NULL,"
                    " child_failures = 0, last_error = NULL"
                    " WHERE notification_id = $1 AND app_id = $2"
                    f" AND lease_token = ${len(COUNTS) + 6} RETURNING 1",
                    work.notification_id, work.route.app_id, len(work.targets), *deltas,
                    cursor, work.last_page, work.lease_token)
                if fenced is None:
                    raise LeaseLost()
                await conn.execute(
                    "INSERT INTO retries (notification_id, app_id, installation_pk, attempt,"
                    " outcome, due_at) SELECT $1, $2, pk, attempt, outcome,"
                    " now() + make_interval(secs => delay)"
                    " FROM unnest($3::bigint[], $4::int[], $5::text[], $6::float8[])"
                    "  AS t(pk, attempt, outcome, delay)",
                    work.notification_id, work.route.app_id, *_columns(tally.retries, 4))
            else:
                removed = await conn.fetchval(
                    "WITH gone AS (DELETE FROM retries WHERE notification_id = $1"
                    " AND installation_pk = ANY($2) AND lease_token = $3 RETURNING 1)"
                    " SELECT count(*) FROM gone",
                    work.notification_id, tally.resolved, work.lease_token)
                moved = await conn.fetchval(
                    "WITH moved AS (UPDATE retries r SET attempt = t.attempt,"
                    " outcome = t.outcome, due_at = now() + make_interval(secs => t.delay),"
                    " lease_token = NULL"
                    " FROM unnest($2::bigint[], $3::int[], $4::text[], $5::float8[])"
                    "  AS t(pk, attempt, outcome, delay)"
                    " WHERE r.notification_id = $1 AND r.installation_pk = t.pk"
                    " AND r.lease_token = $6 RETURNING 1) SELECT count(*) FROM moved",
                    work.notification_id, *_columns(tally.retries, 4), work.lease_token)
                if removed + moved != len(work.targets) + len(work.vanished):
                    raise LeaseLost()
                await conn.execute(
                    f"UPDATE deliveries SET {_count_sets(3)}"
                    " WHERE notification_id = $1 AND app_id = $2",
                    work.notification_id, work.route.app_id, *deltas)
            if tally.gone:
                # Retire only if the installation was not re-registered after the batch formed.
                await conn.execute(
                    "UPDATE installations i SET push_channel_expired = true, retired_at = now(),"
                    " retired_reason = t.reason"
                    " FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS t(pk, rev, reason)"
                    " WHERE i.id = t.pk AND i.revision = t.rev",
                    *_columns(tally.gone, 3))
            await self._note_health(conn, work.route.app_id, tally, app_throttled_for)
            if work.kind == "retry" or work.last_page:  # only these can finish the notification
                await self._complete_if_done(conn, work.notification_id)

    @staticmethod
    async def _note_health(conn: Connection, app_id: int, tally: _Tally,
                           app_throttled_for: float | None) -> None:
        if tally.last:
            await conn.execute(
                "UPDATE installations i SET last_outcome = t.outcome, last_outcome_at = now(),"
                " last_wns = t.wns::jsonb"
                " FROM unnest($1::bigint[], $2::text[], $3::text[]) AS t(pk, outcome, wns)"
                " WHERE i.id = t.pk", *_columns(tally.last, 3))
        if tally.answered:
            await conn.execute(
                "INSERT INTO app_outcomes (app_id, minute, outcome, count)"
                " SELECT $1, date_trunc('minute', now()), o, c"
                " FROM unnest($2::text[], $3::int[]) AS t(o, c)"
                " ON CONFLICT (app_id, minute, outcome)"
                " DO UPDATE SET count = app_outcomes.count + EXCLUDED.count",
                app_id, list(tally.answered), list(tally.answered.values()))
        if tally.answered[Outcome.credentials_invalid.value]:
            await conn.execute(
                "UPDATE apps SET paused_at = now(), paused_reason = $2"
                " WHERE id = $1 AND paused_at IS NULL",
                app_id, "WNS refused the app's credentials; fix the child's secret, then resume")
        if app_throttled_for:
            await conn.execute(
                "UPDATE apps SET throttled_until = greatest(coalesce(throttled_until, now()),"
                " now() + make_interval(secs => $2)) WHERE id = $1", app_id, app_throttled_for)

    async def release(self, work: Work, error: str, attempt_delay: float) -> None:
        """Give the work back untouched (the child did not answer), due again after a pause."""
        async with self._pool.acquire() as conn:
            if work.kind == "stream":
                await conn.execute(
                    "UPDATE deliveries SET due_at = now() + make_interval(secs => $3),"
                    " lease_token = NULL, child_failures = child_failures + 1, last_error = $4"
                    " WHERE notification_id = $1 AND app_id = $2 AND lease_token = $5",
                    work.notification_id, work.route.app_id, attempt_delay, error,
                    work.lease_token)
            else:
                await conn.execute(
                    "UPDATE retries SET due_at = now() + make_interval(secs => $2),"
                    " lease_token = NULL WHERE notification_id = $1 AND lease_token = $3",
                    work.notification_id, attempt_delay, work.lease_token)

    @staticmethod
    async def _complete_if_done(conn: Connection, notification_id: uuid.UUID) -> None:
        # Lock first: two workers finishing two apps' deliveries at once must not each miss the
        # other's uncommitted row. The lock comes after our own writes, so whichever commits
        # second sees the first's work in its (new) statement snapshot.
        await conn.execute("SELECT 1 FROM notifications WHERE id = $1 FOR UPDATE", notification_id)
        await conn.execute(
            "UPDATE notifications SET state = 'completed', completed_at = now()"
            " WHERE id = $1 AND state <> 'completed'"
            " AND NOT EXISTS (SELECT 1 FROM deliveries WHERE notification_id = $1 AND NOT streamed)"
            " AND NOT EXISTS (SELECT 1 FROM retries WHERE notification_id = $1)",
            notification_id)


def _seconds(value: float | None) -> float:
    return float("inf") if value is None else value


def _count_sets(first_param: int) -> str:
    """`delivered = delivered + $n, ...` for every count, parameters numbered from `first_param`."""
    return ", ".join(f"{name} = {name} + ${first_param + i}" for i, name in enumerate(COUNTS))


def _gone_reason(result: ItemResult | None) -> str:
    status = result.http_status if result else None
    return "expired (410)" if status == 410 else "invalid (404)" if status == 404 else "gone"


def _columns(rows: list[Any], width: int) -> list[list[Any]]:
    """Row tuples to per-column lists, the shape `unnest` takes."""
    return [list(col) for col in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]
