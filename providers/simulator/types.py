"""What `add` must carry for each service type, checked as a provider checks it (api-v2.md, "Service types
and what `add` carries for each"): the simulator's own reading of the protocol, not the back office's rules,
so a test sees what was really forwarded.

A type counted by lines takes its quantity from them, a package is its service's size; both ignore any
`quantity` sent. A missing or malformed parameter is `Incorrect request`.
"""

from __future__ import annotations

import re
from typing import Any

from providers import apiv2
from providers.apiv2 import ProtocolError, integer, scalar

# type -> (the parameters it needs, where its quantity comes from: "quantity", a list parameter, or None
# for a package). Lists are one item a line.
NEEDS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "Default": ((), "quantity"),
    "Package": ((), None),
    "Custom Comments": (("comments",), "comments"),
    "Custom Comments Package": (("comments",), "comments"),
    "Mentions": (("usernames",), "quantity"),
    "Mentions with Hashtags": (("usernames", "hashtags"), "quantity"),
    "Mentions Custom List": (("usernames",), "usernames"),
    "Mentions Hashtag": (("hashtag",), "quantity"),
    "Mentions User Followers": (("username",), "quantity"),
    "Mentions Media Likers": (("media",), "quantity"),
    "Comment Likes": (("username",), "quantity"),
    "Comment Replies": (("username", "comments"), "comments"),
    "Poll": (("answer_number",), "quantity"),
    "SEO": (("keywords",), "quantity"),
}
TYPES = frozenset(NEEDS)
LISTS = frozenset({"comments", "usernames", "hashtags", "keywords"})
_LINE = re.compile(r"\r?\n")


def typed_add(kind: str, p: dict[str, Any], package_size: int) -> tuple[int | None, dict[str, Any]]:
    """(the quantity, or None when the call must say it; the type's parameters as received, lists split
    into their lines) of an `add` for a service of `kind`."""
    needs, counted_by = NEEDS.get(kind, ((), "quantity"))
    found: dict[str, Any] = {}
    for name in needs:
        text = scalar(p.get(name))
        if not text:
            raise ProtocolError(apiv2.INCORRECT_REQUEST)
        if name in LISTS:
            found[name] = [line.strip() for line in _LINE.split(text) if line.strip()]
        elif name == "answer_number":
            if integer(text) is None:
                raise ProtocolError(apiv2.INCORRECT_REQUEST)
            found[name] = text
        elif len(text.split()) != 1:  # a username, a hashtag, a media link: one word
            raise ProtocolError(apiv2.INCORRECT_REQUEST)
        else:
            found[name] = text
    if counted_by == "quantity":
        return None, found
    return (package_size if counted_by is None else len(found[counted_by])), found
