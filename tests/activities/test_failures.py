"""Permanent and transient failures told apart, on errors a real PostgreSQL raises: bad data and broken
constraints that are not races fail the step for good (STEP_FAILED, non-retryable); lost connections,
serialization failures, deadlocks and an exhausted pool are retried. Through a real worker too."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity, workflow
from temporalio.client import WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.failures import classify, describe, fails_for_good, permanent_failures
from activities.projection import ProjectionActivities
from providers.client import ProviderAmbiguous
from store.db import make_engine, make_sessionmaker, transaction
from store.models import ApiKey, Customer, LedgerAccount, Order
from support import open_shop, place
from workflows.errors import STEP_FAILED
from workflows.models import Projection


async def _error_of(work: Callable[[], Awaitable[Any]]) -> BaseException:
    try:
        await work()
    except Exception as exc:  # the error is what the test looks at
        return exc
    raise AssertionError("the database took it")


def _in(sessions: async_sessionmaker[AsyncSession], sql: str, **params: Any) -> Callable[[], Awaitable[Any]]:
    async def work() -> None:
        async with transaction(sessions) as session:
            await session.execute(text(sql), params)

    return work


@pytest.mark.parametrize(
    ("sql", "params", "state"),
    [
        ("INSERT INTO customers (name) VALUES (:v)", {"v": "stop\x00now"}, "22021"),  # invalid byte sequence
        ("INSERT INTO customers (name) VALUES (:v)", {"v": "x" * 201}, "22001"),  # string too long
        ("SELECT 2147483647 + CAST(:v AS integer)", {"v": 1}, "22003"),  # numeric out of range
        ("INSERT INTO customers (name) VALUES (NULL)", {}, "23502"),  # not-null violation
        ("INSERT INTO api_keys (lookup, secret_hash, role, customer_id, label) "
         "VALUES ('l', 'h', 'customer', 999999999, '')", {}, "23503"),  # foreign key violation
        ("INSERT INTO ledger_accounts (name, kind, balance_micros) VALUES ('customer:x', 'customer', -1)",
         {}, "23514"),  # check violation
        ("SELECT no_such_column FROM orders", {}, "42703"),  # a programming error in SQL
    ],
)  # fmt: skip
async def test_bad_data_and_broken_constraints_are_permanent(
    sessions: async_sessionmaker[AsyncSession], sql: str, params: dict[str, Any], state: str
) -> None:
    error = await _error_of(_in(sessions, sql, **params))
    assert classify(error) == "permanent", describe(error)
    said = describe(error)
    assert f"SQLSTATE {state}" in said
    assert "\x00" not in said
    assert "INSERT" not in said
    assert "stop" not in said


async def test_values_the_driver_cannot_send_are_permanent(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    surrogate = await _error_of(_in(sessions, "INSERT INTO customers (name) VALUES (:v)", v="a\ud800b"))
    too_big = await _error_of(
        _in(sessions, "UPDATE orders SET quantity = :v WHERE id = 1", v=2**40)  # beyond int32
    )
    for error in (surrogate, too_big):
        assert classify(error) == "permanent", describe(error)
        assert "ud800" not in describe(error)
        assert "1099511627776" not in describe(error)


async def test_a_unique_violation_is_a_race_and_retried(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with transaction(sessions) as session:
        session.add(ApiKey(lookup="twice", secret_hash="h", role="ops", label=""))
    error = await _error_of(
        _in(
            sessions,
            "INSERT INTO api_keys (lookup, secret_hash, role, label) VALUES ('twice', 'h', 'ops', '')",
        )
    )
    assert "23505" in describe(error)
    assert classify(error) == "transient"


async def test_a_serialization_failure_is_retried(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with transaction(sessions) as session:
        session.add(Customer(name="one"))
    first, second = sessions(), sessions()
    try:
        for s in (first, second):
            await s.connection(execution_options={"isolation_level": "SERIALIZABLE"})
            await s.execute(text("SELECT count(*) FROM customers"))
        # Each transaction read what the other writes: the second to commit cannot be serialised.
        await first.execute(text("INSERT INTO customers (name) VALUES ('by first')"))
        await second.execute(text("INSERT INTO customers (name) VALUES ('by second')"))
        await first.commit()
        error = await _error_of(second.commit)
    finally:
        await first.close()
        await second.close()
    assert "40001" in describe(error)
    assert classify(error) == "transient"


async def test_a_deadlock_is_retried(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with transaction(sessions) as session:
        session.add_all([Customer(name="a"), Customer(name="b")])
    async with sessions() as session:
        a, b = (await session.execute(text("SELECT min(id), max(id) FROM customers"))).one()
    first, second = sessions(), sessions()
    try:
        await first.execute(update(Customer).where(Customer.id == a).values(name="a1"))
        await second.execute(update(Customer).where(Customer.id == b).values(name="b1"))
        # Each now wants the row the other holds: PostgreSQL kills one of them.
        results = await asyncio.gather(
            first.execute(update(Customer).where(Customer.id == b).values(name="b2")),
            second.execute(update(Customer).where(Customer.id == a).values(name="a2")),
            return_exceptions=True,
        )
    finally:
        await first.close()
        await second.close()
    [error] = [r for r in results if isinstance(r, BaseException)]
    assert "40P01" in describe(error)
    assert classify(error) == "transient"


async def test_a_lost_connection_and_an_exhausted_pool_are_retried(db_url: str) -> None:
    engine = make_engine(db_url, pool_size=1)
    engine.pool._max_overflow = 0  # type: ignore[attr-defined]  # one connection, and no more
    engine.pool._timeout = 0.2  # type: ignore[attr-defined]
    sessions = make_sessionmaker(engine)
    try:
        async with sessions() as held:
            pid = await held.scalar(text("SELECT pg_backend_pid()"))
            exhausted = await _error_of(_in(sessions, "SELECT 1"))
            assert classify(exhausted) == "transient", describe(exhausted)
            other = make_engine(db_url, pool_size=1)
            try:
                async with other.connect() as admin:
                    await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            finally:
                await other.dispose()
            lost = await _error_of(lambda: held.execute(text("SELECT 1")))
        assert isinstance(lost, SQLAlchemyError), describe(lost)
        assert classify(lost) == "transient", describe(lost)
    finally:
        await engine.dispose()


def test_python_errors() -> None:
    for permanent in (TypeError("x"), AttributeError("x"), KeyError("x"), ValueError("x"), AssertionError()):
        assert classify(permanent) == "permanent"
    for transient in (ConnectionResetError(), TimeoutError(), RuntimeError("?")):
        assert classify(transient) == "transient"

    # A provider's garbled answer is retried, even though a ValueError lies under it.
    def garbled() -> None:
        try:
            raise ValueError("Expecting value")
        except ValueError as cause:
            raise ProviderAmbiguous("garbled answer") from cause

    with pytest.raises(ProviderAmbiguous) as ambiguous:
        garbled()
    assert classify(ambiguous.value) == "transient"


def test_permanent_failures_raise_step_failed_and_let_the_rest_through() -> None:
    with pytest.raises(ApplicationError) as failed, permanent_failures("project_order"):
        raise KeyError("version")
    assert (failed.value.type, failed.value.non_retryable) == (STEP_FAILED, True)
    assert failed.value.message == "project_order failed for good: KeyError: 'version'"
    own = ApplicationError("refused", type="ProviderRejected", non_retryable=True)
    with pytest.raises(ApplicationError) as kept, permanent_failures("submit_run"):
        raise own
    assert kept.value is own
    with pytest.raises(ConnectionResetError), permanent_failures("claim_slot"):
        raise ConnectionResetError


@workflow.defn(sandboxed=False)
class OneStep:
    """Runs one activity with unlimited attempts, as the order's store steps do."""

    @workflow.run
    async def run(self, name: str, arg: Any) -> int:
        return int(
            await workflow.execute_activity(
                name,
                arg,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=50), backoff_coefficient=1),
            )
            or 0
        )


class Flaky:
    def __init__(self, failures: int) -> None:
        self.failures, self.attempts = failures, 0

    @activity.defn(name="flaky_store_step")
    @fails_for_good("flaky_store_step")
    async def step(self, _: str) -> int:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise ConnectionResetError("the database went away")
        return self.attempts


async def test_an_activity_failing_for_good_is_not_retried(
    dev_server: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = await open_shop(sessions)
    order = await place(sessions, shop, 100)
    projection = Projection(
        order_id=order.order_id, version=1, status="In progress", phase="delivering", delivered=0,
        refunded_micros=0, refunded_units=0, provider_id=None, provider_status_raw=None, start_count=None,
        note="cancel requested: stop\x00now", refill_deadline=None, next_action_at=None,
    )  # fmt: skip
    flaky = Flaky(failures=2)
    queue = f"failures-{uuid.uuid4().hex[:8]}"
    client = dev_server.client
    async with Worker(
        client,
        task_queue=queue,
        workflows=[OneStep],
        activities=[ProjectionActivities(sessions).project_order, flaky.step],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        handle = await client.start_workflow(OneStep.run, args=["project_order", projection], id=queue,
                                             task_queue=queue)  # fmt: skip
        with pytest.raises(WorkflowFailureError) as failed:
            await asyncio.wait_for(handle.result(), timeout=30)
        # A transient fault is retried until it passes.
        retried = await client.execute_workflow(
            OneStep.run, args=["flaky_store_step", "x"], id=f"{queue}-flaky", task_queue=queue
        )
    activity_error = failed.value.cause
    assert isinstance(activity_error, ActivityError)
    cause = activity_error.cause
    assert isinstance(cause, ApplicationError)
    assert (cause.type, cause.non_retryable) == (STEP_FAILED, True)
    assert "SQLSTATE 22021" in cause.message
    assert "\x00" not in cause.message
    history = [e async for e in handle.fetch_history_events()]
    started = [e for e in history if e.HasField("activity_task_started_event_attributes")]
    assert [e.activity_task_started_event_attributes.attempt for e in started] == [1]  # tried once only
    assert retried == 3
    async with sessions() as session:
        assert (await session.get(Order, order.order_id)).note == ""  # type: ignore[union-attr]
        assert await session.get(LedgerAccount, "customer:x") is None
