#!/usr/bin/env bash
# `make demo`: the lab end to end. Builds two containers, "primary" and "backup", from
# localhost/backup-lab:latest (scripts/lab/build-image.sh), starts MariaDB in them, loads a small
# sample Seafile dataset on the primary, runs playbooks/seafile_backup_server.yml, then prints the
# replication health (playbooks/seafile_replication_health.yml).
# Rerunning is idempotent: existing containers are reused, the second playbook run changes nothing.
#   scripts/lab/demo.sh            build (or reuse) the lab and run the demo
#   scripts/lab/demo.sh --destroy  remove the two containers
set -euo pipefail
. "$(dirname "$0")/../env.sh"
cd "$TOP"

IMAGE=localhost/backup-lab:latest
CONTAINERS=(primary backup)
INVENTORY=inventories/lab/hosts.yml

destroy() {
  for c in "${CONTAINERS[@]}"; do
    if podman container exists "$c"; then
      echo ">> removing container $c"
      podman rm -f -t 0 "$c" >/dev/null
    fi
  done
}

if [ "${1:-}" = "--destroy" ]; then
  destroy
  exit 0
elif [ -n "${1:-}" ]; then
  echo "usage: $0 [--destroy]" >&2
  exit 2
fi

podman image exists "$IMAGE" || bash scripts/lab/build-image.sh >/dev/null
for c in "${CONTAINERS[@]}"; do
  if ! podman container exists "$c"; then
    echo ">> creating container $c from $IMAGE"
    podman run -d --init --name "$c" --hostname "$c" "$IMAGE" sleep infinity >/dev/null
  elif [ "$(podman inspect -f '{{.State.Running}}' "$c")" != "true" ]; then
    echo ">> starting container $c"
    podman start "$c" >/dev/null
  fi
done

echo ">> lab: MariaDB in both containers, sample Seafile data on the primary"
ansible-playbook -i "$INVENTORY" playbooks/lab_seafile_prepare.yml
echo ">> the Seafile backup-server playbook"
ANSIBLE_SHOW_CUSTOM_STATS=true ansible-playbook -i "$INVENTORY" playbooks/seafile_backup_server.yml
echo ">> replication health"
ansible-playbook -i "$INVENTORY" playbooks/seafile_replication_health.yml
echo ">> demo done. Remove the lab with: make demo-clean"
