#!/usr/bin/env bash
# Build (once) the Debian 12 guest used to test the LVM snapshot strategy on a real device-mapper.
# The host kernel has no device-mapper, so LVM runs in a qemu guest (TCG). The image is cached under
# $LAB_CACHE/lvm-vm/<hash of this script>/ and rebuilt only when missing or when this script changes.
# Output (printed last): the cache directory holding root.img, vmlinuz, initrd.img, id_ed25519.
# Usage: scripts/lab/build-lvm-vm.sh [--force]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/env.sh

HASH=$(sha256sum scripts/lab/build-lvm-vm.sh | cut -c1-12)
BASE="$LAB_CACHE/lvm-vm"
OUT="$BASE/$HASH"
ROOT_SIZE=${LVM_VM_ROOT_SIZE:-4G}
GUEST_PACKAGES=(linux-image-cloud-amd64 initramfs-tools mariadb-server python3-pymysql thin-provisioning-tools)
INCLUDE=systemd-sysv,udev,kmod,dbus,lvm2,python3,openssh-server,e2fsprogs,xfsprogs,rsync,tar,iproute2,procps,ca-certificates,util-linux

if [ "${1:-}" != "--force" ] && [ -s "$OUT/root.img" ] && [ -s "$OUT/vmlinuz" ] && [ -s "$OUT/initrd.img" ]; then
  echo "$OUT"
  exit 0
fi

mirror=$({ grep -rhoE '^(deb |URIs: )\s*https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null || true; } \
  | head -n1 | sed -E 's/^(deb |URIs: )\s*//; s/ $//')
mirror=${mirror:-http://deb.debian.org/debian}

mkdir -p "$BASE"
WORK=$(mktemp -d "$BASE/.build-XXXXXX")
ROOTFS="$WORK/rootfs"
cleanup() {
  for m in dev/pts dev sys proc; do
    mountpoint -q "$ROOTFS/$m" 2>/dev/null && umount -l "$ROOTFS/$m" || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

echo ">> debootstrap bookworm ($mirror)" >&2
debootstrap --variant=minbase --include="$INCLUDE" bookworm "$ROOTFS" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
  || { tail -n 30 "$WORK/debootstrap.log" >&2; exit 1; }

echo ">> guest packages: ${GUEST_PACKAGES[*]}" >&2
printf '#!/bin/sh\nexit 101\n' > "$ROOTFS/usr/sbin/policy-rc.d"
chmod 755 "$ROOTFS/usr/sbin/policy-rc.d"
mount -t proc proc "$ROOTFS/proc"
mount --rbind /sys "$ROOTFS/sys" && mount --make-rslave "$ROOTFS/sys"
mount --rbind /dev "$ROOTFS/dev" && mount --make-rslave "$ROOTFS/dev"
chroot "$ROOTFS" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  "${GUEST_PACKAGES[@]}" >"$WORK/apt.log" 2>&1 || { tail -n 30 "$WORK/apt.log" >&2; exit 1; }
chroot "$ROOTFS" apt-get clean
for m in dev sys proc; do umount -l "$ROOTFS/$m"; done
rm -f "$ROOTFS/usr/sbin/policy-rc.d"

echo ">> guest configuration" >&2
echo lvmlab > "$ROOTFS/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 lvmlab\n' > "$ROOTFS/etc/hosts"
echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' > "$ROOTFS/etc/fstab"
echo 'nameserver 10.0.2.3' > "$ROOTFS/etc/resolv.conf"
mkdir -p "$ROOTFS/etc/systemd/network"
printf '[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n' > "$ROOTFS/etc/systemd/network/20-dhcp.network"
ln -sf /lib/systemd/system/systemd-networkd.service \
  "$ROOTFS/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
for unit in e2scrub_reap.service systemd-logind.service apt-daily.timer apt-daily-upgrade.timer \
            e2scrub_all.timer fstrim.timer man-db.timer systemd-networkd-wait-online.service; do
  ln -sf /dev/null "$ROOTFS/etc/systemd/system/$unit"
done
# root over SSH with the lab key only; no DNS lookups that stall logins without a resolver
ssh-keygen -q -t ed25519 -N '' -C lvm-lab -f "$WORK/id_ed25519"
install -d -m 700 "$ROOTFS/root/.ssh"
install -m 600 "$WORK/id_ed25519.pub" "$ROOTFS/root/.ssh/authorized_keys"
printf 'UseDNS no\nPermitRootLogin prohibit-password\n' > "$ROOTFS/etc/ssh/sshd_config.d/lab.conf"

echo ">> root image ($ROOT_SIZE)" >&2
cp "$(ls "$ROOTFS"/boot/vmlinuz-* | sort -V | tail -n1)" "$WORK/vmlinuz"
cp "$(ls "$ROOTFS"/boot/initrd.img-* | sort -V | tail -n1)" "$WORK/initrd.img"
# stdout carries only the result (the last line): mke2fs says "Creating regular file" there even with -q
mke2fs -q -t ext4 -L guestroot -d "$ROOTFS" "$WORK/root.img" "$ROOT_SIZE" >&2

rm -rf "$OUT"
mkdir -p "$OUT"
mv "$WORK/root.img" "$WORK/vmlinuz" "$WORK/initrd.img" "$WORK/id_ed25519" "$WORK/id_ed25519.pub" "$OUT/"
chmod 600 "$OUT/id_ed25519"
# older builds of this script are no longer used
find "$BASE" -mindepth 1 -maxdepth 1 -type d ! -name "$HASH" ! -name 'run*' ! -name '.build-*' -exec rm -rf {} +
echo ">> built $OUT" >&2
echo "$OUT"
