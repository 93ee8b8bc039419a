"""How the order's payloads are written for the Temporal Web UI: `None` (what most activities return) as the
JSON `null`, not the SDK's default `binary/null`, which the Web UI shows as an empty base64 blob.

Everything else is written as by the default converter. `binary/null` is still read, so histories written
before this converter (and payloads from clients that use the default one) decode as before.
"""

from __future__ import annotations

import dataclasses

from temporalio.converter import (
    BinaryNullPayloadConverter,
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
)


class ReadablePayloadConverter(CompositePayloadConverter):
    def __init__(self) -> None:
        defaults = DefaultPayloadConverter.default_encoding_payload_converters
        # The first converter that takes a value writes it: JSON (the last default) now takes None before
        # binary/null, which stays last only to read the older payloads.
        super().__init__(
            *(c for c in defaults if not isinstance(c, BinaryNullPayloadConverter)),
            *(c for c in defaults if isinstance(c, BinaryNullPayloadConverter)),
        )


DATA_CONVERTER = dataclasses.replace(DataConverter.default, payload_converter_class=ReadablePayloadConverter)
