"""Money math: exact integers, refunds never above the charge."""

from __future__ import annotations

from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows import policy


@pytest.mark.parametrize(
    ("quantity", "rate", "charge"),
    [
        (1000, 900_000, 900_000),  # 1000 at 0.90 per 1000
        (500, 900_000, 450_000),
        (1, 1, 0),  # 0.001 micro rounds half up to 0
        (1, 500, 1),  # exactly half a micro rounds up
        (1, 499, 0),
        (309, 900_000, 278_100),
        (0, 900_000, 0),
    ],
)
def test_charge_rounds_half_up(quantity: int, rate: int, charge: int) -> None:
    assert policy.charge_for(quantity, rate) == charge


@given(
    quantity=st.integers(1, 10**9),
    rate=st.integers(0, 10**10),
    shortfalls=st.lists(st.integers(0, 10**9), max_size=5),
)
def test_refunds_never_exceed_the_charge(quantity: int, rate: int, shortfalls: list[int]) -> None:
    charge = policy.charge_for(quantity, rate)
    # However a shortfall is split into refunds, they add up to at most the charge.
    total_short = 0
    refunded = 0
    for s in shortfalls:
        s = min(s, quantity - total_short)
        total_short += s
        refunded += policy.refund_for_shortfall(s, charge, quantity)
    assert 0 <= refunded <= charge
    assert policy.refund_for_shortfall(quantity, charge, quantity) == charge


@given(quantity=st.integers(0, 10**9), rate=st.integers(0, 10**10))
def test_charge_is_decimal_round_half_up(quantity: int, rate: int) -> None:
    exact = Decimal(quantity) * Decimal(rate) / Decimal(1000)  # at most 3 decimals: exact in Decimal
    assert policy.charge_for(quantity, rate) == int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@given(quantity=st.integers(1, 10**9), rate=st.integers(0, 10**10), data=st.data())
def test_a_refund_is_the_floor_of_its_share_and_never_above_the_charge(
    quantity: int, rate: int, data: st.DataObject
) -> None:
    charge = policy.charge_for(quantity, rate)
    shortfall = data.draw(st.integers(-(10**9), 2 * 10**9))
    refund = policy.refund_for_shortfall(shortfall, charge, quantity)
    clamped = min(max(shortfall, 0), quantity)
    exact = Decimal(clamped) * Decimal(charge) / Decimal(quantity)
    assert refund == int(exact.to_integral_value(rounding=ROUND_FLOOR))
    assert 0 <= refund <= charge


@given(quantity=st.integers(1, 10**6), rate=st.integers(0, 10**8), data=st.data())
def test_a_shortfall_split_into_refunds_never_pays_more_than_one_refund(
    quantity: int, rate: int, data: st.DataObject
) -> None:
    """Refunding a shortfall piece by piece (each piece floored) sums to at most refunding it at once."""
    charge = policy.charge_for(quantity, rate)
    shortfall = data.draw(st.integers(0, quantity))
    cuts = sorted(data.draw(st.lists(st.integers(0, shortfall), max_size=8)))
    pieces = [b - a for a, b in zip([0, *cuts], [*cuts, shortfall], strict=True)]
    split = sum(policy.refund_for_shortfall(p, charge, quantity) for p in pieces)
    whole = policy.refund_for_shortfall(shortfall, charge, quantity)
    assert split <= whole <= charge
    # Flooring loses less than a micro-unit per piece.
    assert whole - split < len(pieces)


@given(st.integers(-(10**15), 10**15))
def test_money_round_trips_through_its_text(micros: int) -> None:
    assert policy.parse_money(policy.format_money(micros)) == micros


@pytest.mark.parametrize("text", ["abc", "", "1.0000001", "NaN", "Infinity"])
def test_money_text_is_refused_rather_than_rounded(text: str) -> None:
    with pytest.raises(ValueError, match=r"decimal"):
        policy.parse_money(text)


def test_percentages_become_basis_points() -> None:
    assert policy.parse_percent_bp("2.5") == 250
    assert policy.parse_percent_bp("0") == 0
    with pytest.raises(ValueError, match="percentage"):
        policy.parse_percent_bp("101")


@pytest.mark.parametrize("text", ["٢٥", "２５", "2٥.0", "nan", "inf", "", "1.0000001"])
def test_money_text_is_ascii_digits_with_at_most_six_decimals(text: str) -> None:
    with pytest.raises(ValueError, match="decimal"):
        policy.parse_money(text)
