"""The failure types the order workflow tells apart (`ApplicationError.type`), and how it refuses.

They live here so that `workflows/` depends on nothing else in the project: activities raise them, the
workflow and the API read them.
"""

from temporalio.exceptions import ApplicationError

REJECTED = "ProviderRejected"  # this route refuses (incorrect service, disabled, unknown order, ...)
NEEDS_RECONCILIATION = "NeedsReconciliation"  # the provider may hold the request: only ops can tell
LINK_FAULT = "LinkFault"  # the provider refuses the link (private, deleted, renamed, invalid)
# A side effect that no retry can make succeed: bad data, a broken constraint that is not a race, a bug.
# The activity raises it non-retryable; the order then waits in phase `needs_attention` for ops.
STEP_FAILED = "StepFailed"


def refused(code: str, text: str) -> ApplicationError:
    """A refusal the caller sees with its stable code (the update fails; the order goes on)."""
    return ApplicationError(text, type=code, non_retryable=True)
