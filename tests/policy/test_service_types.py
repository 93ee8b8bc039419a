"""Service types: what each type's order carries, how it is counted and priced at intake, how it is delivered
and how the policy settles it (docs/policy.md, "Service types").

The rules are pure functions (workflows/policy.py, workflows/text.py), tested directly for every type; the
workflow tests run the real OrderWorkflow on the time-skipping server with a scripted provider: a comments
order refunds each missing line whatever the tolerance, a package is all or nothing unless the provider
reports remains, and a typed order's runs carry its parameters.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from store.ledger import check_invariants
from support import ScriptedProvider, balances, open_shop, order_worker, place, run_order
from workflows import policy
from workflows.models import OrderParameters, ServiceType, Status
from workflows.text import MAX_LINES, parse_parameters

T = ServiceType
RATE = 2_000_000  # 2.00 per 1000 units (or lines); the price of one package
TERMS = policy.ServiceTerms(7, "Typed", r"https://\S+", 1, 1000, False, 1000)


def terms(
    kind: ServiceType, *, low: int = 1, high: int = 1000, dripfeed: bool = False
) -> policy.ServiceTerms:
    return dataclasses.replace(TERMS, kind=kind, min_quantity=low, max_quantity=high, dripfeed=dripfeed)


def parameters(**texts: str) -> OrderParameters:
    parsed = parse_parameters(texts)
    assert isinstance(parsed, OrderParameters), parsed
    return parsed


# Every type an order can be placed for: the texts sent, the quantity sent, then what intake takes (the
# quantity and the parameters kept) and charges at RATE.
CASES: list[tuple[ServiceType, dict[str, str], int | None, int, int]] = [
    (T.DEFAULT, {}, 500, 500, 1_000_000),
    (T.PACKAGE, {}, None, 1000, RATE),  # a package is the service's `max` units, priced flat
    (T.CUSTOM_COMMENTS, {"comments": "Nice!\r\nGreat shot\n\n   \n  Wow  \n"}, None, 3, 6_000),
    (T.CUSTOM_COMMENTS_PACKAGE, {"comments": "first\nsecond"}, None, 2, RATE),
    (T.MENTIONS, {"usernames": "alice\nbob"}, 300, 300, 600_000),
    (T.MENTIONS_WITH_HASHTAGS, {"usernames": "alice", "hashtags": "#sun\n#sea"}, 300, 300, 600_000),
    (T.MENTIONS_CUSTOM_LIST, {"usernames": "a\nb\nc\nd"}, None, 4, 8_000),
    (T.MENTIONS_HASHTAG, {"hashtag": "#sunset"}, 300, 300, 600_000),
    (T.MENTIONS_USER_FOLLOWERS, {"username": "natgeo"}, 300, 300, 600_000),
    (T.MENTIONS_MEDIA_LIKERS, {"media": "https://instagram.com/p/Abc123"}, 300, 300, 600_000),
    (T.COMMENT_LIKES, {"username": "alice"}, 300, 300, 600_000),
    (T.COMMENT_REPLIES, {"username": "bob", "comments": "thanks\nagreed"}, None, 2, 4_000),
    (T.POLL, {"answer_number": "2"}, 300, 300, 600_000),
    (T.SEO, {"keywords": "smm panel\ncheap likes"}, 300, 300, 600_000),
]


def test_every_type_but_subscriptions_has_a_case_and_a_rule() -> None:
    assert {case[0] for case in CASES} == set(ServiceType) - {T.SUBSCRIPTIONS}
    assert set(policy.TYPE_RULES) == set(ServiceType)


@pytest.mark.parametrize(("kind", "texts", "sent", "quantity", "charge"), CASES, ids=[c[0] for c in CASES])
def test_each_type_is_taken_counted_and_priced(
    kind: ServiceType, texts: dict[str, str], sent: int | None, quantity: int, charge: int
) -> None:
    given = parameters(**texts)
    taken = policy.typed_order(terms(kind), quantity=sent, parameters=given, strict=True)
    assert taken == policy.TypedOrder(quantity, given)
    assert policy.order_charge(kind, quantity, RATE) == charge
    # Every parameter the type needs is needed: without it, nothing is taken.
    for name in policy.TYPE_RULES[kind].needs:
        without = {k: v for k, v in texts.items() if k != name}
        refused = policy.typed_order(
            terms(kind), quantity=sent, parameters=parameters(**without), strict=False
        )
        assert isinstance(refused, tuple)
        assert refused[0] == "missing_parameter"
        assert name in refused[1]


def test_lines_are_split_on_either_line_break_trimmed_and_blank_ones_ignored() -> None:
    assert parameters(comments="a\r\nb\n\n  c\td  \n\r\n") == OrderParameters(comments=("a", "b", "c\td"))
    assert parameters(comments="   \n\n", usernames="") == OrderParameters()  # empty: no parameter at all
    assert parameters(answer_number="7", hashtag=" #tag ") == OrderParameters(answer_number=7, hashtag="#tag")


@pytest.mark.parametrize(
    "texts",
    [
        {"comments": "fine\nnot\x00fine"},  # the text rule, multi-line: a NUL is refused
        {"username": "line\nbreak"},  # a one-line field keeps no line breaks
        {"hashtag": "two words"},
        {"media": "https://x.com/a b"},
        {"answer_number": "0"},
        {"answer_number": "٢"},  # ASCII digits only
        {"answer_number": "101"},
        {"usernames": "x\n" * (MAX_LINES + 1)},
        {"comments": "x" * 2_201},
    ],
)
def test_malformed_parameters_are_refused(texts: dict[str, str]) -> None:
    refused = parse_parameters(texts)
    assert isinstance(refused, tuple)
    assert refused[0] == "bad_parameter"


def test_rest_is_strict_and_api_v2_liberal_about_what_a_type_does_not_take() -> None:
    extra = parameters(usernames="alice", comments="a comment")
    strict = policy.typed_order(terms(T.MENTIONS), quantity=100, parameters=extra, strict=True)
    assert strict == ("unexpected_parameter", "service 7 (Mentions) takes no comments")
    liberal = policy.typed_order(terms(T.MENTIONS), quantity=100, parameters=extra, strict=False)
    assert liberal == policy.TypedOrder(100, OrderParameters(usernames=("alice",)))  # never forwarded
    three = parameters(comments="a\nb\nc")
    mismatch = policy.typed_order(terms(T.CUSTOM_COMMENTS), quantity=5, parameters=three, strict=True)
    assert isinstance(mismatch, tuple)
    assert mismatch[0] == "quantity_mismatch"
    for strict_ in (True, False):
        same = policy.typed_order(terms(T.CUSTOM_COMMENTS), quantity=3, parameters=three, strict=strict_)
        assert same == policy.TypedOrder(3, three)
    assert policy.typed_order(terms(T.CUSTOM_COMMENTS), quantity=5, parameters=three, strict=False) == (
        policy.TypedOrder(3, three)
    )
    refused = policy.typed_order(terms(T.DEFAULT), quantity=None, parameters=OrderParameters(), strict=False)
    assert refused == ("missing_parameter", "service 7 (Default) needs quantity")


def test_subscriptions_are_not_taken_as_orders_yet() -> None:
    refused = policy.typed_order(
        terms(T.SUBSCRIPTIONS), quantity=100, parameters=parameters(username="natgeo"), strict=False
    )
    assert isinstance(refused, tuple)
    assert refused[0] == "type_not_orderable"


def test_the_line_count_is_held_to_the_services_min_and_max() -> None:
    lines = parameters(comments="a\nb\nc")
    taken = policy.typed_order(terms(T.CUSTOM_COMMENTS, low=5), quantity=None, parameters=lines, strict=True)
    assert isinstance(taken, policy.TypedOrder)
    too_few = policy.intake_refusal(
        terms(T.CUSTOM_COMMENTS, low=5), link="https://x/p", quantity=taken.quantity, runs=None, interval=None
    )
    assert too_few == ("quantity_below_min", "quantity less than minimal 5")
    too_many = policy.intake_refusal(
        terms(T.CUSTOM_COMMENTS, high=2),
        link="https://x/p",
        quantity=taken.quantity,
        runs=None,
        interval=None,
    )
    assert too_many == ("quantity_above_max", "quantity more than maximum 2")


def test_drip_feed_is_for_default_only() -> None:
    for kind in ServiceType:
        refusal = policy.intake_refusal(
            terms(kind, dripfeed=True), link="https://x/p", quantity=100, runs=3, interval=60
        )
        assert (refusal is None) == (kind == T.DEFAULT), kind


def test_lines_and_packages_go_whole_and_only_whole_to_the_next_route() -> None:
    assert policy.plan_runs(5000, 1000) == [(1000, 0), (1000, 60), (1000, 120), (1000, 180), (1000, 240)]
    assert policy.plan_runs(5000, 1000, splittable=False) == [(5000, 0)]
    for kind, rule in policy.TYPE_RULES.items():
        assert rule.splittable == (rule.counted_by == "quantity"), kind
        assert policy.resend_units(kind, 1000, 0) == 1000  # nothing arrived: all of it may go elsewhere
        assert policy.resend_units(kind, 1000, 400) == (600 if rule.splittable else 0)
        assert policy.resend_units(kind, 1000, 1000) == 0


def settle(kind: ServiceType, *, quantity: int, delivered: int, charge: int, tolerance_bp: int) -> Any:
    return policy.final_settlement(
        quantity=quantity,
        delivered=delivered,
        charge=charge,
        refunded=0,
        refunded_units=0,
        tolerance_bp=tolerance_bp,
        stop_kind=None,
        link_fault_refund="none",
        service_failed=False,
        service_type=kind,
    )


def test_a_missing_line_is_refunded_whatever_the_tolerance() -> None:
    # 2 of 10 lines missing is 20 %, within a 30 % tolerance: a Default order keeps it, a comments order not.
    assert settle(T.DEFAULT, quantity=10, delivered=8, charge=10_000, tolerance_bp=3000)[:3] == (
        Status.COMPLETED,
        0,
        0,
    )
    for kind in (T.CUSTOM_COMMENTS, T.CUSTOM_COMMENTS_PACKAGE, T.MENTIONS_CUSTOM_LIST, T.COMMENT_REPLIES):
        assert settle(kind, quantity=10, delivered=8, charge=10_000, tolerance_bp=3000) == (
            Status.PARTIAL,
            2_000,
            2,
            8_000,
        )


def test_a_package_is_all_or_nothing_unless_the_provider_reports_remains() -> None:
    # Without remains the provider's word decides everything: Completed is all of it, an end short is none.
    assert policy.delivered_in_run(1000, Status.COMPLETED, None) == 1000
    assert policy.delivered_in_run(1000, Status.PARTIAL, None) == 0
    assert settle(T.PACKAGE, quantity=1000, delivered=0, charge=RATE, tolerance_bp=200) == (
        Status.CANCELED,
        RATE,
        1000,
        0,
    )
    # With remains, the units it lacks are a shortfall like any other, judged by the tolerance.
    delivered = policy.delivered_in_run(1000, Status.PARTIAL, 400)
    assert settle(T.PACKAGE, quantity=1000, delivered=delivered, charge=RATE, tolerance_bp=200) == (
        Status.PARTIAL,
        800_000,
        400,
        1_200_000,
    )
    delivered = policy.delivered_in_run(1000, Status.PARTIAL, 10)
    assert settle(T.PACKAGE, quantity=1000, delivered=delivered, charge=RATE, tolerance_bp=200)[:2] == (
        Status.COMPLETED,
        0,
    )


# The workflow, on the time-skipping server, with a scripted provider.

COMMENTS = "\n".join(f"comment number {n}" for n in range(1, 11))


async def test_a_comments_order_goes_whole_and_refunds_each_missing_line(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """10 comments on a service whose pace is 2 an hour and whose tolerance is 50 %: one provider order of
    10 lines carrying them all; the provider ends Partial with 3 missing, and 3 lines are refunded."""
    shop = await open_shop(
        sessions, type="Custom Comments", min=1, max=1000, pace_per_hour=2, tolerance_pct="50"
    )
    order = await place(sessions, shop, None, parameters=parameters(comments=COMMENTS))
    assert (order.quantity, order.charge_micros) == (10, 10_000)  # 1.00 per 1000 lines
    alpha = order.routes[0].provider_id
    provider = ScriptedProvider(script={alpha: [("In progress", 6), ("Partial", 3)]})
    async with order_worker(temporal_env.client, sessions, provider) as queue:
        state = await run_order(temporal_env.client, queue, order)
    [sent] = provider.submitted
    assert (sent.quantity, sent.service_type, sent.parameters.comments) == (
        10,
        T.CUSTOM_COMMENTS,
        tuple(COMMENTS.split("\n")),
    )
    assert (state.status, state.delivered, state.refunded_micros, state.refunded_units) == (
        Status.PARTIAL,
        7,
        3_000,
        3,
    )
    async with sessions() as session:
        assert await check_invariants(session) == []


@pytest.mark.parametrize(
    ("script", "sent_to", "status", "refunded"),
    [
        # Route 1 gives up with nothing delivered: the whole package goes to route 2, which delivers it.
        ({0: [("Canceled", None)], 1: [("Completed", None)]}, [0, 1], Status.COMPLETED, 0),
        # Route 1 gives up after 700 of 1000 (it says so): half a package goes nowhere, the rest is refunded
        # whatever the tolerance (50 %).
        ({0: [("Canceled", 300)], 1: [("Completed", None)]}, [0], Status.PARTIAL, 1_500_000),
        # Route 1 ends short without saying how short: nothing is known to have arrived, all is refunded.
        ({0: [("Partial", None)]}, [0], Status.CANCELED, 5_000_000),
        # It ends 300 short and says so: a shortfall like any other, here within the tolerance (50 %).
        ({0: [("Partial", 300)]}, [0], Status.COMPLETED, 0),
    ],
)
async def test_a_package_is_all_or_nothing_unless_its_provider_reports_remains(
    temporal_env: WorkflowEnvironment,
    sessions: async_sessionmaker[AsyncSession],
    script: dict[int, list[tuple[Any, ...]]],
    sent_to: list[int],
    status: Status,
    refunded: int,
) -> None:
    shop = await open_shop(
        sessions, type="Package", rate="5.00", min=1000, max=1000, pace_per_hour=100, tolerance_pct="50"
    )
    order = await place(sessions, shop, None)
    assert (order.quantity, order.charge_micros) == (1000, 5_000_000)  # the package's size, its price
    routes = [r.provider_id for r in order.routes]
    provider = ScriptedProvider(script={routes[i]: answers for i, answers in script.items()})
    async with order_worker(temporal_env.client, sessions, provider) as queue:
        state = await run_order(temporal_env.client, queue, order)
    assert [(s.provider_id, s.quantity) for s in provider.submitted] == [(routes[i], 1000) for i in sent_to]
    assert (state.status, state.refunded_micros) == (status, refunded)
    assert await balances(sessions, order) == {
        "customer": 100_000_000 - 5_000_000 + refunded,
        "escrow": 0,
        "revenue": 5_000_000 - refunded,
    }


async def test_a_counted_type_is_paced_and_each_run_carries_its_parameters(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = await open_shop(sessions, type="Mentions", pace_per_hour=1000)
    order = await place(sessions, shop, 2500, parameters=parameters(usernames="alice\nbob"))
    alpha = order.routes[0].provider_id
    provider = ScriptedProvider(script={alpha: [("Completed", 0)]})
    async with order_worker(temporal_env.client, sessions, provider) as queue:
        state = await run_order(temporal_env.client, queue, order)
    assert [s.quantity for s in provider.submitted] == [1000, 1000, 500]
    assert {(s.service_type, s.parameters) for s in provider.submitted} == {
        (T.MENTIONS, OrderParameters(usernames=("alice", "bob")))
    }
    assert (state.status, state.delivered, state.refunded_micros) == (Status.COMPLETED, 2500, 0)
