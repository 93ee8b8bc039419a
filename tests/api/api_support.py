"""The API test client: an in-process HTTP client with one key per role."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from support import LINK, SERVICE, ScriptedProvider


@dataclass
class Api:
    http: httpx.AsyncClient
    keys: dict[str, str]
    customer_id: int
    other_customer_id: int
    sessions: async_sessionmaker[AsyncSession]
    provider: ScriptedProvider
    providers: dict[str, int] = field(default_factory=dict)

    def as_(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    async def order(self, role: str = "storefront", key: str = "k1", **body: Any) -> httpx.Response:
        payload = {
            "customer_id": self.customer_id,
            "service_id": SERVICE,
            "link": LINK,
            "quantity": 100,
        } | body
        payload = {k: v for k, v in payload.items() if v is not None}
        return await self.http.post(
            "/v1/orders", json=payload, headers={**self.as_(role), "Idempotency-Key": key}
        )
