"""Per-customer prices: an admin's own rate, or a discount off the catalog's rate rounded down to a
micro-unit; the charge is then rounded half up from that rate like every charge."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

from hypothesis import given
from hypothesis import strategies as st

from workflows import policy


def test_an_own_rate_wins_over_the_catalog() -> None:
    assert policy.customer_rate(1_000_000, rate_micros=800_000, discount_bp=None) == 800_000
    assert policy.customer_rate(1_000_000, rate_micros=0, discount_bp=None) == 0
    assert policy.customer_rate(1_000_000, rate_micros=None, discount_bp=None) == 1_000_000


def test_a_discount_rounds_the_rate_down_to_a_micro_unit() -> None:
    # 0.999999 less 33.33 %: 0.6666993333... per 1000, so 0.666699
    assert policy.customer_rate(999_999, rate_micros=None, discount_bp=3333) == 666_699
    assert policy.customer_rate(1_000_000, rate_micros=None, discount_bp=1250) == 875_000
    assert policy.customer_rate(1_000_000, rate_micros=None, discount_bp=10_000) == 0
    # and an order of 100 units at 0.666699 per 1000 costs 0.0666699, half up: 0.066670
    assert policy.charge_for(100, 666_699) == 66_670


@given(rate=st.integers(0, 10**13), bp=st.integers(1, 10_000))
def test_a_discount_is_the_exact_rate_rounded_down(rate: int, bp: int) -> None:
    exact = Decimal(rate) * (Decimal(10_000 - bp) / 10_000)
    assert policy.customer_rate(rate, rate_micros=None, discount_bp=bp) == int(
        exact.quantize(Decimal(1), rounding=ROUND_DOWN)
    )
    discounted = policy.customer_rate(rate, rate_micros=None, discount_bp=bp)
    # a discounted order never costs more than the same order at the catalog's rate
    assert policy.charge_for(137, discounted) <= policy.charge_for(137, rate)


def test_a_price_is_a_rate_or_a_discount_of_more_than_nothing() -> None:
    assert policy.price_refusal(rate_micros=1, discount_bp=None) is None
    assert policy.price_refusal(rate_micros=None, discount_bp=1) is None
    assert policy.price_refusal(rate_micros=None, discount_bp=10_000) is None
    for rate, bp in ((None, None), (1, 1), (None, 0), (None, 10_001), (-1, None)):
        refusal = policy.price_refusal(rate_micros=rate, discount_bp=bp)
        assert refusal is not None
        assert refusal[0] == "invalid_request"
