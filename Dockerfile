# syntax=docker/dockerfile:1
#
# The back-office image: one image for every role (`backoffice api`, `worker`, `migrate`, `simulator`,
# `catalog load`); docker-compose.yml picks the role with `command:`. Default: the HTTP API on :8000.
#
# Unverified on the development machine (it has no Docker engine); see docker-compose.yml.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: install the project (runtime dependencies only, no `dev` extra) into a virtualenv -----------
# No `temporal` CLI binary (156 MB) and no embedded PostgreSQL: both are in the `dev` extra, used only by
# `backoffice dev`, which this image does not run.
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# The exact versions and hashes `make lock` wrote (runtime.lock: pyproject.toml's dependencies, no extra).
# Its own layer, so a code change does not reinstall the dependencies.
COPY requirements/runtime.lock requirements/runtime.lock
RUN pip install --require-hashes -r requirements/runtime.lock

# Only what the package is built from (the packages in [tool.setuptools] of pyproject.toml, and the
# top-level modules): keeps .venv/, .data/ (the embedded stack's state), .git/ and tests out of the build.
# A new package in pyproject.toml needs a COPY line here; forgetting it fails `pip install` loudly.
# README* is optional (the wildcard may match nothing); pyproject.toml names it as the long description.
COPY pyproject.toml README* ./
COPY worker.py ./
COPY backoffice/ backoffice/
COPY workflows/ workflows/
COPY activities/ activities/
COPY api/ api/
COPY store/ store/
COPY providers/ providers/
COPY migrations/ migrations/

# A regular (non-editable) install, the dependencies already in place: the venv holds everything, /src is
# not needed at run time. `backoffice --help` is a smoke test: the console script exists and the CLI
# imports from the venv.
RUN pip install --no-deps . \
    && backoffice --help >/dev/null

# --- runtime ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="smm-backoffice" \
      org.opencontainers.image.description="Order back office for an SMM panel (Temporal workflows + FastAPI)"

RUN groupadd --system --gid 10001 backoffice \
    && useradd --system --uid 10001 --gid backoffice --home-dir /app --shell /usr/sbin/nologin backoffice \
    && mkdir -p /app \
    && chown backoffice:backoffice /app

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    API_HOST=0.0.0.0 \
    API_PORT=8000

WORKDIR /app
USER backoffice:backoffice

EXPOSE 8000

# Exec form, no shell in between: the process gets SIGTERM itself (as PID 1, or under compose's
# `init: true`), so uvicorn and the Temporal worker can shut down gracefully.
CMD ["backoffice", "api"]
