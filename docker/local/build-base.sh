#!/usr/bin/env bash
# A Python 3.11 base image made from Debian packages, without a registry:
# mmdebstrap (minbase bookworm + python3, venv, pip, ca-certificates) from the mirror
# this machine's own apt sources name, imported into podman as
#   localhost/debian-python:3.11       (BASE_IMAGE to change it)
# Kept when it already exists (FORCE=1 rebuilds): the cache between runs on one machine.
# Debian's EXTERNALLY-MANAGED marker is removed, so pip installs into the system Python
# as in the official python image. Nothing of this machine's configuration (certificates,
# proxy, apt credentials) is copied: only Debian's packages.
set -euo pipefail

BASE_IMAGE="${BASE_IMAGE:-localhost/debian-python:3.11}"
SUITE="${SUITE:-bookworm}"
SOURCES="${APT_SOURCES:-/etc/apt/sources.list.d/debian.sources}"
ENGINE="${ENGINE:-podman}"

log() { printf 'build-base: %s\n' "$*" >&2; }

if [ "${FORCE:-0}" != 1 ] && "$ENGINE" image exists "$BASE_IMAGE" 2>/dev/null; then
  log "$BASE_IMAGE exists (FORCE=1 to rebuild)"
  exit 0
fi

# One-line "deb URI SUITE COMPONENTS" entries from the machine's deb822 sources.
mirrors=()
while IFS= read -r line; do
  mirrors+=("$line")
done < <(awk '
  function flush() {
    if (types ~ /(^| )deb( |$)/ && uris != "" && suites != "")
      for (i = 1; i <= split(suites, s, " "); i++)
        for (j = 1; j <= split(uris, u, " "); j++)
          print "deb " u[j] " " s[i] " " comps
    types = uris = suites = comps = ""
  }
  /^[ \t]*#/ { next }
  /^[ \t]*$/ { flush(); next }
  {
    key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^ +/, "")
    if (key == "types") types = $0
    else if (key == "uris") uris = $0
    else if (key == "suites") suites = $0
    else if (key == "components") comps = $0
  }
  END { flush() }
' "$SOURCES")
if [ "${#mirrors[@]}" -eq 0 ]; then
  log "$SOURCES: no 'Types: deb' entry with URIs and Suites found; set APT_SOURCES to a deb822 .sources file"
  exit 1
fi
log "mirrors: ${mirrors[*]}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mmdebstrap --variant=minbase --quiet \
  --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
  "$SUITE" "$work/base.tar" "${mirrors[@]}"
"$ENGINE" import --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' \
  "$work/base.tar" "$BASE_IMAGE" >/dev/null
log "imported $BASE_IMAGE ($("$ENGINE" image inspect --format '{{.Size}}' "$BASE_IMAGE") bytes)"
