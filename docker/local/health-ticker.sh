#!/usr/bin/env bash
# Runs the healthchecks of running podman containers, which podman 4.3 schedules only
# through systemd timers (without systemd, every container stays "starting" and
# `depends_on: condition: service_healthy` never holds). Each container's check runs
# every HEALTH_TICK seconds while it is starting, then at its own interval; never two
# at once for one container. Started by docker/local/setup-runtime.sh.
set -uo pipefail

TICK="${HEALTH_TICK:-2}"
declare -A next_run=()
declare -A interval_of=()
LOCKS=/run/podman/health-locks
mkdir -p "$LOCKS"

while true; do
  now=$(date +%s)
  # id and status, e.g. "Up 5 seconds (starting)": the health state is in parentheses
  # at the end (none when the container has no healthcheck)
  while read -r id status; do
    [ -n "$id" ] || continue
    case "$status" in
      *"(starting)") state=starting ;;
      *"(healthy)" | *"(unhealthy)") state=checked ;;
      *) continue ;;
    esac
    if [ -z "${interval_of[$id]:-}" ]; then
      ns=$(podman inspect --format '{{.Config.Healthcheck.Interval}}' "$id" 2>/dev/null || echo 0)
      case "$ns" in '' | *[!0-9]*) ns=30000000000 ;; esac
      s=$((ns / 1000000000))
      [ "$s" -ge 1 ] || s=30
      interval_of[$id]=$s
    fi
    if [ "$state" = "starting" ]; then
      wait_s=$TICK
    else
      wait_s=${interval_of[$id]}
    fi
    due=${next_run[$id]:-0}
    if [ "$now" -ge "$due" ]; then
      next_run[$id]=$((now + wait_s))
      (flock -n 9 || exit 0; timeout 60 podman healthcheck run "$id" >/dev/null 2>&1) \
        9>"$LOCKS/$id" &
    fi
  done < <(podman ps --filter status=running --format '{{.ID}} {{.Status}}' 2>/dev/null)
  # forget containers that are gone
  for id in "${!next_run[@]}"; do
    if ! podman container exists "$id" 2>/dev/null; then
      unset "next_run[$id]" "interval_of[$id]"
      rm -f "$LOCKS/$id"
    fi
  done
  sleep "$TICK"
done
