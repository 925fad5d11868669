#!/usr/bin/env bash
# S3 stand-in for the btw scenario: moto_server (from the project's venv) on the host, bound to the
# podman bridge's gateway address so the container reaches it (the host's loopback is not
# reachable from a container, and the container has no pip/moto).
#   moto.sh start <state dir>   -> prints the endpoint URL, records pid and URL in <state dir>
#   moto.sh stop <state dir>    -> stops that server (by its recorded pid only)
set -euo pipefail
action=$1
state=$2
mkdir -p "$state"
case "$action" in
  start)
    if [ -s "$state/moto.pid" ] && kill -0 "$(cat "$state/moto.pid")" 2>/dev/null; then
      cat "$state/moto_endpoint"; exit 0
    fi
    here=$(cd "$(dirname "$0")/../.." && pwd)
    python="$here/.venv/bin/python"
    gateway=$(podman network inspect podman --format '{{range .Subnets}}{{.Gateway}}{{end}}')
    port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("'"$gateway"'", 0)); print(s.getsockname()[1])')
    nohup "$here/.venv/bin/moto_server" -H "$gateway" -p "$port" >"$state/moto.log" 2>&1 &
    echo $! >"$state/moto.pid"
    endpoint="http://$gateway:$port"
    for _ in $(seq 1 100); do
      if "$python" -c "import urllib.request; urllib.request.urlopen('$endpoint/moto-api/', timeout=1)" 2>/dev/null; then
        echo "$endpoint" >"$state/moto_endpoint"
        echo "$endpoint"
        exit 0
      fi
      sleep 0.1
    done
    echo "moto_server did not start: $(tail -5 "$state/moto.log")" >&2
    exit 1
    ;;
  stop)
    if [ -s "$state/moto.pid" ]; then
      kill "$(cat "$state/moto.pid")" 2>/dev/null || true
      rm -f "$state/moto.pid" "$state/moto_endpoint"
    fi
    ;;
  *) echo "usage: $0 start|stop <state dir>" >&2; exit 2 ;;
esac
