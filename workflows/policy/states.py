"""The order's statuses and phases as the rules group them, and the money unit."""

from __future__ import annotations

from workflows.models import Phase, RefillStatus, Status

MICROS = 1_000_000
Refusal = tuple[str, str] | None  # (stable code, text) when a request must be refused
STATUSES = tuple(Status)
FINAL_STATUSES = frozenset({Status.COMPLETED, Status.PARTIAL, Status.CANCELED, Status.REFUNDED})
PHASES = tuple(Phase)
HOLDABLE = (Phase.QUEUED, Phase.DELIVERING, Phase.INTERRUPTED)  # phases ops may pause
DELIVERY_OVER = (Phase.SETTLING, Phase.REFILL_WINDOW, Phase.CLOSED)  # no run is sent any more
IN_FLIGHT = (*HOLDABLE, Phase.PAUSED)  # phases in which an order is at a provider or waiting for one


# Refill statuses that end a refill.
REFILL_FINAL = frozenset({RefillStatus.COMPLETED, RefillStatus.REJECTED, RefillStatus.ERROR})
