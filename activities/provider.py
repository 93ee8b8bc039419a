"""Provider calls: submit a run exactly once, follow it, cancel it, and forward refills at most once.

The submission row is committed before the request leaves. A retry that finds a row still `sending` does not
know whether the provider got the first request: it re-sends only to providers that deduplicate by our key,
and otherwise marks the run `needs_reconciliation` for ops instead of risking a double delivery. Refills
follow the same rule with their own table.

Status reads are coalesced per provider: the checks of many orders in flight that arrive within a short
window leave as one `status` call with up to 100 ids (`providers.batching`). Every request to a provider
waits for its token bucket when the provider has `rate_limit_per_second`.

Temporary trouble (ProviderUnavailable, ProviderAmbiguous) is raised as is: Temporal retries it and the
workflow decides how long to wait. Final refusals are non-retryable ApplicationErrors with a `type` below.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from providers.batching import Coalescer, TokenBucket
from providers.client import (
    ApiV2Client,
    ProviderAmbiguous,
    ProviderLinkFault,
    ProviderOrderStatus,
    ProviderRefillStatus,
    ProviderRejected,
    ProviderUnavailable,
)
from store.db import transaction
from store.models import Provider, ProviderRefill, ProviderSubmission
from workflows.models import (
    CancelAnswer,
    CancelRun,
    CheckRefill,
    CheckRun,
    RefillStatus,
    RunStatus,
    SubmitRefill,
    SubmitRun,
    SubmittedRefill,
    SubmittedRun,
)
from workflows.policy import CANCELED, PARTIAL, REFUNDED

# Error types the workflow tells apart (ApplicationError.type); all are final for the activity.
REJECTED = "ProviderRejected"  # this route refuses (incorrect service, disabled, unknown order, ...)
NEEDS_RECONCILIATION = "NeedsReconciliation"  # the provider may hold it: only ops can tell
LINK_FAULT = "LinkFault"  # the provider refuses the link (private, deleted, renamed, invalid)

# How long status checks wait for company before their batch leaves.
BATCH_WINDOW_SECONDS = 0.1
# Statuses in which a link-fault text means the provider ended the run because of the link.
_ENDED = (CANCELED, PARTIAL, REFUNDED)


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
        async with self._sessions() as session:
            provider = await session.get(Provider, provider_id)
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
            limiter=TokenBucket(rate) if rate else None,
        )

        async def statuses(ids: Sequence[str]) -> dict[str, Any]:
            return dict(await client.statuses(ids))

        async def refill_statuses(ids: Sequence[str]) -> dict[str, Any]:
            return dict(await client.refill_statuses(ids))

        upstream = _Upstream(
            config,
            client,
            provider.accepts_idempotency_key,
            Coalescer(statuses, window=self._batch_window),
            Coalescer(refill_statuses, window=self._batch_window),
        )
        self._upstreams[provider_id] = upstream
        return upstream

    # ------------------------------------------------------------------------------------------ runs

    @activity.defn(name="submit_run")
    async def submit_run(self, run: SubmitRun) -> SubmittedRun:
        upstream = await self._upstream(run.provider_id)
        dedupes = upstream.dedupes
        client_key = f"order-{run.order_id}-run-{run.run_no}-p{run.provider_id}"
        where = (
            ProviderSubmission.order_id == run.order_id,
            ProviderSubmission.run_no == run.run_no,
            ProviderSubmission.provider_id == run.provider_id,
        )
        async with transaction(self._sessions) as session:
            row = await session.scalar(select(ProviderSubmission).where(*where).with_for_update())
            if row is not None and row.state == "accepted" and row.provider_order_id:
                return SubmittedRun(row.provider_order_id)
            if row is not None and row.state in _FINAL_TYPES:
                raise _final(row.state, row.error)
            if row is not None and not dedupes:  # still `sending`: the last attempt's fate is unknown
                row.state = "needs_reconciliation"
                row.error = "no answer to the last submission; the provider cannot deduplicate a re-send"
                raise_after = ApplicationError(row.error, type=NEEDS_RECONCILIATION, non_retryable=True)
            else:
                raise_after = None
                if row is None:
                    session.add(
                        ProviderSubmission(
                            order_id=run.order_id,
                            run_no=run.run_no,
                            provider_id=run.provider_id,
                            provider_service_id=run.provider_service_id,
                            quantity=run.quantity,
                            client_key=client_key,
                            state="sending",
                        )
                    )
        if raise_after is not None:
            raise raise_after

        try:
            provider_order_id = await upstream.client.add(
                service=run.provider_service_id,
                link=run.link,
                quantity=run.quantity,
                idempotency_key=client_key if dedupes else None,
            )
        except ProviderLinkFault as exc:
            await _settle(self._sessions, ProviderSubmission, where, state="link_fault", error=exc.message)
            raise ApplicationError(exc.message, type=LINK_FAULT, non_retryable=True) from exc
        except ProviderRejected as exc:
            await _settle(self._sessions, ProviderSubmission, where, state="rejected", error=exc.message)
            raise ApplicationError(exc.message, type=REJECTED, non_retryable=True) from exc
        except ProviderUnavailable:
            # The request was not processed: forget the attempt so the retry starts clean.
            async with transaction(self._sessions) as session:
                await session.execute(
                    delete(ProviderSubmission).where(*where, ProviderSubmission.state == "sending")
                )
            raise
        except ProviderAmbiguous:
            raise  # the row stays `sending`; the retry decides as described above
        if await _settle(
            self._sessions, ProviderSubmission, where, state="accepted", provider_order_id=provider_order_id
        ):
            return SubmittedRun(provider_order_id)
        # An overlapping attempt settled the row first. If it was accepted, that is the answer. If the run
        # went to ops meanwhile, keep what this attempt learned (what ops need) but leave the state to them.
        async with transaction(self._sessions) as session:
            row = await session.scalar(select(ProviderSubmission).where(*where).with_for_update())
            if row is not None and row.state == "accepted" and row.provider_order_id:
                return SubmittedRun(row.provider_order_id)
            if row is not None and row.provider_order_id is None:
                row.provider_order_id = provider_order_id
        raise ApplicationError("the run awaits reconciliation", type=NEEDS_RECONCILIATION, non_retryable=True)

    @activity.defn(name="check_run")
    async def check_run(self, check: CheckRun) -> RunStatus:
        """The run's status, read in a batch with the other checks of this provider arriving meanwhile.

        A run the provider ended because of the link (its status carries a reason such as "Link is private")
        comes back with `link_fault` set; `remains` still tells what was delivered.
        """
        upstream = await self._upstream(check.provider_id)
        try:
            status = await upstream.statuses.get(check.provider_order_id)
        except ProviderRejected as exc:
            raise ApplicationError(exc.message, type=REJECTED, non_retryable=True) from exc
        link_fault = status.link_fault if status.status in _ENDED else None
        return RunStatus(status.status, status.raw_status, status.remains, status.start_count, link_fault)

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
        dedupes = upstream.dedupes
        client_key = (
            f"order-{refill.order_id}-refill-{refill.refill_no}"
            f"-p{refill.provider_id}-{refill.provider_order_id}"
        )
        where = (
            ProviderRefill.order_id == refill.order_id,
            ProviderRefill.refill_no == refill.refill_no,
            ProviderRefill.provider_order_id == refill.provider_order_id,
        )
        async with transaction(self._sessions) as session:
            row = await session.scalar(select(ProviderRefill).where(*where).with_for_update())
            if row is not None and row.state == "accepted" and row.provider_refill_id:
                return SubmittedRefill(row.provider_refill_id)
            if row is not None and row.state in _FINAL_TYPES:
                raise _final(row.state, row.error)
            if row is not None and not dedupes:
                row.state = "needs_reconciliation"
                row.error = "no answer to the last refill request; the provider cannot deduplicate a re-send"
                raise_after = ApplicationError(row.error, type=NEEDS_RECONCILIATION, non_retryable=True)
            else:
                raise_after = None
                if row is None:
                    session.add(
                        ProviderRefill(
                            order_id=refill.order_id,
                            refill_no=refill.refill_no,
                            provider_id=refill.provider_id,
                            provider_order_id=refill.provider_order_id,
                            client_key=client_key,
                            state="sending",
                        )
                    )
        if raise_after is not None:
            raise raise_after

        try:
            refill_id = await upstream.client.refill(
                refill.provider_order_id, idempotency_key=client_key if dedupes else None
            )
        except ProviderRejected as exc:
            await _settle(self._sessions, ProviderRefill, where, state="rejected", error=exc.message)
            raise ApplicationError(exc.message, type=REJECTED, non_retryable=True) from exc
        except ProviderUnavailable:
            async with transaction(self._sessions) as session:
                await session.execute(delete(ProviderRefill).where(*where, ProviderRefill.state == "sending"))
            raise
        accepted = {"state": "accepted", "provider_refill_id": refill_id}
        if await _settle(self._sessions, ProviderRefill, where, **accepted):
            return SubmittedRefill(refill_id)
        async with transaction(self._sessions) as session:
            row = await session.scalar(select(ProviderRefill).where(*where).with_for_update())
            if row is not None and row.state == "accepted" and row.provider_refill_id:
                return SubmittedRefill(row.provider_refill_id)
            if row is not None and row.provider_refill_id is None:
                row.provider_refill_id = refill_id
        raise ApplicationError(
            "the refill awaits reconciliation", type=NEEDS_RECONCILIATION, non_retryable=True
        )

    @activity.defn(name="check_refill")
    async def check_refill(self, check: CheckRefill) -> RefillStatus:
        """A refill's status, batched like run checks."""
        upstream = await self._upstream(check.provider_id)
        try:
            status = await upstream.refill_statuses.get(check.provider_refill_id)
        except ProviderRejected as exc:
            raise ApplicationError(exc.message, type=REJECTED, non_retryable=True) from exc
        return RefillStatus(status.status, status.raw_status)


# A settled row answers a retry with the same final error.
_FINAL_TYPES = {"rejected": REJECTED, "link_fault": LINK_FAULT, "needs_reconciliation": NEEDS_RECONCILIATION}


def _final(state: str, error: str | None) -> ApplicationError:
    return ApplicationError(error or state, type=_FINAL_TYPES[state], non_retryable=True)


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
