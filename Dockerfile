# One image for the three services (ingest, aggregator, api) and the `init` job.
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 BIND_HOST=0.0.0.0 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY deploy/__init__.py ./deploy/__init__.py
RUN pip install --disable-pip-version-check . && useradd --uid 10001 --no-create-home app
USER app
# Each service: `python -m services.<name>`; it stops gracefully on SIGTERM.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "services.api"]
