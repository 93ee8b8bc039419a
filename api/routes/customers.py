"""Customers and their money: the storefront creates customers and takes deposits, admins adjust
balances, and every role reads statements (a customer key only its own)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response

from api.auth import current_caller, own_customer, role
from api.customer_schemas import (
    AdjustmentCreate,
    AdjustmentOut,
    CustomerCreate,
    CustomerOut,
    DepositCreate,
    DepositOut,
    Statement,
    StatementEntry,
)
from api.deps import Session
from api.errors import ApiError, mark_replayed
from api.schemas import Id, IdempotencyKey, error_responses, replayable_responses
from store import customers, ledger
from store.keys import Caller
from workflows.policy import format_money, parse_money

router = APIRouter(prefix="/v1/customers", tags=["customers"])


@router.post(
    "",
    status_code=201,
    response_model=CustomerOut,
    responses=replayable_responses(
        CustomerOut, 401, 403, 422, description="the customer with this external_ref"
    ),
)
async def create_customer(
    body: CustomerCreate,
    response: Response,
    session: Session,
    caller: Annotated[Caller, Depends(role("storefront", "admin"))],
) -> CustomerOut:
    """Create a customer. With `external_ref` (the storefront's own id) a repeat returns the same customer."""
    async with session.begin():
        customer, created = await customers.create_customer(session, body.name, body.external_ref)
        balance = await customers.get_balance(session, customer.id)
    if not created:
        response.status_code = 200
    return CustomerOut.of(customer, balance)


@router.get("/{customer_id}", response_model=CustomerOut, responses=error_responses(401, 404, 422))
async def get_customer(
    customer_id: Id, session: Session, caller: Annotated[Caller, Depends(current_caller)]
) -> CustomerOut:
    own_customer(caller, customer_id)
    customer = await customers.get_customer(session, customer_id)
    return CustomerOut.of(customer, await customers.get_balance(session, customer_id))


@router.post(
    "/{customer_id}/deposits",
    status_code=201,
    response_model=DepositOut,
    responses=replayable_responses(DepositOut, 401, 403, 404, 422),
)
async def deposit(
    customer_id: Id,
    body: DepositCreate,
    response: Response,
    session: Session,
    idempotency_key: Annotated[IdempotencyKey, Header(alias="Idempotency-Key")],
    caller: Annotated[Caller, Depends(role("storefront", "admin"))],
) -> DepositOut:
    """Credit money paid in to the customer's balance, once per `Idempotency-Key` (a replay answers 200)."""
    amount = parse_money(body.amount)
    if amount <= 0:
        raise ApiError(422, "invalid_amount", "a deposit must be positive")
    try:
        async with session.begin():
            result = await customers.deposit(
                session, customer_id, amount, key=idempotency_key, actor=caller.actor, reason=body.reason
            )
            balance = await customers.get_balance(session, customer_id)
    except ledger.TransferConflict as exc:
        raise ApiError(
            422, "idempotency_conflict", "this Idempotency-Key was already used for another deposit"
        ) from exc
    if result.replayed:
        mark_replayed(response)
    return DepositOut(
        customer_id=customer_id,
        amount=format_money(amount),
        balance=format_money(balance),
        replayed=result.replayed,
    )


@router.post(
    "/{customer_id}/adjustments",
    status_code=201,
    response_model=AdjustmentOut,
    responses=replayable_responses(AdjustmentOut, 401, 402, 403, 404, 422),
)
async def adjust(
    customer_id: Id,
    body: AdjustmentCreate,
    response: Response,
    session: Session,
    idempotency_key: Annotated[IdempotencyKey, Header(alias="Idempotency-Key")],
    caller: Annotated[Caller, Depends(role("admin"))],
) -> AdjustmentOut:
    """Correct a balance by hand (admin only), with a reason, once per `Idempotency-Key`.

    A positive amount credits the customer, a negative one debits them (never below zero: 402).
    """
    amount = parse_money(body.amount)
    if amount == 0:
        raise ApiError(422, "invalid_amount", "an adjustment must not be zero")
    try:
        async with session.begin():
            result = await customers.adjust(
                session, customer_id, amount, key=idempotency_key, actor=caller.actor, reason=body.reason
            )
            balance = await customers.get_balance(session, customer_id)
    except ledger.TransferConflict as exc:
        raise ApiError(
            422, "idempotency_conflict", "this Idempotency-Key was already used for another adjustment"
        ) from exc
    except ledger.InsufficientFunds as exc:
        raise ApiError(402, "insufficient_funds", "the balance does not cover this debit") from exc
    if result.replayed:
        mark_replayed(response)
    return AdjustmentOut(
        customer_id=customer_id,
        transfer_id=result.transfer_id,
        amount=format_money(amount),
        reason=body.reason,
        balance=format_money(balance),
        replayed=result.replayed,
    )


@router.get("/{customer_id}/statement", response_model=Statement, responses=error_responses(401, 404, 422))
async def statement(
    customer_id: Id,
    session: Session,
    caller: Annotated[Caller, Depends(current_caller)],
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Statement:
    """The customer's transfers, newest first, each with the balance right after it.

    Page with `before` (a transfer id): pass `next_before` from one page to get the next, older one.
    """
    own_customer(caller, customer_id)
    async with session.begin():
        # One snapshot for the balance and the page, so they agree while money moves.
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        balance = await customers.get_balance(session, customer_id)
        lines, next_before = await customers.statement(session, customer_id, before=before, limit=limit)
    return Statement(
        customer_id=customer_id,
        balance=format_money(balance),
        entries=[StatementEntry.of(line, for_customer=caller.role == "customer") for line in lines],
        next_before=next_before,
    )
