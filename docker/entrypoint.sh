#!/bin/sh
# Entrypoint of the hecktor-eval image.
#   api          the HTTP service (API, pages); judging is dispatched to Celery workers
#   worker       a Celery judging worker (scale with `docker compose up --scale worker=N`)
#   migrate      create/upgrade the database schema, then exit (run once before `api`)
#   healthcheck  exit 0 when this container's role is healthy
#   anything else is run as a command (e.g. `hecktor-eval admin team create --name X`)
set -eu

role="${1:-api}"
case "$role" in
  api)
    shift || true
    exec hecktor-eval serve --host 0.0.0.0 --port "${HECKTOR_PORT:-8000}" "$@"
    ;;
  worker)
    shift || true
    exec hecktor-eval worker --concurrency "${HECKTOR_WORKER_CONCURRENCY:-1}" "$@"
    ;;
  migrate)
    exec hecktor-eval admin migrate
    ;;
  healthcheck)
    if [ "${HECKTOR_ROLE:-api}" = "worker" ]; then
      exec celery -A app.jobs.celery_app inspect ping --timeout 5 -d "celery@$(hostname)"
    fi
    exec python -c "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:${HECKTOR_PORT:-8000}/healthz', timeout=4).status == 200 else 1)"
    ;;
  *)
    exec "$@"
    ;;
esac
