"""The declarative base every table shares (store/models.py, store/webhook_models.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


def created() -> Mapped[datetime]:
    """A row's creation time, set by the database."""
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)
