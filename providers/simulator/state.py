"""The simulator's whole state: orders, refills, rules, offered services, the request log, and keeping what
changed in the store before an answer leaves."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from providers.simulator import scenarios
from providers.simulator.model import SERVICES, SimClock, SimOrder, SimRefill, SimService
from providers.simulator.scenarios import Rule, Subject
from providers.simulator.store import Meta, SimStore
from providers.simulator.subscriptions import SimSubscriptions

REQUEST_LOG_SIZE = 10_000


@dataclass
class Logged:
    """One API v2 request as the simulator saw it: tests count submissions and batch calls with these."""

    seq: int
    at: float  # simulated time
    action: str
    params: dict[str, Any]  # as sent, without the key
    http_status: int  # 0 while the answer is still on its way


@dataclass
class SimState:
    clock: SimClock
    api_key: str
    orders: dict[int, SimOrder] = field(default_factory=dict)
    refills: dict[int, SimRefill] = field(default_factory=dict)
    idempotency: dict[str, int] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    next_order: int = 23501
    next_refill: int = 501
    services: dict[str, SimService] = field(default_factory=lambda: dict(SERVICES))
    requests: list[Logged] = field(default_factory=list)  # the latest REQUEST_LOG_SIZE requests
    request_count: int = 0
    requests_by_action: dict[str, int] = field(default_factory=dict)
    store: SimStore | None = None  # where changes are kept (the request log is not)
    subscriptions: SimSubscriptions = field(default_factory=SimSubscriptions)  # in memory only
    _changed: tuple[set[int], set[int], set[str]] = field(default_factory=lambda: (set(), set(), set()))

    def changed(
        self, orders: Iterable[int] = (), refills: Iterable[int] = (), keys: Iterable[str] = ()
    ) -> None:
        """Note what a call changed; `commit` writes it (and the counters, rules, services and clock)."""
        self._changed[0].update(orders)
        self._changed[1].update(refills)
        self._changed[2].update(keys)

    def commit(self, *, meta: bool = False, everything: bool = False) -> None:
        """Keep what changed before the answer leaves: after a crash no answered id is given out again.

        `meta`: the rules, services or clock changed (control calls); an API v2 call that changed no order
        or refill (a status read) writes nothing. `everything`: the whole state replaces what was kept.
        """
        orders, refills, keys = (
            (set(self.orders), set(self.refills), set(self.idempotency)) if everything else self._changed
        )
        if self.store is not None and (meta or everything or any(self._changed)):
            self.store.write(
                self.meta(),
                orders=[self.orders[i] for i in orders],
                refills=[self.refills[i] for i in refills],
                keys={k: self.idempotency[k] for k in keys},
                everything=everything,
            )
        for noted in self._changed:
            noted.clear()

    def meta(self) -> Meta:
        return Meta(self.next_order, self.next_refill, self.rules, self.services, self.clock.offset)

    def restore(self) -> None:
        """Take back what the store kept (nothing on a new file)."""
        assert self.store is not None
        saved = self.store.read()
        self.orders, self.refills, self.idempotency = saved.orders, saved.refills, saved.idempotency
        if saved.meta is not None:
            self.next_order, self.next_refill = saved.meta.next_order, saved.meta.next_refill
            self.rules, self.services = saved.meta.rules, saved.meta.services
            self.clock.offset = max(self.clock.offset, saved.meta.clock_offset)  # never backward

    def log_request(self, action: str, params: dict[str, Any]) -> Logged:
        """Log a request as it arrives (a slow answer is counted before it leaves); status set later."""
        self.request_count += 1
        self.requests_by_action[action] = self.requests_by_action.get(action, 0) + 1
        shown = {k: v for k, v in params.items() if k not in ("key", "action")}
        entry = Logged(self.request_count, self.clock.now(), action, shown, 0)
        self.requests.append(entry)
        if len(self.requests) > REQUEST_LOG_SIZE:
            del self.requests[: len(self.requests) - REQUEST_LOG_SIZE]
        return entry

    def set_rule(self, rule: Rule) -> int:
        """Set a scenario for later calls and new orders, and stamp it on the existing orders it matches;
        how many those are."""
        self.rules = scenarios.with_rule(self.rules, rule)
        matched = [order for order in self.orders.values() if rule.matches_order(order)]
        for order in matched:
            scenarios.stamp(order, rule, self.clock.now())
        self.changed(orders=[order.id for order in matched])
        return len(matched)

    def add_order(self, order: SimOrder, key: str | None) -> None:
        """Take a new order: it gets every delivery scenario that matches it, oldest first."""
        for rule in self.rules:
            if rule.matches_order(order):
                scenarios.stamp(order, rule, self.clock.now())
        self.orders[order.id] = order
        if key is not None:
            self.idempotency[key] = order.id
        self.changed(orders=[order.id], keys=[key] if key is not None else [])

    def link_fault(self, link: str, service: str) -> Rule | None:
        return scenarios.link_fault(self.rules, link, service)

    def call_rule(self, subjects: list[Subject]) -> Rule | None:
        return scenarios.call_rule(self.rules, subjects, self.clock.now())
