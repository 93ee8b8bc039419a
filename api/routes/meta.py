"""The published policy and a health check."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from sqlalchemy import text

from api.deps import Session

router = APIRouter(tags=["meta"])
POLICY = Path(__file__).resolve().parent.parent / "policy.md"


@router.get("/v1/policy", response_class=PlainTextResponse)
async def policy() -> str:
    """The refund and cancellation policy the order workflows carry out, in Markdown."""
    return POLICY.read_text()


@router.get("/healthz")
async def health(session: Session) -> dict[str, str]:
    await session.execute(text("SELECT 1"))
    return {"status": "ok"}
