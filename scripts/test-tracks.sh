#!/usr/bin/env bash
# make test's integration tests and molecule scenarios, run as two tracks side by side:
#   vm    what needs the LVM lab VM (device-mapper): one boot and one lab set-up
#         (LVM_VM_SHARED=1), then make integration-vm, then make molecule-vm (scenario lvm, whose
#         in-place restore comes last); the VM is stopped at the track's end, however it ends
#   host  make lint syntax unit (stopping at the first that fails), then make integration-host: the
#         other integration tests, on the host and in podman containers
# The container scenarios (make molecule-host) are a queue both tracks take from once their own
# part is done, longest first, so neither track idles while the other still has work. Only one lab
# VM runs at a time, so everything that uses it is in the one track. The vm track's output goes to a
# log printed when it ends; the host track prints as it goes. Both tracks run to their end even
# when the other fails (a VM killed half way would be left running), and the exit status is non-zero
# when either failed. Expects `make setup lab-image` done (so its make targets skip setup).
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/stages.sh  # each part is timed into $BT_STAGES (make test prints the table)
export BT_SETUP_DONE=1

log=$(mktemp /tmp/bt-vm-track.XXXXXX)
start=$(date +%s)
elapsed() { echo "$(( ($(date +%s) - start) / 60 )) min $(( ($(date +%s) - start) % 60 )) s"; }

# the container scenarios, longest first (the seafile pair converges twice)
queue=$(mktemp /tmp/bt-scenarios.XXXXXX)
order="seafile btw seafile_config fcrepo schedule"
for scenario in $order $(make --no-print-directory -s molecule-host-list); do
  grep -qx "$scenario" "$queue" || [ ! -f "molecule/$scenario/molecule.yml" ] || echo "$scenario" >> "$queue"
done
next_scenario() {  # the next scenario off the queue, for one track at a time; nothing when empty
  flock "$queue.lock" sh -c 'head -n1 "$1"; sed -i 1d "$1"' _ "$queue"
}
scenarios_from_queue() {  # run scenarios off the queue until it is empty; non-zero when one failed
  local track=$1 scenario rc=0
  while scenario=$(next_scenario) && [ -n "$scenario" ]; do
    stage "$track track: molecule $scenario" make --no-print-directory molecule-run SCENARIOS="$scenario" || rc=1
  done
  return "$rc"
}

vm_track() {
  local rc=0
  export LVM_VM_SHARED=1
  trap 'bash scripts/lab/lvm-vm.sh stop --force' EXIT
  stage "vm track: boot and lab set-up" bash -c 'bash scripts/lab/lvm-vm.sh start >/dev/null && bash scripts/lab/lvm-vm.sh setup' \
    && stage "vm track: integration-vm" make --no-print-directory integration-vm \
    && stage "vm track: molecule-vm" make --no-print-directory molecule-vm || rc=1
  bash scripts/lab/lvm-vm.sh stop --force
  trap - EXIT
  scenarios_from_queue vm || rc=1
  return "$rc"
}

echo ">> vm track (LVM lab VM): make integration-vm molecule-vm, then container scenarios; output in $log until it ends"
set -m  # its own process group: a background job would otherwise ignore SIGINT
( vm_track ) > "$log" 2>&1 &
vm_pid=$!
set +m
# an interrupted make test interrupts the vm track too, and waits while its pytest or molecule stops
# and the track's own trap stops the VM on the way out
trap 'kill -INT -- "-$vm_pid" 2>/dev/null; wait "$vm_pid"; cat "$log"; exit 130' INT TERM

echo ">> host track: make lint syntax unit integration-host, then container scenarios"
host_rc=0
# at a lower CPU priority: the vm track is the critical path (its TCG guest is CPU-bound and the
# longest part), so the host track takes the CPU the guest leaves
for target in lint syntax unit integration-host; do
  stage "host track: $target" nice -n 10 make --no-print-directory "$target" || { host_rc=1; break; }
done
# after a failure the scenarios are left to the vm track
[ "$host_rc" != 0 ] || scenarios_from_queue host || host_rc=1
echo ">> host track ended after $(elapsed) (exit $host_rc); waiting for the vm track"

wait "$vm_pid"
vm_rc=$?
echo ">> vm track ended after $(elapsed) (exit $vm_rc); its output:"
cat "$log"
rm -f "$log" "$queue" "$queue.lock"

echo ">> host track (lint, syntax, unit, integration-host, its share of molecule-host): $([ "$host_rc" = 0 ] && echo passed || echo "FAILED (exit $host_rc)")"
echo ">> vm track (integration-vm, molecule-vm, its share of molecule-host): $([ "$vm_rc" = 0 ] && echo passed || echo "FAILED (exit $vm_rc)")"
[ "$host_rc" = 0 ] && [ "$vm_rc" = 0 ]
