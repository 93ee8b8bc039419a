"""A provider simulator: a real API v2 HTTP server with a controllable clock and scenarios.

The embedded dev stack and the end-to-end tests run orders against it, so it speaks the protocol the way
real providers do (HTTP 200, errors as `{"error": ...}`, numbers as strings) and misbehaves the way they do
(partial delivery, link faults, drops after completion, outages, slow or garbled answers) on demand.

- `model`: services, orders, refills and the clock; delivery is a pure function of the clock, so advancing
  it (`POST /sim/clock/advance`) moves every order forward without any background task.
- `scenarios`: which orders and calls a scenario reaches and what it does to them.
- `state`: all of it in memory, kept in SQLite by `store` when there is a state file, every change committed
  before its answer leaves, so a SIGKILL neither loses orders nor lets an order id be handed out twice.
- `protocol`: the API v2 actions (on the shared protocol module, providers/apiv2.py).
- `control`: the `/sim/...` endpoints: clock, scenarios, services, request log, orders, reset.

Scenarios apply to calls and orders whose link contains `link_contains` and whose service is `service` (both
null: all, including calls about no order such as `balance`). Delivery scenarios change orders, new and
existing: `instant` (everything delivered at once), `partial` (delivery stops at `value` share, default 0.5,
status Partial), `link_fault` (delivery stops at `value` share, default at once, status Canceled with the
undelivered remains and a `reason` text beside the status, as providers do for private or deleted links;
`fault` picks private, deleted, renamed or invalid, and `invalid` also refuses new orders with `Bad link`),
`drop` (`value` share, default 0.1, of a completed order's units disappears; a refill puts them back). Call
scenarios change answers, for `seconds` of simulated time when given: `outage` (HTTP 503, nothing done),
`slow` (does the work, then answers after `value` seconds, default 2: an `add` is taken even if the client
gave up), `garbled` (`status` answers broken JSON), `lost_answer` (`add` or `refill` takes the order or
refill, then answers HTTP 502). Rules stack; `normal` clears the rules of its scope (none: all) and lets
orders still under way deliver in full. docs/api.md lists the endpoints.
"""

from providers.simulator.app import create_simulator_app, main
from providers.simulator.model import SimClock

__all__ = ["SimClock", "create_simulator_app", "main"]
