# syntax=docker/dockerfile:1
# One image, two roles: `api` (FastAPI + pages) and `worker` (Celery judge).
# Build:  docker build -t hecktor-eval .
# Run:    docker compose up -d   (see docker-compose.yml and README "Deploying")

ARG PYTHON_VERSION=3.11

# --- build stage: wheels for the project and its dependencies ------------------------
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY evaluator ./evaluator
COPY app ./app
RUN python -m pip wheel --wheel-dir /wheels ".[worker,postgres]"

# --- runtime stage: slim, non-root, no compilers --------------------------------------
FROM python:${PYTHON_VERSION}-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HECKTOR_DATA_DIR=/data \
    HECKTOR_MODE=production
RUN groupadd --system --gid 10001 hecktor \
    && useradd --system --uid 10001 --gid hecktor --home-dir /data --shell /usr/sbin/nologin hecktor \
    && mkdir -p /data /ground-truth \
    && chown hecktor:hecktor /data
COPY --from=build /wheels /wheels
# Installs only the wheels built above, offline: the versions are those of the build.
# hadolint ignore=DL3013
RUN python -m pip install --no-index --find-links=/wheels "hecktor-eval[worker,postgres]" \
    && rm -rf /wheels
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/hecktor-entrypoint
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["hecktor-entrypoint", "healthcheck"]
ENTRYPOINT ["hecktor-entrypoint"]
CMD ["api"]
