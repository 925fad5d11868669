#!/usr/bin/env bash
# The LVM test guest: a Debian 12 VM under qemu (TCG; the host kernel has no device-mapper).
#   scripts/lab/lvm-vm.sh start    build the image if needed, boot with -snapshot (every run starts
#                                  clean), wait for SSH, write the inventory; prints its path
#   scripts/lab/lvm-vm.sh stop     power off (kill the qemu pid if it does not go), remove run state
#   scripts/lab/lvm-vm.sh status   running or not, SSH port, inventory path
#   scripts/lab/lvm-vm.sh ssh CMD  run a command in the guest as root
#   scripts/lab/lvm-vm.sh setup    lay out the lab in the guest (molecule/lvm/files/lab-setup.sh:
#                                  VG, LVs, MariaDB on LVM, the application and a writer); once
# LVM_VM_SHARED=1: one VM for several users in a row (make test's vm track boots it once for the VM
# tests and molecule lvm): start reuses a running VM (prints its inventory), stop leaves it running;
# `stop --force` stops it whatever the setting.
# Environment: LVM_VM_DISK_SIZE (blank data disk for the VG, default 6G), LVM_VM_MEM (2048),
# LVM_VM_SMP (2), LVM_VM_RUN (run-state directory, default $LAB_CACHE/lvm-vm/run), LVM_VM_BOOT_TIMEOUT
# (seconds to wait for SSH, 180), LVM_VM_BOOT_ATTEMPTS (boots tried before giving up, 3),
# LVM_VM_SSH_TIMEOUT (seconds an ssh command waits for the guest to answer, 60).
# Only one VM runs at a time on this machine: start refuses when one is already up.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/env.sh

RUN=${LVM_VM_RUN:-$LAB_CACHE/lvm-vm/run}
PIDFILE=$RUN/qemu.pid
INVENTORY=$RUN/inventory.yml

running() { [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

ssh_opts() {
  # ConnectTimeout covers the banner exchange too: a TCG guest on a loaded host can take more than
  # 5 s to answer it (the boot probe uses 5 s, a command ${LVM_VM_SSH_TIMEOUT:-60} s)
  echo -i "$(cat "$RUN/image")/id_ed25519" -p "$(cat "$RUN/port")" -o BatchMode=yes \
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
    -o ConnectTimeout="${1:-${LVM_VM_SSH_TIMEOUT:-60}}" -o ServerAliveInterval=15 -o ServerAliveCountMax=8
}

guest_ssh() {
  # shellcheck disable=SC2046
  ssh $(ssh_opts) root@127.0.0.1 "$@"
}

guest_probe() {
  # shellcheck disable=SC2046
  ssh $(ssh_opts 5) root@127.0.0.1 true
}

boot_once() {
  # Boot the image once; 0 when SSH answers, 1 (qemu gone, console shown) when it does not in time.
  local image=$1 port t0
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  echo "$port" > "$RUN/port"
  rm -f "$PIDFILE" "$RUN/console.log"
  # werror/rerror=report: a host disk that fills up gives the guest I/O errors (the tests fail)
  # instead of pausing it (qemu's default, which left a CI run waiting until its limit)
  qemu-system-x86_64 -accel tcg -m "${LVM_VM_MEM:-2048}" -smp "${LVM_VM_SMP:-2}" \
    -display none -serial "file:$RUN/console.log" -daemonize -pidfile "$PIDFILE" \
    -kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
    -append "console=ttyS0 root=/dev/vda rw quiet" \
    -drive "file=$image/root.img,format=raw,if=virtio,werror=report,rerror=report" \
    -drive "file=$RUN/lvm.img,format=raw,if=virtio,werror=report,rerror=report" \
    -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:22" -device virtio-net-pci,netdev=n0 \
    -snapshot
  t0=$(date +%s)
  until guest_probe 2>/dev/null; do
    if ! running; then
      echo "lvm-vm: qemu exited during boot; console:" >&2
      tail -n 30 "$RUN/console.log" >&2
      return 1
    fi
    if [ $(( $(date +%s) - t0 )) -gt "${LVM_VM_BOOT_TIMEOUT:-180}" ]; then
      echo "lvm-vm: no SSH after ${LVM_VM_BOOT_TIMEOUT:-180}s; console:" >&2
      tail -n 30 "$RUN/console.log" >&2
      kill_qemu
      return 1
    fi
    sleep 2
  done
  echo "lvm-vm: up in $(( $(date +%s) - t0 ))s on port $port" >&2
}

kill_qemu() {
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 10); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
}

start() {
  if running; then
    if [ "${LVM_VM_SHARED:-0}" = 1 ] && [ -s "$INVENTORY" ]; then
      echo "lvm-vm: reusing the running VM (LVM_VM_SHARED=1)" >&2
      echo "$INVENTORY"
      return 0
    fi
    echo "lvm-vm: already running (pid $(cat "$PIDFILE")); stop it first" >&2
    exit 1
  fi
  image=$(bash scripts/lab/build-lvm-vm.sh)
  if [ ! -s "$image/root.img" ]; then
    echo "lvm-vm: the image build did not name an image directory (got: $image)" >&2
    exit 1
  fi
  rm -rf "$RUN"
  mkdir -p "$RUN"
  echo "$image" > "$RUN/image"
  truncate -s "${LVM_VM_DISK_SIZE:-6G}" "$RUN/lvm.img"
  # A TCG guest now and then wedges at boot (soft lockups, RCU stalls on the console, no SSH ever):
  # power it off and boot again, a few times, before giving up.
  attempts=${LVM_VM_BOOT_ATTEMPTS:-3}
  for attempt in $(seq 1 "$attempts"); do
    if boot_once "$image"; then
      break
    fi
    if [ "$attempt" -eq "$attempts" ]; then
      stop
      exit 1
    fi
    echo "lvm-vm: boot attempt $attempt of $attempts failed; booting again" >&2
  done
  cat > "$INVENTORY" <<INV
---
all:
  children:
    lvm_backup_hosts:
      hosts:
        lvmlab:
          ansible_host: 127.0.0.1
          ansible_port: $(cat "$RUN/port")
          ansible_user: root
          ansible_ssh_private_key_file: $image/id_ed25519
          ansible_ssh_common_args: "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
          ansible_timeout: 60
          ansible_python_interpreter: /usr/bin/python3
INV
  echo "$INVENTORY"
}

stop() {
  if [ "${LVM_VM_SHARED:-0}" = 1 ] && [ "${1:-}" != --force ] && running; then
    echo "lvm-vm: left running for its next user (LVM_VM_SHARED=1; stop --force stops it)" >&2
    return 0
  fi
  if running; then
    pid=$(cat "$PIDFILE")
    guest_ssh systemctl poweroff >/dev/null 2>&1 || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill_qemu
  fi
  rm -rf "$RUN"
  echo "lvm-vm: stopped" >&2
}

case "${1:-}" in
  start) start ;;
  stop) stop "${2:-}" ;;
  setup)
    running || { echo "lvm-vm: not running" >&2; exit 1; }
    # the lab's default sizes; a writer every 0.25 s (every 50 ms costs a TCG guest a fifth of a core)
    # and an 8M redo log (the copy of each backup is 56 MiB smaller than with 64M)
    guest_ssh bash -s -- 700M 20 320M "${LVM_VM_WRITER_INTERVAL:-0.25}" 8M < molecule/lvm/files/lab-setup.sh ;;
  status)
    if running; then echo "running pid=$(cat "$PIDFILE") port=$(cat "$RUN/port") inventory=$INVENTORY"
    else echo "stopped"; exit 3; fi ;;
  ssh) shift; running || { echo "lvm-vm: not running" >&2; exit 1; }; guest_ssh "$@" ;;
  *) echo "usage: $0 start|stop [--force]|status|setup|ssh CMD..." >&2; exit 2 ;;
esac
