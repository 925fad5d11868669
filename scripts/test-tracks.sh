#!/usr/bin/env bash
# make test's integration tests and molecule scenarios, run as two tracks side by side:
#   vm    the tests and scenarios that run in the LVM lab VM (make integration-vm molecule-vm):
#         a qemu guest under TCG, CPU-bound and about half of the time of the whole
#   host  everything else, on the host and in podman containers (make integration-host molecule-host)
# Only one lab VM runs at a time, so everything that uses it is in the one track. The vm track's
# output goes to a log printed when it ends; the host track prints as it goes. Both tracks run to
# their end even when the other fails (a VM killed half way would be left running), and the exit
# status is non-zero when either failed. Expects `make setup lab-image` done.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/stages.sh  # each part is timed into $BT_STAGES (make test prints the table)

log=$(mktemp /tmp/bt-vm-track.XXXXXX)
start=$(date +%s)
elapsed() { echo "$(( ($(date +%s) - start) / 60 )) min $(( ($(date +%s) - start) % 60 )) s"; }

echo ">> vm track (LVM lab VM): make integration-vm molecule-vm, output in $log until it ends"
set -m  # its own process group: a background job would otherwise ignore SIGINT
{ stage "vm track: integration-vm" make --no-print-directory integration-vm \
    && stage "vm track: molecule-vm" make --no-print-directory molecule-vm; } > "$log" 2>&1 &
vm_pid=$!
set +m
# an interrupted make test interrupts the vm track too, and waits while its pytest or molecule stops
# the VM on the way out
trap 'kill -INT -- "-$vm_pid" 2>/dev/null; wait "$vm_pid"; cat "$log"; exit 130' INT TERM

echo ">> host track: make integration-host molecule-host"
stage "host track: integration-host" make --no-print-directory integration-host \
  && stage "host track: molecule-host" make --no-print-directory molecule-host
host_rc=$?
echo ">> host track ended after $(elapsed) (exit $host_rc); waiting for the vm track"

wait "$vm_pid"
vm_rc=$?
echo ">> vm track ended after $(elapsed) (exit $vm_rc); its output:"
cat "$log"
rm -f "$log"

echo ">> host track (integration-host, molecule-host): $([ "$host_rc" = 0 ] && echo passed || echo "FAILED (exit $host_rc)")"
echo ">> vm track (integration-vm, molecule-vm): $([ "$vm_rc" = 0 ] && echo passed || echo "FAILED (exit $vm_rc)")"
[ "$host_rc" = 0 ] && [ "$vm_rc" = 0 ]
