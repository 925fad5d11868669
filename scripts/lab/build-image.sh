#!/usr/bin/env bash
# Build the lab container image once (debootstrap, no registry needed) and cache it outside the
# repo. The tag is a hash of this script, so a change to the package list rebuilds it.
# Usage: scripts/lab/build-image.sh   -> prints localhost/backup-lab:latest (molecule's image)
set -euo pipefail
. "$(dirname "$0")/../env.sh"

PACKAGES=(
  python3 python3-apt python3-pymysql python3-plyvel python3-boto3
  mariadb-server mariadb-client postgresql rdiff-backup
  rsync zstd gzip tar procps iproute2 ca-certificates sudo less
)
tag=$(cat "$0" | sha256sum | cut -c1-12)
image="localhost/backup-lab:$tag"
latest=localhost/backup-lab:latest
if podman image exists "$image"; then podman tag "$image" "$latest"; echo "$latest"; exit 0; fi

mkdir -p "$LAB_CACHE/images"
tarball="$LAB_CACHE/images/backup-lab-$tag.tar"
if [ ! -s "$tarball" ]; then
  mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
           | sed -nE 's#^(deb|URIs:)[[:space:]]+(\[[^]]*\][[:space:]]+)?(https?://[^ ]*/debian)/?([[:space:]].*)?$#\3#p' \
           | head -n1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  root=$(mktemp -d "$LAB_CACHE/rootfs.XXXXXX")
  trap 'umount -R "$root/proc" 2>/dev/null || true; rm -rf "$root"' EXIT
  echo ">> debootstrap bookworm from $mirror" >&2
  debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
  printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"; chmod 755 "$root/usr/sbin/policy-rc.d"
  mount -t proc proc "$root/proc"
  chroot "$root" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
  chroot "$root" apt-get clean
  umount "$root/proc"
  rm -f "$root/usr/sbin/policy-rc.d"
  # Services are started by the playbooks (no systemd in a container); nothing runs at import.
  tar -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
fi
echo ">> podman import $tarball" >&2
podman import --change 'CMD ["sleep","infinity"]' "$tarball" "$image" >/dev/null
podman tag "$image" "$latest"
echo "$latest"
