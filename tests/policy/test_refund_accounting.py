"""One accounting of units and money for refunds: support refunds by units mark those units refunded, the
settlement refunds only the shortfall not already refunded, refunds by amount are goodwill on top.

The property test drives the policy's own functions through interleavings of runs (several provider orders,
late and over-delivery included), support refunds by units and by amount, cancels and link faults; the
workflow test runs the case that used to refund one unit twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from support import ScriptedProvider, balances, open_shop, order_worker, place, start_order, until
from workflows import policy
from workflows.models import ServiceType, Status, SupportRefund
from workflows.order import OrderWorkflow

EXAMPLES = 600


@dataclass
class Ledger:
    """What the order has refunded so far, as the workflow keeps it."""

    charge: int
    quantity: int
    refunded: int = 0
    refunded_units: int = 0
    goodwill: int = 0  # money moved by refunds by amount
    moves: list[int] = field(default_factory=list)

    def support(self, *, amount: int | None = None, units: int | None = None) -> None:
        money, marked = policy.support_refund(
            amount_micros=amount,
            units=units,
            charge=self.charge,
            quantity=self.quantity,
            refunded=self.refunded,
            refunded_units=self.refunded_units,
        )
        if money <= 0:
            return  # the workflow refuses it: nothing_refundable
        self.refunded += money
        self.refunded_units += marked
        self.goodwill += money if amount is not None else 0
        self.moves.append(money)


support_step = st.one_of(
    st.tuples(st.just("amount"), st.integers(1, 3_000_000)),
    st.tuples(st.just("units"), st.integers(1, 12_000)),
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    quantity=st.integers(1, 10_000),
    rate=st.integers(0, 5_000_000),
    runs=st.lists(st.tuples(st.integers(0, 12_000), st.booleans()), min_size=1, max_size=4),
    refunds=st.lists(support_step, max_size=4),
    stop=st.sampled_from([None, "cancel", "link_fault"]),
    link_fault_refund=st.sampled_from(["none", "remaining"]),
    tolerance_bp=st.integers(0, 1000),
    service_failed=st.booleans(),
    service_type=st.sampled_from([t for t in ServiceType if policy.TYPE_RULES[t].orderable]),
)
def test_no_unit_is_refunded_twice_and_the_cost_is_what_the_policy_says(
    quantity: int,
    rate: int,
    runs: list[tuple[int, bool]],
    refunds: list[tuple[str, int]],
    stop: str | None,
    link_fault_refund: str,
    tolerance_bp: int,
    service_failed: bool,
    service_type: ServiceType,
) -> None:
    # Per 1000 units, per 1000 lines, or flat for a package: one accounting for every type.
    charge = policy.order_charge(service_type, quantity, rate)
    book = Ledger(charge, quantity)
    # Provider orders deliver, support refunds interleaved; a given-up provider order may deliver late and
    # over: everything delivered counts, capped at the quantity.
    delivered = 0
    for i, (units, _late) in enumerate(runs):
        delivered += units
        if i < len(refunds):
            kind, value = refunds[i]
            book.support(**{kind: value})
    for kind, value in refunds[len(runs) :]:
        book.support(**{kind: value})
    delivered = min(delivered, quantity)
    if book.refunded >= charge and charge > 0:
        stop = "refunded"  # a refund in full stops delivery

    status, refund, units, revenue = policy.final_settlement(
        quantity=quantity,
        delivered=delivered,
        charge=charge,
        refunded=book.refunded,
        refunded_units=book.refunded_units,
        tolerance_bp=tolerance_bp,
        stop_kind=stop,
        link_fault_refund=link_fault_refund,
        service_failed=service_failed,
        service_type=service_type,
    )
    total = book.refunded + refund
    owed = policy.refundable_units(
        quantity=quantity,
        delivered=delivered,
        tolerance_bp=tolerance_bp,
        stop_kind=stop,
        link_fault_refund=link_fault_refund,
        service_failed=service_failed,
        service_type=service_type,
    )
    final_units = book.refunded_units + units
    # Per type: a line the customer wrote is refunded when it is missing, whatever the tolerance; a count
    # (or a package's units) within the tolerance is not.
    if stop is None:
        tolerated = policy.within_tolerance(quantity - delivered, quantity, tolerance_bp)
        keeps = tolerated and not service_failed and policy.TYPE_RULES[service_type].tolerance
        assert owed == (0 if keeps else quantity - delivered)

    # Money: never more than the charge, nothing negative, the rest is revenue.
    assert refund >= 0
    assert 0 <= total <= charge
    assert revenue == charge - total >= 0
    # Units: the settlement refunds only units support has not refunded; none twice, never above quantity.
    assert units == max(owed - book.refunded_units, 0)
    assert final_units == max(book.refunded_units, owed) <= quantity
    # The customer's cost is what the policy says for the units delivered, less support's goodwill (refunds
    # by amount, and units support refunded beyond the shortfall).
    policy_cost = charge - policy.price_of_units(owed, charge, quantity)
    beyond = policy.price_of_units(final_units, charge, quantity) - policy.price_of_units(
        owed, charge, quantity
    )
    assert charge - total == max(policy_cost - book.goodwill - beyond, 0)
    if not refunds:
        assert charge - total == policy_cost
    # The reseller's view reproduces the refund: charge * remains / quantity, within one unit's price.
    if status in policy.FINAL_STATUSES and charge > 0:
        shown, remains = policy.reseller_view(
            status=status,
            quantity=quantity,
            delivered=delivered,
            charge=charge,
            refunded=total,
            refunded_units=final_units,
        )
        assert 0 <= remains <= quantity
        assert abs(charge * remains // quantity - total) <= -(-charge // quantity)
        assert (remains == 0) == (total == 0)
        assert shown in (Status.COMPLETED, Status.PARTIAL, Status.CANCELED, Status.REFUNDED)


def test_refunds_by_units_add_up_exactly_however_they_are_split() -> None:
    book = Ledger(charge=1_000, quantity=3)
    for _ in range(3):
        book.support(units=1)
    assert (book.refunded, book.refunded_units) == (1_000, 3)  # 333 + 333 + 334: nothing lost to rounding
    book.support(units=1)
    assert book.moves == [333, 333, 334]  # a fourth unit does not exist: nothing moved


async def test_support_refunds_units_then_the_provider_ends_short_by_them(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Support refunds 500 of 1000 units (0.50) while delivering; the provider then ends Partial at 500.
    The shortfall was already refunded: the order refunds 0.50 in all, not 1.00."""
    env = temporal_env
    shop = await open_shop(sessions, pace_per_hour=10_000)
    order = await place(sessions, shop, 1000)
    alpha = order.routes[0].provider_id
    provider = ScriptedProvider(
        script={alpha: [("In progress", 800), ("In progress", 600), ("Partial", 500)]}
    )
    async with order_worker(env.client, sessions, provider) as queue:
        handle = await start_order(env.client, queue, order)
        await until(env, handle, lambda s: s.status == Status.IN_PROGRESS)
        receipt = await handle.execute_update(
            OrderWorkflow.refund, SupportRefund("support:lee", "ticket 7", "T-7", units=500)
        )
        assert (receipt.refunded_micros, receipt.refunded_units) == (500_000, 500)
        state = await handle.result()
    assert (state.status, state.delivered) == (Status.PARTIAL, 500)
    assert (state.refunded_micros, state.refunded_units) == (500_000, 500)
    assert await balances(sessions, order) == {"customer": 99_500_000, "escrow": 0, "revenue": 500_000}
