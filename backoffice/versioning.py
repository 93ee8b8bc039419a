"""Worker Deployment Versioning: a changed workflow deployed while orders run.

Each worker of a deployment polls as one version (`WORKER_DEPLOYMENT_NAME` and `WORKER_BUILD_ID`). Temporal
sends new orders to the deployment's *current* version; an order is pinned to the version it started on
(`WORKER_VERSIONING_BEHAVIOR=pinned`, the default), so its history is only ever replayed by the code that
wrote it, and old workers stay up until their orders have ended (the version is *drained*). With
`auto_upgrade` an order moves to the current version at its next workflow task: the new code must then
replay the old histories (tests/workflows/test_replay.py), as without versioning.

The procedure is in docs/operations.md ("Deploying a changed workflow").
"""

from __future__ import annotations

from temporalio.api.workflowservice.v1 import SetWorkerDeploymentCurrentVersionRequest
from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.worker import WorkerDeploymentConfig

from backoffice.settings import Settings

BEHAVIORS = {"pinned": VersioningBehavior.PINNED, "auto_upgrade": VersioningBehavior.AUTO_UPGRADE}


def deployment_config(settings: Settings) -> WorkerDeploymentConfig | None:
    """The worker's version, or None for an unversioned worker (no deployment name set)."""
    if not settings.worker_deployment_name:
        if settings.worker_build_id:
            raise SystemExit("WORKER_BUILD_ID is set without WORKER_DEPLOYMENT_NAME: set both, or neither")
        return None
    if not settings.worker_build_id:
        raise SystemExit(
            "WORKER_DEPLOYMENT_NAME is set without WORKER_BUILD_ID: give each build of the worker an id "
            "(its image tag or git commit)"
        )
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(settings.worker_deployment_name, settings.worker_build_id),
        use_worker_versioning=True,
        default_versioning_behavior=BEHAVIORS[settings.worker_versioning_behavior],
    )


async def set_current_version(client: Client, deployment_name: str, build_id: str) -> None:
    """Send new orders to this version from now on (as `temporal worker deployment set-current-version`).
    Its workers must be polling already: Temporal refuses a version it has not seen."""
    await client.workflow_service.set_worker_deployment_current_version(
        SetWorkerDeploymentCurrentVersionRequest(
            namespace=client.namespace,
            deployment_name=deployment_name,
            build_id=build_id,
            identity="backoffice",
        )
    )
