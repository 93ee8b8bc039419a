"""Provider calls: submit a run exactly once, and read its status.

The submission row is committed before the request leaves. A retry that finds a row still `sending` does not
know whether the provider got the first request: it re-sends only to providers that deduplicate by our key,
and otherwise marks the run `needs_reconciliation` for ops instead of risking a double delivery.
"""

from __future__ import annotations

import httpx
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from providers.client import ApiV2Client, ProviderAmbiguous, ProviderRejected, ProviderUnavailable
from store.db import transaction
from store.models import Provider, ProviderSubmission
from workflows.models import CheckRun, RunStatus, SubmitRun, SubmittedRun

# Error types the workflow tells apart (ApplicationError.type); both are final for the activity.
REJECTED = "ProviderRejected"
NEEDS_RECONCILIATION = "NeedsReconciliation"
LINK_FAULT = "LinkFault"  # the provider refused the link: private, deleted, renamed or invalid


class ProviderActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], http: httpx.AsyncClient) -> None:
        self._sessions = sessions
        self._http = http

    async def _client(self, provider_id: int) -> tuple[ApiV2Client, bool]:
        async with self._sessions() as session:
            provider = await session.get(Provider, provider_id)
        if provider is None:
            raise ApplicationError(
                f"provider {provider_id} does not exist", type=REJECTED, non_retryable=True
            )
        return ApiV2Client(
            provider.api_url, provider.api_key, http=self._http
        ), provider.accepts_idempotency_key

    @activity.defn(name="submit_run")
    async def submit_run(self, run: SubmitRun) -> SubmittedRun:
        client, dedupes = await self._client(run.provider_id)
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
            if row is not None and row.state == "rejected":
                raise ApplicationError(row.error or "rejected", type=REJECTED, non_retryable=True)
            if row is not None and row.state == "needs_reconciliation":
                raise ApplicationError(row.error or "", type=NEEDS_RECONCILIATION, non_retryable=True)
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
            provider_order_id = await client.add(
                service=run.provider_service_id,
                link=run.link,
                quantity=run.quantity,
                idempotency_key=client_key if dedupes else None,
            )
        except ProviderRejected as exc:
            await self._settle_attempt(where, state="rejected", error=exc.message)
            raise ApplicationError(exc.message, type=REJECTED, non_retryable=True) from exc
        except ProviderUnavailable:
            # The request never reached the provider: forget the attempt so the retry starts clean.
            async with transaction(self._sessions) as session:
                await session.execute(
                    delete(ProviderSubmission).where(*where, ProviderSubmission.state == "sending")
                )
            raise
        except ProviderAmbiguous:
            raise  # the row stays `sending`; the retry decides as described above
        if await self._settle_attempt(where, state="accepted", provider_order_id=provider_order_id):
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

    async def _settle_attempt(self, where: tuple, **values: str) -> bool:  # type: ignore[type-arg]
        """Record an attempt's outcome, unless an overlapping attempt has already settled the row."""
        async with transaction(self._sessions) as session:
            result = await session.execute(
                update(ProviderSubmission)
                .where(*where, ProviderSubmission.state == "sending")
                .values(**values)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    @activity.defn(name="check_run")
    async def check_run(self, check: CheckRun) -> RunStatus:
        client, _ = await self._client(check.provider_id)
        try:
            status = await client.status(check.provider_order_id)
        except ProviderRejected as exc:
            raise ApplicationError(exc.message, type=REJECTED, non_retryable=True) from exc
        return RunStatus(status.status, status.raw_status, status.remains, status.start_count)
