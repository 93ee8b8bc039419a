"""Ops' actions: pause, resume and retry one order, or pause and resume every order a provider holds."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends

from api.actions import MESSAGE_ERRORS, Messages, visible_order
from api.auth import role
from api.deps import Session
from api.errors import ApiError
from api.schemas import ActionRefusal, Id, OrderStateOut, ProviderActionOut, RequiredReason, error_responses
from backoffice.messaging import NotAccepted, ProviderNotFound, StateUpdate, orders_held
from store.keys import Caller
from workflows.models import OrderAction
from workflows.order import OrderWorkflow

router = APIRouter(tags=["ops"])
Ops = Annotated[Caller, Depends(role("ops", "admin"))]
PROVIDER_ERRORS = error_responses(401, 403, 404, 422)


def _order_route(update: StateUpdate, path: str, doc: str) -> None:
    """POST /v1/orders/{order_id}/<path>: sends the order `update` with the body's reason."""

    @router.post(
        f"/v1/orders/{{order_id}}/{path}",
        name=f"{path}_order",
        description=doc,
        response_model=OrderStateOut,
        responses=MESSAGE_ERRORS,
    )
    async def route(
        order_id: Id,
        body: RequiredReason,
        session: Session,
        messages: Messages,
        caller: Ops,
    ) -> OrderStateOut:
        order = await visible_order(session, caller, order_id)
        return OrderStateOut.of(await messages.send(order, update, OrderAction(caller.actor, body.reason)))


def _provider_route(update: StateUpdate, path: Literal["pause", "resume"], doc: str) -> None:
    """POST /v1/providers/{provider_id}/<path>: sends `update` to every order the provider holds now, each
    through its own workflow, and counts the answers."""

    @router.post(
        f"/v1/providers/{{provider_id}}/{path}",
        name=f"{path}_provider",
        description=doc,
        response_model=ProviderActionOut,
        responses=PROVIDER_ERRORS,
    )
    async def route(
        provider_id: Id,
        body: RequiredReason,
        session: Session,
        messages: Messages,
        caller: Ops,
    ) -> ProviderActionOut:
        try:
            held = await orders_held(session, provider_id)
        except ProviderNotFound as exc:
            raise ApiError(404, "provider_not_found", str(exc)) from exc
        action = OrderAction(caller.actor, body.reason)
        outcomes = await messages.service.send_to_provider(provider_id, held, update, action, via="rest")
        refusals = [
            ActionRefusal(order_id=o.order_id, code=o.answer.code, message=o.answer.message)
            for o in outcomes
            if isinstance(o.answer, NotAccepted)
        ]
        return ProviderActionOut(
            provider_id=provider_id,
            action=path,
            orders=len(held),
            accepted=len(held) - len(refusals),
            refused=len(refusals),
            refusals=refusals,
        )


_order_route(
    OrderWorkflow.pause,
    "pause",
    "Hold the order: no new run goes out until it is resumed (`cannot_pause` once delivery has ended).",
)
_order_route(
    OrderWorkflow.resume, "resume", "Let a paused order deliver again (`not_paused` if it is not paused)."
)
_order_route(
    OrderWorkflow.retry,
    "retry",
    "Send an order in phase `needs_attention` on once its cause is fixed: the step that failed for good\n"
    "runs again (`not_needing_attention` otherwise).",
)
_provider_route(
    OrderWorkflow.pause,
    "pause",
    "Pause every order the provider holds now (queued for it, delivering, interrupted or paused there),\n"
    "each through its own workflow; answers how many accepted and why the others refused. "
    "Orders placed later\n"
    "are not paused: take the provider out of the catalog to stop routing new orders to it.",
)
_provider_route(
    OrderWorkflow.resume,
    "resume",
    "Resume every paused order the provider holds; orders that are not paused refuse with `not_paused`.",
)
