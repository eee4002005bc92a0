#!/usr/bin/env bash
# Fills docker/wheelhouse/ (git-ignored, part of the build context) with wheels for
# every Python package the images install, so that the image build needs no network:
# the Dockerfile installs with `pip install --no-index --find-links=/wheelhouse`.
#
#   docker/local/fill-wheelhouse.sh            uses .venv/bin/python (PYTHON=... to change)
#
# Runs on the host with the host's own pip configuration (index, proxy, certificates stay
# on the host). The Python that fills it must be CPython 3.11 on x86_64/aarch64 Linux with
# glibc, like the images: sdists (pure Python) are built into wheels here, binary packages
# are taken as manylinux wheels. Versions are pinned to those installed in the project's
# virtualenv when there is one (`pip freeze` as constraints), so the images run the
# versions the tests ran; delete the folder (or its .stamp) to refill.
#
# The host's Python may differ from the image's in its patch version, and environment
# markers can depend on it (redis needs async-timeout below 3.11.3; Debian's is 3.11.2).
# So the set is then resolved inside the base image itself, offline (`pip install
# --dry-run --no-index`, --network=none), and what that reports missing is added, until
# it resolves: BASE_IMAGE (default localhost/debian-python:3.11) must exist for that
# check (docker/local/build-base.sh); SKIP_IMAGE_CHECK=1 skips it.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="${WHEELHOUSE:-$ROOT/docker/wheelhouse}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY=python3
BASE_IMAGE="${BASE_IMAGE:-localhost/debian-python:3.11}"
ENGINE="${ENGINE:-podman}"

log() { printf 'fill-wheelhouse: %s\n' "$*" >&2; }

abi="$("$PY" -c 'import sys, platform; print(f"{sys.implementation.name}{sys.version_info[0]}{sys.version_info[1]}-{platform.system()}-{platform.libc_ver()[0]}")')"
case "$abi" in
  cpython311-Linux-glibc) ;;
  *)
    log "$PY is $abi; the images run CPython 3.11 on Linux/glibc: set PYTHON to a python3.11"
    exit 1
    ;;
esac

mkdir -p "$OUT"
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
if "$PY" -m pip freeze --exclude-editable 2>/dev/null | grep -v -E '^(-e |hecktor-eval)' >"$constraints"; then :; fi
base_id=""
if [ "${SKIP_IMAGE_CHECK:-0}" != 1 ]; then
  base_id="$("$ENGINE" image inspect --format '{{.Id}}' "$BASE_IMAGE" 2>/dev/null)" || {
    log "$BASE_IMAGE not found: make it first (docker/local/build-base.sh) or set SKIP_IMAGE_CHECK=1"
    exit 1
  }
fi
stamp_of() {
  { cat "$ROOT/pyproject.toml" "$ROOT/docker/gc-evaluation-requirements.txt" "$constraints"
    echo "$base_id"; } | sha256sum | cut -d' ' -f1
}
stamp="$(stamp_of)"
if [ -f "$OUT/.stamp" ] && [ "$(cat "$OUT/.stamp")" = "$stamp" ]; then
  log "$OUT is up to date ($(find "$OUT" -name '*.whl' | wc -l) wheels)"
  exit 0
fi

log "filling $OUT with $PY"
find "$OUT" -name '*.whl' -delete
# the service's dependencies (which include the scorer's), the build backend the
# project's wheel is built with, and pip's own build helper
"$PY" -m pip wheel --quiet --wheel-dir "$OUT" -c "$constraints" \
  "$ROOT[worker,postgres]" -r "$ROOT/docker/gc-evaluation-requirements.txt" \
  "setuptools>=77" wheel
rm -f "$OUT"/hecktor_eval-*.whl  # the project itself is built inside the image

if [ -n "$base_id" ]; then
  # every requirement of the images, resolved by the image's own pip and Python
  reqs="$OUT/.requirements.txt"
  "$PY" - "$ROOT/pyproject.toml" >"$reqs" <<'PYEOF'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
reqs = list(project["dependencies"])
for extra in ("worker", "postgres"):
    reqs += [r for r in project["optional-dependencies"][extra] if not r.startswith("hecktor-eval")]
reqs += ["setuptools>=77", "wheel"]
print("\n".join(dict.fromkeys(reqs)))
PYEOF
  for round in 1 2 3 4 5 6; do
    if err="$("$ENGINE" run --rm --network=none -v "$OUT:/wheelhouse:ro" "$BASE_IMAGE" \
        python3 -m pip install --dry-run --quiet --no-index --find-links=/wheelhouse \
        --ignore-installed -r /wheelhouse/.requirements.txt 2>&1 >/dev/null)"; then
      log "resolved inside $BASE_IMAGE (round $round)"
      break
    fi
    missing="$(printf '%s\n' "$err" | sed -n 's/.*No matching distribution found for \([^;]*\).*/\1/p' | head -n1)"
    if [ -z "$missing" ] || [ "$round" = 6 ]; then
      log "the wheelhouse does not resolve inside $BASE_IMAGE:"
      printf '%s\n' "$err" >&2
      exit 1
    fi
    log "adding $missing (needed by the image's Python)"
    "$PY" -m pip wheel --quiet --wheel-dir "$OUT" -c "$constraints" "$missing"
  done
fi
echo "$stamp" >"$OUT/.stamp"
log "$(find "$OUT" -name '*.whl' | wc -l) wheels, $(du -sh "$OUT" | cut -f1)"
