# syntax=docker/dockerfile:1
# One image, two roles: `api` (FastAPI + pages) and `worker` (Celery judge).
# Build:  docker build -t hecktor-eval .
# Run:    docker compose up -d   (see docker-compose.yml and README "Deploying")
# The grand-challenge evaluation image (scorer only, `hecktor-eval gc-evaluate`):
#         docker build --target gc-evaluation -t hecktor-eval-gc .
# The build itself needs no network and no registry when:
#   - the Python packages are in docker/wheelhouse/ (git-ignored, filled on the host by
#     docker/local/fill-wheelhouse.sh); every install is `pip --no-index` from there;
#   - PYTHON_IMAGE names a local base, e.g. the one docker/local/build-base.sh makes from
#     Debian packages: --build-arg PYTHON_IMAGE=localhost/debian-python:3.11
# (podman: `podman build --format docker --network=none ...`; `--format docker` keeps
# the HEALTHCHECK.) See README "Deploying with Docker Compose".

ARG PYTHON_VERSION=3.11
ARG PYTHON_IMAGE=python:${PYTHON_VERSION}-slim

# --- gc-build: wheels of the scorer alone (no service dependencies) -------------------
FROM ${PYTHON_IMAGE} AS gc-build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheelhouse
WORKDIR /src
COPY docker/wheelhouse /wheelhouse
COPY pyproject.toml README.md docker/gc-evaluation-requirements.txt ./
COPY evaluator ./evaluator
# The scorer's wheels taken from the wheelhouse, the project's built from the source
# (its build backend, setuptools, also from the wheelhouse).
RUN ls /wheelhouse/*.whl >/dev/null 2>&1 \
        || { echo "docker/wheelhouse/ has no wheels: run docker/local/fill-wheelhouse.sh on the host first" >&2; exit 1; } \
    && python -m pip wheel --no-index --find-links=/wheelhouse --wheel-dir /wheels \
        -r gc-evaluation-requirements.txt \
    && python -m pip wheel --no-index --find-links=/wheelhouse --no-deps --wheel-dir /project .

# --- gc-evaluation: the grand-challenge evaluation container --------------------------
# Reads /input (predictions.json, the jobs' outputs) and the ground truth at
# /opt/ml/input/data/ground_truth, writes /output/metrics.json; writes nothing else
# outside /tmp. Settings: HECKTOR_TASK, HECKTOR_PROTOCOL, HECKTOR_PER_CASE,
# HECKTOR_CASE_PATTERN, HECKTOR_WORKERS (see `hecktor-eval gc-evaluate --help`).
FROM ${PYTHON_IMAGE} AS gc-evaluation
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    XDG_CONFIG_HOME=/tmp/.config \
    MPLCONFIGDIR=/tmp/matplotlib \
    MPLBACKEND=Agg
COPY --from=gc-build /wheels /wheels
COPY --from=gc-build /project /project
COPY docker/gc-evaluation-requirements.txt /tmp/requirements.txt
# Installs only the wheels built above, offline: the versions are those of the build;
# the project wheel without its dependencies (the service's are not needed here).
# hadolint ignore=DL3013
RUN python -m pip install --no-index --find-links=/wheels -r /tmp/requirements.txt \
    && python -m pip install --no-index --no-deps /project/*.whl \
    && rm -rf /wheels /project /tmp/requirements.txt \
    && groupadd --system --gid 10001 evaluator \
    && useradd --system --uid 10001 --gid evaluator --home-dir /tmp --no-create-home \
        --shell /usr/sbin/nologin evaluator \
    && mkdir -p /input /output /opt/ml/input/data/ground_truth \
    && chown evaluator:evaluator /output
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["hecktor-eval", "gc-evaluate"]

# --- build stage: wheels for the project and its dependencies ------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheelhouse
WORKDIR /src
COPY docker/wheelhouse /wheelhouse
COPY pyproject.toml README.md ./
COPY evaluator ./evaluator
COPY app ./app
RUN ls /wheelhouse/*.whl >/dev/null 2>&1 \
        || { echo "docker/wheelhouse/ has no wheels: run docker/local/fill-wheelhouse.sh on the host first" >&2; exit 1; } \
    && python -m pip wheel --no-index --find-links=/wheelhouse --wheel-dir /wheels ".[worker,postgres]"

# --- runtime stage: slim, non-root, no compilers --------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
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
