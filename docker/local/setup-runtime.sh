#!/usr/bin/env bash
# The container runtime of a Debian bookworm machine without systemd and without a
# registry, set up idempotently from Debian's packages (run as root):
#   podman 4.3 (runc, cgroupfs, netavark, overlay storage), mmdebstrap, docker-compose 1.29;
#   podman's Docker-compatible API socket at /run/podman/podman.sock;
#   the healthcheck ticker (docker/local/health-ticker.sh: podman 4.3 schedules
#   healthchecks with systemd timers only).
#
#   docker/local/setup-runtime.sh          install/configure, start socket and ticker
#   docker/local/setup-runtime.sh stop     stop the socket service and the ticker
#   docker/local/setup-runtime.sh status   exit 0 when both are running
#
# Afterwards: export DOCKER_HOST=unix:///run/podman/podman.sock (docker-compose, docker).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
RUN_DIR=/run/podman
SOCKET="$RUN_DIR/podman.sock"
SERVICE_PID="$RUN_DIR/hecktor-api-service.pid"
TICKER_PID="$RUN_DIR/hecktor-health-ticker.pid"
LOG_DIR=/var/log/hecktor-runtime
PACKAGES=(podman runc netavark aardvark-dns iptables catatonit uidmap mmdebstrap docker-compose curl)

log() { printf 'setup-runtime: %s\n' "$*" >&2; }

need_root() {
  if [ "$(id -u)" != 0 ]; then
    log "run as root (it installs Debian packages and writes /etc/containers)"
    exit 1
  fi
}

install_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# write_file PATH CONTENT: rewrite only when different (keeps the step idempotent)
write_file() {
  local path="$1" content="$2"
  mkdir -p "$(dirname "$path")"
  if [ ! -f "$path" ] || [ "$(cat "$path")" != "$content" ]; then
    log "writing $path"
    printf '%s\n' "$content" >"$path"
  fi
}

configure() {
  # runc and cgroupfs: crun refuses this machine's hybrid cgroups and there is no
  # systemd; ulimits under the hard limit the machine grants; events to a file.
  write_file /etc/containers/containers.conf '[containers]
default_ulimits = ["nofile=16384:16384", "nproc=16384:16384"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
[network]
network_backend = "netavark"'
  write_file /etc/containers/storage.conf '[storage]
driver = "overlay"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
[storage.options.overlay]
mountopt = "nodev"'
  # --userns=auto (participant algorithm containers) draws from this range
  for f in /etc/subuid /etc/subgid; do
    touch "$f"
    grep -q '^containers:' "$f" || echo "containers:2147483647:2147483648" >>"$f"
  done
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

socket_answers() { curl -fsS --max-time 5 --unix-socket "$SOCKET" http://d/_ping >/dev/null 2>&1; }

start_service() {
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  if alive "$SERVICE_PID" && socket_answers; then
    return
  fi
  log "starting podman system service on $SOCKET"
  rm -f "$SOCKET"
  # from / : conmon leaves an "oom" file in its working folder when a container runs out
  # of memory
  pushd / >/dev/null
  setsid podman system service --time=0 "unix://$SOCKET" >>"$LOG_DIR/podman-service.log" 2>&1 </dev/null &
  echo $! >"$SERVICE_PID"
  popd >/dev/null
  for _ in $(seq 1 50); do
    socket_answers && return
    sleep 0.2
  done
  log "podman system service did not answer on $SOCKET (see $LOG_DIR/podman-service.log)"
  exit 1
}

start_ticker() {
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  alive "$TICKER_PID" && return
  log "starting the healthcheck ticker"
  setsid "$HERE/health-ticker.sh" >>"$LOG_DIR/health-ticker.log" 2>&1 </dev/null &
  echo $! >"$TICKER_PID"
}

stop_one() {
  if alive "$1"; then
    kill "$(cat "$1")" 2>/dev/null || true
  fi
  rm -f "$1"
}

case "${1:-up}" in
  up)
    need_root
    install_packages
    configure
    start_service
    start_ticker
    log "ready: export DOCKER_HOST=unix://$SOCKET"
    ;;
  stop)
    stop_one "$TICKER_PID"
    stop_one "$SERVICE_PID"
    ;;
  status)
    alive "$SERVICE_PID" && socket_answers && alive "$TICKER_PID"
    ;;
  *)
    log "usage: $0 [up|stop|status]"
    exit 2
    ;;
esac
