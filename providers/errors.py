"""What a provider's error text means for us: retry later, the link is at fault, or this route refuses; and
the exceptions the client raises for each.

Providers answer errors as free text in HTTP 200 bodies (`{"error": "..."}`), in their own words. The workflow
needs only four outcomes, so texts are classified by rules here, link faults first ("Account is private,
try again later" is about the link), then temporary conditions, and anything else is permanent for the route.
"""

from __future__ import annotations

import re

# The link is unusable: private, deleted, renamed, invalid. Delivery to it cannot go on at any provider.
_LINK_FAULT = re.compile(
    r"private"
    r"|\b(bad|invalid|incorrect|wrong|broken)\s+(link|url|username|user\s*name)"
    r"|\b(link|url)\s+(is\s+)?(invalid|incorrect|wrong|not\s+valid|broken|unavailable)"
    r"|\b(account|profile|user|username|page|post|video|channel|photo|media|reel|link)\b[^.;]*?"
    r"\b(deleted|removed|renamed|changed|not\s+found|does\s*n[o']?t\s+exist|no\s+longer\s+exists|banned|closed)"
    r"|\b(deleted|removed|renamed|closed)\s+(account|profile|user|page|post|video|channel|link)",
    re.IGNORECASE,
)

# Conditions that pass: overload, maintenance, our balance there, an order still running on the link.
_TEMPORARY = re.compile(
    r"too\s+many|rate\s*limit|try\s+(again|later)|\blater\b|temporar|maintenance|time[d\s-]*out"
    r"|overload|busy|server\s+error|internal\s+error|service\s+unavailable|unavailable\s+now"
    r"|not\s+enough\s+funds|insufficient|low\s+balance|active\s+order\s+with\s+this\s+link|please\s+wait",
    re.IGNORECASE,
)

LINK_FAULT = "link_fault"
TEMPORARY = "temporary"
PERMANENT = "permanent"


def classify_error(text: str) -> str:
    """`link_fault`, `temporary` or `permanent` for a provider's error text."""
    if _LINK_FAULT.search(text):
        return LINK_FAULT
    if _TEMPORARY.search(text):
        return TEMPORARY
    return PERMANENT


def link_fault_text(*texts: str | None) -> str | None:
    """The first of `texts` that speaks of a link fault (a status's reason, the raw status), else None."""
    for text in texts:
        if text and _LINK_FAULT.search(text):
            return text
    return None


class ProviderError(Exception):
    """Base of everything the client raises; `message` is the provider's text or our description."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ProviderRejected(ProviderError):
    """The provider understood the request and refused it for good on this route (`Incorrect service ID`)."""


class ProviderLinkFault(ProviderRejected):
    """The provider refused because of the link: private, deleted, renamed, invalid (`Bad link`)."""


class ProviderUnavailable(ProviderError):
    """No usable answer, and retrying is safe: the request was not processed or changes nothing."""


class ProviderAmbiguous(ProviderError):
    """An `add`/`refill` may have reached the provider but no usable answer came back; re-sending could
    order twice."""


def error_for(text: str) -> ProviderError:
    """The exception a provider's error text stands for."""
    kind = classify_error(text)
    if kind == LINK_FAULT:
        return ProviderLinkFault(text)
    if kind == TEMPORARY:
        return ProviderUnavailable(text)
    return ProviderRejected(text)
