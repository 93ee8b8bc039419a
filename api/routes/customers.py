"""Customers and deposits: the storefront creates customers and takes their money in."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response

from api.auth import current_caller, own_customer, role
from api.deps import Session
from api.errors import ApiError, mark_replayed
from api.schemas import (
    CustomerCreate,
    CustomerOut,
    DepositCreate,
    DepositOut,
    Id,
    IdempotencyKey,
    error_responses,
)
from store import customers, ledger
from store.keys import Caller
from workflows.policy import format_money, parse_money

router = APIRouter(prefix="/v1/customers", tags=["customers"])


@router.post(
    "",
    status_code=201,
    response_model=CustomerOut,
    responses={200: {"model": CustomerOut, "description": "the customer with this external_ref"}}
    | error_responses(401, 403, 422),
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
        balance = await ledger.balance(session, ledger.customer_account(customer.id))
    if not created:
        response.status_code = 200
    return CustomerOut.of(customer, balance)


@router.get("/{customer_id}", response_model=CustomerOut, responses=error_responses(401, 404, 422))
async def get_customer(
    customer_id: Id, session: Session, caller: Annotated[Caller, Depends(current_caller)]
) -> CustomerOut:
    own_customer(caller, customer_id)
    customer = await customers.get_customer(session, customer_id)
    return CustomerOut.of(customer, await ledger.balance(session, ledger.customer_account(customer_id)))


@router.post(
    "/{customer_id}/deposits",
    status_code=201,
    response_model=DepositOut,
    responses={200: {"model": DepositOut, "description": "a replay of the same Idempotency-Key"}}
    | error_responses(401, 403, 404, 422),
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
            balance = await ledger.balance(session, ledger.customer_account(customer_id))
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
