"""Process settings, read from environment variables (pydantic-settings).

Unset `DATABASE_URL` / `TEMPORAL_ADDRESS` mean "the embedded default": `backoffice dev` starts an embedded
PostgreSQL and a Temporal dev server under `.data/` and hands their addresses to its children.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    database_url: str | None = Field(default=None, description="postgresql:// URL; unset = embedded")
    temporal_address: str | None = Field(default=None, description="host:port; unset = embedded dev server")
    temporal_namespace: str = "default"
    temporal_task_queue: str = "orders"
    currency: str = "USD"  # what API v2 answers name the money in
    # A remote Temporal (self-hosted with mTLS, or Temporal Cloud with mTLS or an API key).
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_tls_ca: Path | None = None
    temporal_api_key: str | None = None

    # How long an order action (cancel, refill, refund, pause, ...) waits for the order's answer; past it the
    # caller gets 504 `action_pending`: the action may still take effect.
    action_timeout_seconds: float = Field(default=20.0, gt=0)

    # Failed authentications a client address may make at once, then how many a minute: past that they are
    # answered 429 with Retry-After (api/throttle.py; a valid key is always let in).
    auth_failures_burst: int = Field(default=20, ge=1)
    auth_failures_per_minute: float = Field(default=30.0, gt=0)

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    simulator_port: int = 8100
    data_dir: Path = Path(".data")
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"  # json: one object a line with order_id and workflow_id
    # The worker's Prometheus endpoint (GET /metrics); port 0 turns it off. The API serves /metrics itself.
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = 9464
    # Orders a worker keeps in memory between their steps. An order waiting in its refill window that falls
    # out of the cache costs nothing until it wakes, then one replay of its history: memory stays flat
    # however many orders wait.
    worker_cached_orders: int = 500
    # API processes `backoffice dev` starts on its one API socket (the kernel spreads the connections):
    # a request no longer waits behind another one's CPU work in a single event loop.
    api_processes: int = Field(default=1, ge=1, le=16)
    # Connections each API or worker process keeps to PostgreSQL (as many again may open under load).
    database_pool_size: int = Field(default=10, ge=1)
    # How much a worker takes on at once: workflow tasks and activities in flight. Lower them to leave CPU
    # to an API process on the same machine; raise them on a worker's own machine.
    worker_max_workflow_tasks: int = Field(default=100, ge=1)
    worker_max_activities: int = Field(default=100, ge=1)
    # The CPU priority a worker gives up at start, as nice(1) counts it (0-19). Delivery is not in a hurry
    # and checkout is: where a worker shares the machine with an API process (the dev stack), a positive
    # value lets a storefront's request run before a burst's next workflow task.
    worker_niceness: int = Field(default=0, ge=0, le=19)
    # Temporal SDK metrics (client and worker) are merged into each process's /metrics; off with false.
    temporal_sdk_metrics: bool = True
    # Worker Deployment Versioning (backoffice/versioning.py, docs/operations.md "Deploying a changed
    # workflow"): unset, the worker is unversioned (the dev stack). Set, it polls as version
    # <deployment>:<build id>, and orders started on a version stay on it (pinned) unless told otherwise.
    worker_deployment_name: str = ""
    worker_build_id: str = ""
    worker_versioning_behavior: Literal["pinned", "auto_upgrade"] = "pinned"

    # The console (/console): the key its session cookies are signed with (unset: a random one per API
    # process, so a restart signs everyone out; set the same one on every API process behind one address),
    # how long a sign-in lasts, and the Temporal Web UI each order links to (e.g. http://127.0.0.1:8233).
    console_secret: str | None = Field(default=None, min_length=32)
    console_session_hours: float = Field(default=12.0, gt=0)
    temporal_ui_url: str | None = None

    def require_database_url(self) -> str:
        if not self.database_url:
            raise SystemExit("DATABASE_URL is not set: run `backoffice dev` (make run) or set DATABASE_URL")
        return self.database_url

    def require_temporal_address(self) -> str:
        if not self.temporal_address:
            raise SystemExit("TEMPORAL_ADDRESS is not set: run `backoffice dev` (make run) or set it")
        return self.temporal_address


@lru_cache
def get_settings() -> Settings:
    return Settings()
