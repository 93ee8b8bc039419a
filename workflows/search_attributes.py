"""Search attributes ops filter orders by in the Temporal Web UI. No personal data goes in them."""

from temporalio.common import SearchAttributeKey

ORDER_STATUS = SearchAttributeKey.for_keyword("OrderStatus")
ORDER_PHASE = SearchAttributeKey.for_keyword("OrderPhase")
CUSTOMER_ID = SearchAttributeKey.for_int("CustomerId")
SERVICE_ID = SearchAttributeKey.for_int("ServiceId")
PROVIDER_ID = SearchAttributeKey.for_int("ProviderId")
REFILL_DEADLINE = SearchAttributeKey.for_datetime("RefillDeadline")

ALL = (ORDER_STATUS, ORDER_PHASE, CUSTOMER_ID, SERVICE_ID, PROVIDER_ID, REFILL_DEADLINE)
