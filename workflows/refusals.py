"""Refusals of the messages that steer an order's handling rather than its terms: every message says who
sends it and why; ops hold and release orders, send on one that needs attention, reconcile a run; a support
refund carries its idempotency key. The panel's own policy (cancel, refill, link faults, refunds) is in
workflows/policy.py."""

from __future__ import annotations

from workflows.models import Phase
from workflows.policy import HOLDABLE, Refusal
from workflows.text import text_problem

MISSING_REASON = ("missing_reason", "say who sends this and why")


def words_refusal(actor: str, reason: str | None = None, *more: str) -> Refusal:
    """Every message says who sends it (and, where asked, why), in text the back office can keep."""
    if not actor.strip() or (reason is not None and not reason.strip()):
        return MISSING_REASON
    for words in (actor, reason or "", *more):
        problem = text_problem(words)
        if problem is not None:
            return ("bad_text", f"the text cannot be accepted: {problem}")
    return None


def pause_refusal(*, paused: bool, stopping: bool, phase: Phase) -> Refusal:
    if paused or stopping or phase not in HOLDABLE:
        return ("cannot_pause", "only an order waiting or delivering can be paused")
    return None


def resume_refusal(*, paused: bool) -> Refusal:
    return None if paused else ("not_paused", "the order is not paused")


def retry_refusal(*, needs_attention: bool) -> Refusal:
    return None if needs_attention else ("not_needing_attention", "the order does not need attention")


def reconcile_refusal(*, awaiting_run: int | None, run_no: int, answered: bool) -> Refusal:
    if awaiting_run != run_no or answered:
        return ("not_awaiting", f"run {run_no} is not awaiting reconciliation")
    return None


def refund_key_refusal(key: str) -> Refusal:
    if not key.strip() or text_problem(key) is not None:
        return ("bad_refund", "a refund needs an idempotency key")
    return None
