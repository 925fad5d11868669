#!/usr/bin/env bash
# Install everything the demo and the tests need on a fresh Debian 12 machine (as root):
# Debian packages, a Python venv (.venv, a link to its cached build), the Ansible collections,
# podman settings.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

APT_PACKAGES=(
  python3 python3-venv python3-dev gcc make git
  mariadb-server mariadb-client mariadb-backup postgresql rdiff-backup prometheus
  podman runc netavark aardvark-dns iptables catatonit slirp4netns fuse-overlayfs uidmap debootstrap
  qemu-system-x86 qemu-utils openssh-client e2fsprogs xfsprogs
  rsync zstd gzip tar procps iproute2 curl ca-certificates
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo ">> apt-get install ${missing[*]}"
  # Debian's packages start their services; the toolkit starts its own, so keep them off.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python venv with pinned packages, built once per requirements.txt (and python3 version) in the
# cache outside the repo, like the lab images: a fresh clone links .venv to it instead of spending
# two minutes installing the same packages. A venv whose install did not complete (no .complete
# mark) is built again; one build at a time (flock).
want=$( (cat requirements.txt; python3 --version) | sha256sum | cut -c1-16)
venv="$LAB_CACHE/venv/$want"
if [ ! -f "$venv/.complete" ]; then
  mkdir -p "$LAB_CACHE/venv"
  (
    flock 9
    if [ ! -f "$venv/.complete" ]; then
      echo ">> python venv from requirements.txt ($venv)"
      rm -rf "$venv"
      python3 -m venv "$venv"
      "$venv/bin/pip" install -q --upgrade pip
      "$venv/bin/pip" install -q -r requirements.txt
      touch "$venv/.complete"
    fi
  ) 9> "$LAB_CACHE/venv/.lock"
fi
if [ "$(readlink .venv 2>/dev/null)" != "$venv" ]; then
  rm -rf .venv  # an older repo-local venv, or a link to the venv of other requirements
  ln -s "$venv" .venv
fi

# Collections: Galaxy first (requirements.yml, pinned), the bundle in the `ansible` package when
# Galaxy is unreachable (as on our build machines).
if ! .venv/bin/ansible-galaxy collection list 2>/dev/null | grep -q '^community.mysql '; then
  .venv/bin/ansible-galaxy collection install -r requirements.yml >/dev/null 2>&1 \
    || echo ">> Galaxy unreachable: using the collections bundled with the ansible package"
fi

# Podman on this kind of host: runc (crun fails on hybrid cgroups) and ulimits that fit.
# Hand-made `podman run`s need this file too: source scripts/env.sh first (CONTAINERS_CONF).
# (The lab's containers are run with --init, an init as PID 1 that reaps zombies: podman 4.3
# ignores `init = true` here.)
mkdir -p "$(dirname "$CONTAINERS_CONF")"
cat > "$CONTAINERS_CONF" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=1000:1000"]
[engine]
runtime = "runc"
CONF
echo ">> setup done"
