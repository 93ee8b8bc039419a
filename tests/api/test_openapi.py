"""The OpenAPI description holds: schemathesis generates requests (valid and invalid) for every operation and
checks that the app never answers 5xx, answers only declared statuses and shapes, and enforces the declared
authentication. The app runs in-process (served by uvicorn in the test's event loop) on a real database."""

from __future__ import annotations

import asyncio
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from api.throttle import FailedAuthentications
from support import Api

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    ignored_auth,
]
EXAMPLES = 12  # per operation and generation mode: the whole run stays well under a minute


def _fuzz(openapi: dict[str, Any], base_url: str, headers: dict[str, str]) -> list[str]:
    schema = schemathesis.openapi.from_dict(openapi)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def check(case: schemathesis.Case) -> None:
                case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=30)

            try:
                check()
            except Unsatisfiable:  # no invalid input exists for an operation without parameters
                continue
            except Exception as exc:  # collect every operation's failure, then report them all
                failures.append(f"{operation.label} [{mode.value}]: {exc}"[:3000])
    return failures


async def test_the_api_keeps_its_openapi_promises(api: Api, served: str) -> None:
    app = api.http._transport.app  # type: ignore[attr-defined]
    # The fuzzer sends bad keys by the thousand on purpose and wants each one told 401: no throttling here
    # (tests/api/test_secrets.py tests it).
    app.state.failed_authentications = FailedAuthentications(burst=10**9, per_minute=1)
    openapi = app.openapi()
    failures = await asyncio.to_thread(_fuzz, openapi, served, api.as_("admin"))
    assert not failures, "\n\n".join(failures)


async def test_the_openapi_declares_security_and_errors(api: Api) -> None:
    openapi = (await api.http.get("/openapi.json")).json()
    assert set(openapi["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    for path, methods in openapi["paths"].items():
        for method, operation in methods.items():
            if path.startswith("/v1/") and path != "/v1/policy":
                assert operation.get("security"), (method, path)
                assert "401" in operation["responses"], (method, path)
                error = operation["responses"]["401"]["content"]["application/json"]["schema"]
                assert error == {"$ref": "#/components/schemas/ErrorOut"}, (method, path)
