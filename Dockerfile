# One image for the three services (ingest, aggregator, api) and the `init` job: each compose
# service picks its `python -m ...` command. Pinned: the base image by its exact Python
# release, every Python package by deploy/compose/constraints.txt. Without Docker,
# tests/e2e/test_container_entrypoints.py runs this file's build stage (its COPY steps and its
# install command, into a fresh virtual environment) and starts the entry points from it.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# -- build: the project and its pinned dependencies, into a virtual environment ---------------
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml ./
COPY deploy/compose/constraints.txt ./deploy/compose/constraints.txt
COPY shared ./shared
COPY services ./services
COPY deploy/__init__.py ./deploy/__init__.py
COPY deploy/compose/__init__.py deploy/compose/healthcheck.py ./deploy/compose/
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check \
        --constraint deploy/compose/constraints.txt .

# -- runtime: the environment alone (no sources, caches or build tools), not root -------------
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 BIND_HOST=0.0.0.0
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER 10001:10001
# ingest, api, aggregator (INGEST_PORT, API_PORT, AGGREGATOR_PORT)
EXPOSE 8081 8080 8082
# uvicorn drains in-flight requests (and the aggregator its batch) on SIGTERM, within 20 s:
# give containers a longer stop timeout (compose: stop_grace_period 30s).
STOPSIGNAL SIGTERM
# Whatever service the container runs: the compose files name it (`... healthcheck api`).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "deploy.compose.healthcheck"]
CMD ["python", "-m", "services.api"]
