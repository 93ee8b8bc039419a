"""Scenario rules: which orders and calls a scenario reaches, and what it does to an order's fate.

Delivery scenarios (instant, partial, link_fault, drop) are stamped on orders, new and existing; call
scenarios (outage, slow, garbled, lost_answer) are looked up per call. Rules stack in the order they are
set; `normal` clears the rules of its scope (none: all) and lets orders still under way deliver in full.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from providers.apiv2 import BAD_LINK
from providers.simulator.model import FINAL, SimOrder

ScenarioName = Literal[
    "normal", "instant", "partial", "outage", "link_fault", "garbled", "slow", "drop", "lost_answer"
]
CALL_SCENARIOS = frozenset({"outage", "slow", "garbled", "lost_answer"})
LinkFaultKind = Literal["private", "deleted", "renamed", "invalid"]
# What the provider says about a faulty link: beside `status: Canceled` as `reason`, or as the `add` error.
LINK_FAULT_REASONS: dict[str, str] = {
    "private": "Link is private: the account was made private",
    "deleted": "Link is dead: the post or account was deleted",
    "renamed": "Link is dead: the username was changed",
    "invalid": BAD_LINK,
}

Subject = tuple[str | None, str | None]  # (link, service) a call is about; (None, None): about no order


@dataclass
class Rule:
    """A scenario for the orders and calls whose link contains `link_contains` and whose service is
    `service` (None: any). A call scenario with `until` ends at that simulated time."""

    link_contains: str | None
    scenario: str
    value: float | None
    service: str | None = None
    until: float | None = None
    fault: str = "private"

    @property
    def scope(self) -> Subject:
        return self.link_contains, self.service

    def matches(self, link: str | None, service: str | None = None) -> bool:
        """A rule without a scope matches every call; a scoped one only calls about such links/services."""
        if self.link_contains is not None and (link is None or self.link_contains not in link):
            return False
        return self.service is None or self.service == service

    def matches_order(self, order: SimOrder) -> bool:
        return self.matches(order.link, order.service.id)

    def live(self, now: float) -> bool:
        return self.until is None or now < self.until


def with_rule(rules: list[Rule], rule: Rule) -> list[Rule]:
    """The rules once `rule` is set: it replaces its own scope's rule of the same scenario; `normal` clears
    its scope (none: everything) and, when scoped, stays to shield those links from broader rules."""
    if rule.scenario == "normal":
        kept = [r for r in rules if rule.scope != (None, None) and r.scope != rule.scope]
        return [*kept, rule] if rule.scope != (None, None) else kept
    return [*(r for r in rules if (r.scope, r.scenario) != (rule.scope, rule.scenario)), rule]


def link_fault(rules: list[Rule], link: str, service: str) -> Rule | None:
    """The latest link-fault rule for a link (what a refill or a new order finds)."""
    for rule in reversed(rules):
        if rule.matches(link, service) and rule.scenario in ("link_fault", "normal"):
            return rule if rule.scenario == "link_fault" else None
    return None


def call_rule(rules: list[Rule], subjects: list[Subject], now: float) -> Rule | None:
    """The most recent live call scenario for any of the subjects a call is about."""
    for rule in reversed(rules):
        if rule.live(now) and any(rule.matches(link, service) for link, service in subjects):
            if rule.scenario == "normal":
                return None
            if rule.scenario in CALL_SCENARIOS:
                return rule
    return None


def stamp(order: SimOrder, rule: Rule, now: float) -> None:
    """Apply a fate-changing scenario to an order, from its present count (orders cannot lose delivery).

    Partial and link faults only touch orders still under way; a drop also hits completed orders.
    `value` is the delivered share where delivery ends (partial: 0.5, link fault: now) or the share that
    drops (0.1). Call scenarios change nothing here.
    """
    status, delivered = order.state(now)
    share = None if rule.value is None else min(rule.value, 1.0)
    if rule.scenario == "drop":
        order.drop_fraction = 0.1 if share is None else share
    elif status in FINAL:
        return
    elif rule.scenario == "normal":
        order.stop_at = order.fault_at = order.fault_reason = None
        order.drop_fraction = 0.0
        order.instant = False
    elif rule.scenario == "instant":
        order.instant = True
    elif rule.scenario == "partial":
        order.stop_at = max(int(order.total * (0.5 if share is None else share)), delivered)
    elif rule.scenario == "link_fault":
        order.fault_at = max(int(order.total * (share or 0.0)), delivered)
        order.fault_reason = LINK_FAULT_REASONS.get(rule.fault, LINK_FAULT_REASONS["private"])
    else:
        return
    order.scenario = rule.scenario
