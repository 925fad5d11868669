#!/usr/bin/env bash
# Build the lab container images once (debootstrap, no registry needed) and cache them outside the
# repo. The tag is a hash of this script, so a change to the package list rebuilds them.
#   localhost/backup-lab:latest          molecule's and the tests' image: Debian 12 + the packages
#                                        below; run with an init (podman --init, containers.conf)
#   localhost/backup-lab-systemd:latest  the same plus systemd as PID 1 (`--systemd=always
#                                        /sbin/init`), for what needs a real systemd (timers)
# Usage: scripts/lab/build-image.sh   -> prints localhost/backup-lab:latest (molecule's image)
# The build's own chatter (debootstrap, apt, package scripts) goes to a log under $LAB_CACHE/images;
# only its tail is shown when the build fails.
set -euo pipefail
. "$(dirname "$0")/../env.sh"

PACKAGES=(
  python3 python3-apt python3-pymysql python3-plyvel python3-boto3
  mariadb-server mariadb-client mariadb-backup postgresql rdiff-backup
  rsync zstd gzip tar procps iproute2 ca-certificates sudo less
)
SYSTEMD_PACKAGES=(systemd-sysv dbus)
tag=$(cat "$0" | sha256sum | cut -c1-12)
image="localhost/backup-lab:$tag"
systemd_image="localhost/backup-lab-systemd:$tag"
latest=localhost/backup-lab:latest
systemd_latest=localhost/backup-lab-systemd:latest
if podman image exists "$image" && podman image exists "$systemd_image"; then
  podman tag "$image" "$latest"
  podman tag "$systemd_image" "$systemd_latest"
  echo "$latest"
  exit 0
fi

mkdir -p "$LAB_CACHE/images"
tarball="$LAB_CACHE/images/backup-lab-$tag.tar"
systemd_tarball="$LAB_CACHE/images/backup-lab-systemd-$tag.tar"
log="$LAB_CACHE/images/build-$tag.log"
if [ ! -s "$tarball" ] || [ ! -s "$systemd_tarball" ]; then
  mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
           | sed -nE 's#^(deb|URIs:)[[:space:]]+(\[[^]]*\][[:space:]]+)?(https?://[^ ]*/debian)/?([[:space:]].*)?$#\3#p' \
           | head -n1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  root=$(mktemp -d "$LAB_CACHE/rootfs.XXXXXX")
  trap 'umount -R "$root/proc" 2>/dev/null || true; rm -rf "$root"' EXIT
  : > "$log"
  step() {  # step DESCRIPTION CMD...: run CMD with its output in the log; its tail on failure
    echo ">> $1" >&2
    shift
    if ! "$@" >>"$log" 2>&1; then
      echo "build-image: failed; the end of $log:" >&2
      tail -n 30 "$log" >&2
      exit 1
    fi
  }
  # mktemp makes the directory 0700: the chroot's / must let package scripts run as other users
  chmod 0755 "$root"
  step "debootstrap bookworm from $mirror" debootstrap --variant=minbase bookworm "$root" "$mirror"
  printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"; chmod 755 "$root/usr/sbin/policy-rc.d"
  # the tests and playbooks create the clusters they need; the image ships none (as before)
  mkdir -p "$root/etc/postgresql-common"
  echo 'create_main_cluster = false' > "$root/etc/postgresql-common/createcluster.conf"
  mount -t proc proc "$root/proc"
  step "apt-get update" chroot "$root" apt-get update -qq
  step "install ${PACKAGES[*]}" \
    chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"
  # the image ships an empty MariaDB datadir: playbooks and tests run mariadb-install-db themselves
  find "$root/var/lib/mysql" -mindepth 1 ! -name 'debian-*.flag' -delete
  chroot "$root" apt-get clean
  umount "$root/proc"
  rm -f "$root/usr/sbin/policy-rc.d"
  # Services are started by the playbooks (no systemd in a container); nothing runs at import.
  step "pack the lab image" tar -C "$root" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"

  # the systemd variant: the same tree plus systemd as init; nothing of the lab starts at boot, and
  # the units that cannot work in a container are masked
  printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
  mount -t proc proc "$root/proc"
  step "install ${SYSTEMD_PACKAGES[*]} (systemd variant)" \
    chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${SYSTEMD_PACKAGES[@]}"
  chroot "$root" apt-get clean
  umount "$root/proc"
  rm -f "$root/usr/sbin/policy-rc.d"
  rm -f "$root"/etc/systemd/system/multi-user.target.wants/{mariadb,postgresql}.service
  for unit in systemd-logind.service getty.target console-getty.service systemd-remount-fs.service \
              apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
  done
  step "pack the systemd image" tar -C "$root" -cf "$systemd_tarball.tmp" .
  mv "$systemd_tarball.tmp" "$systemd_tarball"
fi
echo ">> podman import $tarball" >&2
podman import --quiet --change 'CMD ["sleep","infinity"]' "$tarball" "$image" >/dev/null
podman tag "$image" "$latest"
echo ">> podman import $systemd_tarball" >&2
podman import --quiet --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL=SIGRTMIN+3' \
  "$systemd_tarball" "$systemd_image" >/dev/null
podman tag "$systemd_image" "$systemd_latest"
# the tarballs of older builds of this script are no longer used
find "$LAB_CACHE/images" -maxdepth 1 -name 'backup-lab*.tar' ! -name "*-$tag.tar" -delete
echo "$latest"
