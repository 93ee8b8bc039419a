"""Request-scoped dependencies: a database session and the Temporal client, both owned by the app.

All are `async def`: FastAPI runs a plain `def` dependency in a thread of its pool, a hop that costs each
request more than the dependency itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from api.starts import WorkflowStarts
from backoffice.settings import Settings


async def session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as s:
        yield s


async def temporal(request: Request) -> Client:
    client: Client = request.app.state.temporal
    return client


async def starts(request: Request) -> WorkflowStarts:
    value: WorkflowStarts = request.app.state.starts
    return value


async def settings(request: Request) -> Settings:
    value: Settings = request.app.state.settings
    return value


Session = Annotated[AsyncSession, Depends(session)]
Temporal = Annotated[Client, Depends(temporal)]
AppSettings = Annotated[Settings, Depends(settings)]
Starts = Annotated[WorkflowStarts, Depends(starts)]
