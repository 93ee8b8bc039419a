"""Search attributes ops filter orders by in the Temporal Web UI. No personal data goes in them."""

from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.common import SearchAttributeKey

ORDER_STATUS = SearchAttributeKey.for_keyword("OrderStatus")
ORDER_PHASE = SearchAttributeKey.for_keyword("OrderPhase")
CUSTOMER_ID = SearchAttributeKey.for_int("CustomerId")
SERVICE_ID = SearchAttributeKey.for_int("ServiceId")
PROVIDER_ID = SearchAttributeKey.for_int("ProviderId")
REFILL_DEADLINE = SearchAttributeKey.for_datetime("RefillDeadline")

ALL = (ORDER_STATUS, ORDER_PHASE, CUSTOMER_ID, SERVICE_ID, PROVIDER_ID, REFILL_DEADLINE)


def type_name(key: SearchAttributeKey[Any]) -> str:
    """The type as the Temporal CLI spells it ("Keyword", "Int", "Datetime")."""
    name = IndexedValueType.Name(IndexedValueType.ValueType(key.indexed_value_type))
    return name.removeprefix("INDEXED_VALUE_TYPE_").title()
