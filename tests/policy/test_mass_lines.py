"""Mass orders' text form: one `service_id|link|quantity` per line, each line refused on its own."""

from __future__ import annotations

from workflows import policy
from workflows.policy import MassLine, MassLineRefusal


def test_each_line_is_read_on_its_own_and_blank_lines_are_skipped() -> None:
    text = "1|https://instagram.com/a|100\n\n  \r\n2 | https://x.com/b?q=1|2 | 50 \nnonsense\n3|link|lots\n"
    assert policy.parse_mass_text(text) == [
        MassLine(1, {"service_id": 1, "link": "https://instagram.com/a", "quantity": 100}),
        # the service id first and the quantity last: a link holding `|` stays whole
        MassLine(4, {"service_id": 2, "link": "https://x.com/b?q=1|2", "quantity": 50}),
        MassLineRefusal(5, "bad_line", "a line is service_id|link|quantity"),
        MassLineRefusal(6, "bad_line", "the quantity is not a number"),
    ]


def test_numbers_are_ascii_digits_only() -> None:
    parsed = policy.parse_mass_text("１|https://a|100\n1|https://a|1_000\n-1|https://a|5\n1|https://a|")
    assert [p.code for p in parsed if isinstance(p, MassLineRefusal)] == ["bad_line"] * 4


def test_a_mass_order_holds_one_to_the_limit_of_lines() -> None:
    assert policy.mass_size_refusal(0) == ("no_lines", "a mass order needs at least one line")
    assert policy.mass_size_refusal(1) is None
    assert policy.mass_size_refusal(policy.MASS_ORDER_LIMIT) is None
    refusal = policy.mass_size_refusal(policy.MASS_ORDER_LIMIT + 1)
    assert refusal is not None
    assert refusal[0] == "too_many_lines"


def test_each_line_keys_off_the_batch() -> None:
    keys = {policy.mass_line_key("batch", n) for n in range(1, policy.MASS_ORDER_LIMIT + 1)}
    assert len(keys) == policy.MASS_ORDER_LIMIT
    assert policy.mass_line_key("batch", 7) != policy.mass_line_key("b", 7)
