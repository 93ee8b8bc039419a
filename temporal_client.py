"""Connecting to Temporal: the embedded dev server, a self-hosted cluster (mTLS) or Temporal Cloud."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.service import TLSConfig

from settings import Settings


async def connect(settings: Settings) -> Client:
    tls: bool | TLSConfig = False
    if settings.temporal_tls_cert or settings.temporal_tls_ca:
        tls = TLSConfig(
            client_cert=settings.temporal_tls_cert.read_bytes() if settings.temporal_tls_cert else None,
            client_private_key=settings.temporal_tls_key.read_bytes() if settings.temporal_tls_key else None,
            server_root_ca_cert=settings.temporal_tls_ca.read_bytes() if settings.temporal_tls_ca else None,
        )
    elif settings.temporal_api_key:
        tls = True  # Temporal Cloud's API keys only travel over TLS
    return await Client.connect(
        settings.require_temporal_address(),
        namespace=settings.temporal_namespace,
        tls=tls,
        api_key=settings.temporal_api_key,
    )
