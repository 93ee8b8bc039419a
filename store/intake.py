"""Intake's write: one statement (store/orders.py:_place runs it after the catalog read)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from store import ledger, webhooks
from store.models import Order

# Intake's write (see _place). The debit comes first and everything else is written only when it did (or
# the order is free), so a balance that does not cover the charge leaves nothing; a duplicate link or a
# taken key fails the statement as a whole (the caller then looks the key up: a replay is answered with
# its first order, whatever stopped the write). The commit mode applies to the statement's own transaction
# when it runs alone (take_order); inside a caller's transaction it is left as it is.
_WRITE = text(
    """
    WITH commit_mode AS (
        SELECT set_config(
            'synchronous_commit',
            COALESCE(CAST(:commit_mode AS text), current_setting('synchronous_commit')),
            true
        )
    ), debit AS (
        UPDATE ledger_accounts SET balance_micros = balance_micros - CAST(:charge AS bigint)
        WHERE name = :customer AND kind = 'customer' AND CAST(:charge AS bigint) > 0
          AND balance_micros >= CAST(:charge AS bigint)
        RETURNING name
    ), placed AS (
        INSERT INTO orders (id, customer_id, service_id, link, link_key, service_type, parameters, quantity,
            runs, interval_minutes, charge_micros, refunded_micros, status, phase, delivered, workflow_input,
            state_version, idempotency_key, request_hash, created_by_key_id)
        SELECT :id, :customer_id, :service_id, :link, :link_key, :service_type, CAST(:parameters AS jsonb),
            :quantity, :runs, :interval_minutes, CAST(:charge AS bigint), 0, :status, :phase, 0,
            CAST(:workflow_input AS jsonb), 0, :idempotency_key, :request_hash, :created_by_key_id
        WHERE CAST(:charge AS bigint) = 0 OR EXISTS (SELECT 1 FROM debit)
        RETURNING *
    ), escrow AS (
        INSERT INTO ledger_accounts (name, kind, balance_micros)
        SELECT :escrow, 'escrow', CAST(:charge AS bigint) FROM placed
        RETURNING name
    ), charged AS (
        INSERT INTO ledger_transfers
            (idempotency_key, kind, debit_account, credit_account, amount_micros, order_id, actor, reason)
        SELECT :transfer_key, 'charge', debit.name, escrow.name, CAST(:charge AS bigint), :id, :actor,
            'order placed'
        FROM debit, escrow
    ), drip_feed_runs AS (
        INSERT INTO drip_feed_runs (id, order_id, run_no, quantity)
        SELECT nextval(pg_get_serial_sequence('orders', 'id')), placed.id, run_no, :per_run
        FROM placed, generate_series(1, CAST(:runs_written AS integer)) AS run_no
    ),"""
    + webhooks.outbox_ctes("placed.id", "placed")
    + """
    SELECT placed.* FROM placed, commit_mode
    """
)


async def write_order(
    session: AsyncSession, values: dict[str, Any], *, per_run: int, actor: str, alone: bool
) -> Order | None:
    """Intake's write; None when the balance does not cover the charge (nothing is written then)."""
    assert ("customer", "escrow") in ledger.TRANSFER_ROUTES["charge"]  # the movement the statement writes
    order_id, charge = values["id"], values["charge_micros"]
    parameters = {
        **values,
        "parameters": json.dumps(values["parameters"]) if values["parameters"] is not None else None,
        "workflow_input": json.dumps(values["workflow_input"]),
        "charge": charge,
        "commit_mode": "off" if alone else None,
        "customer": ledger.customer_account(values["customer_id"]),
        "escrow": ledger.escrow_account(order_id),
        "transfer_key": f"order:{order_id}:charge",
        "actor": actor,
        "per_run": per_run,
        "runs_written": values["runs"] or 0,
        **webhooks.event_parameters(
            webhooks.ORDER_CREATED, {"status": values["status"], "phase": values["phase"]}
        ),
    }
    del parameters["charge_micros"]
    order: Order | None = await session.scalar(select(Order).from_statement(_WRITE), parameters)
    return order
