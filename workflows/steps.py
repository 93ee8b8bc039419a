"""Every activity an order calls, with its options in one table.

Activities are called by name, so `workflows/` imports nothing from `activities/`: the worker registers the
implementations under these names (activities/__init__.py), tests may register scripted ones.

All are ordinary activities, the database steps included. Local activities were measured and left out: with
temporalio 1.35 the replay of recorded histories failed now and then (a local activity's result delivered to
another's handle, temporalio/sdk-python#1881; concurrent ones resolved in another order on replay, #1578),
and a workflow that cannot replay its own history cannot be deployed. docs/performance.md has the details.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.errors import LINK_FAULT, NEEDS_RECONCILIATION, REJECTED, STEP_FAILED
from workflows.models import (
    CancelAnswer,
    CancelRun,
    CheckRefill,
    CheckRun,
    OpenRefill,
    Projection,
    RefillReport,
    RefundMoney,
    ReleaseSlot,
    RunReport,
    Settlement,
    SubmitRefill,
    SubmitRun,
    SubmittedRefill,
    SubmittedRun,
)

A = TypeVar("A")
R = TypeVar("R")

# A few quick retries absorb a blip; longer trouble is an interruption the workflow rides out itself, with
# its own backoff and a visible phase, so it can count the hours and fail over.
PROVIDER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=3,
    non_retryable_error_types=[REJECTED, NEEDS_RECONCILIATION, LINK_FAULT, STEP_FAILED],
)
# Database steps retry transient trouble (a lost connection, a deadlock) for as long as it lasts, at most a
# minute apart; a failure no retry can mend comes back as STEP_FAILED and the order asks ops for attention.
STORE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=[STEP_FAILED],
)


@dataclass(frozen=True)
class Step(Generic[A, R]):
    """One activity: its registered name, what it answers, and how long and how often it may try."""

    name: str
    answers: type[R]
    timeout: timedelta
    retry: RetryPolicy

    async def __call__(self, arg: A, summary: str) -> R:
        result: Any = await workflow.execute_activity(
            self.name,
            arg,
            result_type=self.answers,
            start_to_close_timeout=self.timeout,
            retry_policy=self.retry,
            summary=summary,
        )
        return result  # type: ignore[no-any-return]


_PROVIDER = timedelta(seconds=60)
_STORE = timedelta(seconds=30)

SUBMIT_RUN = Step[SubmitRun, SubmittedRun]("submit_run", SubmittedRun, _PROVIDER, PROVIDER_RETRY)
CHECK_RUN = Step[CheckRun, RunReport]("check_run", RunReport, _PROVIDER, PROVIDER_RETRY)
CANCEL_RUN = Step[CancelRun, CancelAnswer]("cancel_run", CancelAnswer, _PROVIDER, PROVIDER_RETRY)
SUBMIT_REFILL = Step[SubmitRefill, SubmittedRefill](
    "submit_refill", SubmittedRefill, _PROVIDER, PROVIDER_RETRY
)
CHECK_REFILL = Step[CheckRefill, RefillReport]("check_refill", RefillReport, _PROVIDER, PROVIDER_RETRY)
PROJECT_ORDER = Step[Projection, None]("project_order", type(None), _STORE, STORE_RETRY)
OPEN_REFILL = Step[OpenRefill, int]("open_refill", int, _STORE, STORE_RETRY)
RELEASE_SLOT = Step[ReleaseSlot, list[str]]("release_slot", list, _STORE, STORE_RETRY)
SETTLE_ORDER = Step[Settlement, list[str]]("settle_order", list, _STORE, STORE_RETRY)
REFUND_ORDER = Step[RefundMoney, None]("refund_order", type(None), _STORE, STORE_RETRY)

ALL = (
    SUBMIT_RUN,
    CHECK_RUN,
    CANCEL_RUN,
    SUBMIT_REFILL,
    CHECK_REFILL,
    PROJECT_ORDER,
    OPEN_REFILL,
    RELEASE_SLOT,
    SETTLE_ORDER,
    REFUND_ORDER,
)
