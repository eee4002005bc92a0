#!/bin/sh
# Entrypoint of the stand-in redis image: /data owned by `redis`, the command run as it.
set -eu
if [ "$(id -u)" = 0 ]; then
  chown redis:redis /data
  exec runuser -u redis -- "$0" "$@"
fi
exec "$@"
