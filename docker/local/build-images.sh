#!/usr/bin/env bash
# The project's images on the local base, with podman:
#   localhost/hecktor-eval:latest       the service (api, worker, migrate), --network=none
#   localhost/hecktor-eval-gc:latest    --target gc-evaluation, --network=none
#   localhost/hecktor-postgres:15       stand-in (Debian's postgresql-15; apt in the build)
#   localhost/hecktor-redis:7           stand-in (Debian's redis-server; apt in the build)
# The project images build offline from docker/wheelhouse/ (fill-wheelhouse.sh first).
# `--format docker` keeps the HEALTHCHECK (the OCI format has none).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BASE_IMAGE="${BASE_IMAGE:-localhost/debian-python:3.11}"
ENGINE="${ENGINE:-podman}"
cd "$ROOT"

build() {
  local t0=$SECONDS
  "$ENGINE" build --format docker --quiet "$@" >/dev/null
  printf 'build-images: %s in %d s\n' "${*: -2:1}" "$((SECONDS - t0))" >&2
}

build --network=none --build-arg "PYTHON_IMAGE=$BASE_IMAGE" --target gc-evaluation \
  -t localhost/hecktor-eval-gc:latest .
build --network=none --build-arg "PYTHON_IMAGE=$BASE_IMAGE" -t localhost/hecktor-eval:latest .
build --build-arg "BASE_IMAGE=$BASE_IMAGE" -f docker/local/postgres.Containerfile \
  -t localhost/hecktor-postgres:15 docker/local
build --build-arg "BASE_IMAGE=$BASE_IMAGE" -f docker/local/redis.Containerfile \
  -t localhost/hecktor-redis:7 docker/local
