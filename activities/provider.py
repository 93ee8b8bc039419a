"""Provider calls: submit a run exactly once, follow it, cancel it, and forward refills at most once.

The submission row is committed before the request leaves. A retry that finds a row still `sending` does not
know whether the provider got the first request: it re-sends only to providers that deduplicate by our key,
and otherwise marks the run `needs_reconciliation` for ops instead of risking a double delivery. Refills
follow the same rule with their own table.

Status reads are coalesced per provider: the checks of many orders in flight that arrive within a short
window leave as one `status` call with up to 100 ids (`providers.batching`). Every request to a provider
waits for its token bucket when the provider has `rate_limit_per_second`: one bucket in PostgreSQL shared by
every worker (store/ratelimit.py), so N workers do not send N times the rate.

Temporary trouble (ProviderUnavailable, ProviderAmbiguous) is retried by Temporal, and the workflow decides
how long to wait. Final refusals are non-retryable ApplicationErrors with a `type` below; database work that
can never succeed is STEP_FAILED (activities/failures.py). `submit_run` takes the slot itself, so its
failures name their provider in the error's details: the order then knows where it holds the slot.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.failures import fails_for_good, permanent_failures
from activities.slots import route_for
from providers.batching import Coalescer
from providers.client import (
    ApiV2Client,
    ProviderError,
    ProviderLinkFault,
    ProviderOrderStatus,
    ProviderRefillStatus,
    ProviderRejected,
    ProviderUnavailable,
)
from store.catalog import provider_link
from store.db import transaction
from store.models import ProviderRefill, ProviderSubmission
from store.ratelimit import SharedTokenBucket
from workflows.errors import LINK_FAULT, NEEDS_RECONCILIATION, REJECTED
from workflows.models import (
    CancelAnswer,
    CancelRun,
    CheckRefill,
    CheckRun,
    RefillReport,
    RouteRef,
    RunReport,
    SubmitRefill,
    SubmitRun,
    SubmittedRefill,
    SubmittedRun,
)
from workflows.policy import TYPE_RULES, run_link_fault

# How long status checks wait for company before their batch leaves.
BATCH_WINDOW_SECONDS = 0.1


@dataclass
class _Upstream:
    """One provider as this worker talks to it: its client, its token bucket and its status batchers."""

    config: tuple[str, str, float | None]
    client: ApiV2Client
    dedupes: bool
    statuses: Coalescer[ProviderOrderStatus]
    refill_statuses: Coalescer[ProviderRefillStatus]


class ProviderActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        http: httpx.AsyncClient,
        *,
        batch_window: float = BATCH_WINDOW_SECONDS,
        request_timeout: float = 15.0,
    ) -> None:
        self._sessions = sessions
        self._http = http
        self._batch_window = batch_window
        self._request_timeout = request_timeout
        self._upstreams: dict[int, _Upstream] = {}

    async def _upstream(self, provider_id: int) -> _Upstream:
        """The provider's client, shared by this worker's activities; rebuilt when its settings change."""
        with permanent_failures("read the provider"):
            async with self._sessions() as session:
                provider = await provider_link(session, provider_id)
        if provider is None:
            raise ApplicationError(
                f"provider {provider_id} does not exist", type=REJECTED, non_retryable=True
            )
        config = (provider.api_url, provider.api_key, provider.rate_limit_per_second)
        known = self._upstreams.get(provider_id)
        if known is not None and known.config == config:
            known.dedupes = provider.accepts_idempotency_key
            return known
        rate = provider.rate_limit_per_second
        client = ApiV2Client(
            provider.api_url,
            provider.api_key,
            http=self._http,
            timeout=self._request_timeout,
            limiter=SharedTokenBucket(self._sessions, provider_id, rate) if rate else None,
        )

        upstream = _Upstream(
            config,
            client,
            provider.accepts_idempotency_key,
            Coalescer(client.statuses, window=self._batch_window),
            Coalescer(client.refill_statuses, window=self._batch_window),
        )
        self._upstreams[provider_id] = upstream
        return upstream

    # ------------------------------------------------------------------------------------------ runs

    @activity.defn(name="submit_run")
    async def submit_run(self, run: SubmitRun) -> SubmittedRun:
        """Take a slot if the order holds none (or keep its place in line), then send the run there exactly
        once and read its status right away. A failure names its provider in the error's details."""
        route = await route_for(self._sessions, run)
        if isinstance(route, int):
            return SubmittedRun(None, None, queue_position=route)
        try:
            provider_order_id, first_look = await self._send_run(run, route)
        except ApplicationError as exc:
            raise ApplicationError(
                exc.message, route.provider_id, type=exc.type, non_retryable=exc.non_retryable
            ) from exc
        except ProviderError as exc:  # retried by Temporal; the order counts the interruption at this route
            raise ApplicationError(str(exc), route.provider_id, type=type(exc).__name__) from exc
        return SubmittedRun(route.provider_id, provider_order_id, first_look=first_look)

    async def _send_run(self, run: SubmitRun, route: RouteRef) -> tuple[str, RunReport | None]:
        upstream = await self._upstream(route.provider_id)
        row = {
            "order_id": run.order_id,
            "run_no": run.run_no,
            "provider_id": route.provider_id,
            "provider_service_id": route.provider_service_id,
            "quantity": run.quantity,
            "client_key": f"order-{run.order_id}-run-{run.run_no}-p{route.provider_id}",
        }
        where = (
            ProviderSubmission.order_id == run.order_id,
            ProviderSubmission.run_no == run.run_no,
            ProviderSubmission.provider_id == route.provider_id,
        )

        p = run.parameters
        counted = TYPE_RULES[run.service_type].counted_by == "quantity"

        def add(idempotency_key: str | None) -> Awaitable[str]:
            return upstream.client.add(
                service=route.provider_service_id,
                link=run.link,
                quantity=run.quantity if counted else None,  # lines and packages say it themselves
                idempotency_key=idempotency_key,
                comments=p.comments,
                usernames=p.usernames,
                hashtags=p.hashtags,
                keywords=p.keywords,
                hashtag=p.hashtag,
                username=p.username,
                media=p.media,
                answer_number=p.answer_number,
            )

        once = _Once(ProviderSubmission, where, "provider_order_id", "run", "submission", link_faults=True)
        provider_order_id = await self._send_once(once, row, upstream.dedupes, add)
        return provider_order_id, await self._first_look(upstream, provider_order_id)

    async def _first_look(self, upstream: _Upstream, provider_order_id: str) -> RunReport | None:
        """The run's status right after the provider took it: one read, batched with the others, so a
        provider that delivers at once is seen finished without waiting for the first poll. Trouble here is
        not the submission's: the order simply polls as usual."""
        try:
            return _report(await upstream.statuses.get(provider_order_id))
        except ProviderError as exc:
            activity.logger.info("first look at %s failed: %s", provider_order_id, exc)
            return None

    @activity.defn(name="check_run")
    async def check_run(self, check: CheckRun) -> RunReport:
        """The run's status, read in a batch with the other checks of this provider arriving meanwhile.

        A run the provider ended because of the link (its status carries a reason such as "Link is private")
        comes back with `link_fault` set; `remains` still tells what was delivered.
        """
        upstream = await self._upstream(check.provider_id)
        try:
            return _report(await upstream.statuses.get(check.provider_order_id))
        except ProviderRejected as exc:
            raise ApplicationError(exc.message, type=REJECTED, non_retryable=True) from exc

    @activity.defn(name="cancel_run")
    async def cancel_run(self, cancel: CancelRun) -> CancelAnswer:
        """Ask the provider to cancel; a refusal is an answer (`accepted=False` with the provider's text).

        Asking twice is harmless, so a lost answer is simply retried. Whether the cancel took effect, and
        what was delivered before it, shows in the run's next status (Canceled or Partial with remains).
        """
        upstream = await self._upstream(cancel.provider_id)
        answers = await upstream.client.cancel([cancel.provider_order_id])
        answer = answers[cancel.provider_order_id]
        return CancelAnswer(answer.accepted, answer.message)

    # ------------------------------------------------------------------------------------------ refills

    @activity.defn(name="submit_refill")
    async def submit_refill(self, refill: SubmitRefill) -> SubmittedRefill:
        """Forward a refill at most once per (order, refill_no, provider order), by the same rules as
        submit_run. One refill of a drip-feed order goes to every provider order that delivered."""
        upstream = await self._upstream(refill.provider_id)
        row = {
            "order_id": refill.order_id,
            "refill_no": refill.refill_no,
            "provider_id": refill.provider_id,
            "provider_order_id": refill.provider_order_id,
            "client_key": (
                f"order-{refill.order_id}-refill-{refill.refill_no}"
                f"-p{refill.provider_id}-{refill.provider_order_id}"
            ),
        }
        where = (
            ProviderRefill.order_id == refill.order_id,
            ProviderRefill.refill_no == refill.refill_no,
            ProviderRefill.provider_order_id == refill.provider_order_id,
        )

        def send(idempotency_key: str | None) -> Awaitable[str]:
            return upstream.client.refill(refill.provider_order_id, idempotency_key=idempotency_key)

        once = _Once(
            ProviderRefill, where, "provider_refill_id", "refill", "refill request", link_faults=False
        )
        return SubmittedRefill(await self._send_once(once, row, upstream.dedupes, send))

    @activity.defn(name="check_refill")
    async def check_refill(self, check: CheckRefill) -> RefillReport:
        """A refill's status, batched like run checks."""
        upstream = await self._upstream(check.provider_id)
        try:
            status = await upstream.refill_statuses.get(check.provider_refill_id)
        except ProviderRejected as exc:
            raise ApplicationError(exc.message, type=REJECTED, non_retryable=True) from exc
        return RefillReport(status.status, status.raw_status)

    # ------------------------------------------------------------------------------------------ exactly once

    async def _send_once(
        self,
        once: _Once,
        new_row: dict[str, Any],
        dedupes: bool,
        send: Callable[[str | None], Awaitable[str]],
    ) -> str:
        """Send a request that changes something at the provider at most once, tracked by its row (see the
        module docstring); return the provider's id for it."""
        table, where, key = once.table, once.where, str(new_row["client_key"])
        with permanent_failures(f"record the {once.request}"):
            async with transaction(self._sessions) as session:
                # A first attempt writes its row in one statement; a retry finds the row and reads it locked.
                row: ProviderSubmission | ProviderRefill | None = None
                while row is None:
                    written = await session.scalar(
                        insert(table)
                        .values(**new_row, state="sending")
                        .on_conflict_do_nothing()
                        .returning(table.id)
                    )
                    if written is not None:
                        break
                    # None only where an overlapping attempt forgot its row in between: write it again.
                    row = await session.scalar(select(table).where(*where).with_for_update())
                raise_after = None
                if row is not None:  # a retry: the row tells how far the last attempt got
                    if row.state == "accepted" and getattr(row, once.id_column):
                        return str(getattr(row, once.id_column))
                    if row.state in _FINAL_TYPES:
                        raise _final(row.state, row.error)
                    if not dedupes:  # still `sending`: the last attempt's fate is unknown
                        row.state = "needs_reconciliation"
                        row.error = (
                            f"no answer to the last {once.request}; the provider cannot deduplicate a re-send"
                        )
                        raise_after = ApplicationError(
                            row.error, type=NEEDS_RECONCILIATION, non_retryable=True
                        )
        if raise_after is not None:
            raise raise_after

        try:
            given_id = await send(key if dedupes else None)
        except ProviderRejected as exc:
            link_fault = once.link_faults and isinstance(exc, ProviderLinkFault)
            state, type_ = ("link_fault", LINK_FAULT) if link_fault else ("rejected", REJECTED)
            await _settle(self._sessions, table, where, state=state, error=exc.message)
            raise ApplicationError(exc.message, type=type_, non_retryable=True) from exc
        except ProviderUnavailable:
            # The request was not processed: forget the attempt so the retry starts clean.
            with permanent_failures(f"forget the {once.request}"):
                async with transaction(self._sessions) as session:
                    await session.execute(delete(table).where(*where, table.state == "sending"))
            raise
        # ProviderAmbiguous passes: the row stays `sending`; the retry decides as described above.
        if await _settle(self._sessions, table, where, state="accepted", **{once.id_column: given_id}):
            return given_id
        # An overlapping attempt settled the row first. If it was accepted, that is the answer. If it went to
        # ops meanwhile, keep what this attempt learned (what ops need) but leave the state to them.
        with permanent_failures(f"record the {once.request}"):
            async with transaction(self._sessions) as session:
                row = await session.scalar(select(table).where(*where).with_for_update())
                if row is not None and row.state == "accepted" and getattr(row, once.id_column):
                    return str(getattr(row, once.id_column))
                if row is not None and getattr(row, once.id_column) is None:
                    setattr(row, once.id_column, given_id)
        raise ApplicationError(
            f"the {once.noun} awaits reconciliation", type=NEEDS_RECONCILIATION, non_retryable=True
        )


def _report(status: ProviderOrderStatus) -> RunReport:
    """A provider status as the workflow reads it (a link fault counts once the provider ended the run)."""
    return RunReport(
        status.status,
        status.raw_status,
        status.remains,
        status.start_count,
        run_link_fault(status.status, status.link_fault),
        cost_micros=status.charge_micros(),
    )


@dataclass(frozen=True)
class _Once:
    """How one kind of request is kept to at most once: its row, and the words for its messages."""

    table: type[ProviderSubmission] | type[ProviderRefill]
    where: tuple[Any, ...]  # the request's row
    id_column: str  # the row's column for the provider's id
    noun: str  # "run", "refill"
    request: str  # "submission", "refill request"
    link_faults: bool  # whether a refusal because of the link is told apart from other refusals


# A settled row answers a retry with the same final error.
_FINAL_TYPES = {"rejected": REJECTED, "link_fault": LINK_FAULT, "needs_reconciliation": NEEDS_RECONCILIATION}


def _final(state: str, error: str | None) -> ApplicationError:
    return ApplicationError(error or state, type=_FINAL_TYPES[state], non_retryable=True)


@fails_for_good("record the provider's answer")
async def _settle(
    sessions: async_sessionmaker[AsyncSession],
    table: type[ProviderSubmission] | type[ProviderRefill],
    where: tuple[Any, ...],
    **values: str,
) -> bool:
    """Record an attempt's outcome, unless an overlapping attempt has already settled the row."""
    async with transaction(sessions) as session:
        result = await session.execute(update(table).where(*where, table.state == "sending").values(**values))
        return bool(result.rowcount)  # type: ignore[attr-defined]
