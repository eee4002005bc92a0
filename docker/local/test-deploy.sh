#!/usr/bin/env bash
# `make test-deploy`: everything the deployment test needs on a fresh Debian bookworm
# machine (root, no registry), then the test; each step timed, image sizes at the end.
#   1. the container runtime (setup-runtime.sh: podman, docker-compose, API socket, ticker)
#   2. the Python base image from Debian packages (build-base.sh; kept once made)
#   3. the wheelhouse (fill-wheelhouse.sh; kept while the requirements do not change)
#   4. the images (build-images.sh)
#   5. pytest -m deploy tests/deploy
# The API socket and the healthcheck ticker are stopped at the end (KEEP_RUNTIME=1 keeps
# them; setup-runtime.sh starts them again at any time).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
HERE="$ROOT/docker/local"
PYTEST="${PYTEST:-$ROOT/.venv/bin/pytest}"
cd "$ROOT"

timings=()
step() {
  local name="$1" t0=$SECONDS rc=0
  shift
  echo "== test-deploy: $name" >&2
  "$@" || rc=$?
  timings+=("$(printf '%-28s %4d s' "$name" "$((SECONDS - t0))")$([ "$rc" = 0 ] || echo " (exit $rc)")")
  return "$rc"
}

start=$SECONDS
if [ "${KEEP_RUNTIME:-0}" != 1 ]; then
  trap '"$HERE/setup-runtime.sh" stop' EXIT
fi
step "runtime" "$HERE/setup-runtime.sh"
export DOCKER_HOST=unix:///run/podman/podman.sock
step "base image" "$HERE/build-base.sh"
step "wheelhouse" "$HERE/fill-wheelhouse.sh"
step "images" "$HERE/build-images.sh"
status=0
step "pytest -m deploy" "$PYTEST" -q -p no:cacheprovider -m deploy tests/deploy ${PYTEST_ARGS:-} \
  || status=$?
{
  echo "== test-deploy timings"
  printf '  %s\n' "${timings[@]}"
  printf '  %-28s %4d s\n' "total" "$((SECONDS - start))"
  echo "== images"
  podman images --format '  {{.Repository}}:{{.Tag}} {{.Size}}' \
    | grep -E 'debian-python|hecktor-' || true
} >&2
exit "$status"
