#!/usr/bin/env bash
# make test: every stage CI runs, in order, each timed; the table of stages and their wall-clock
# times is printed at the end of every run (also a failed or interrupted one), so a slower stage
# shows in the CI log. Stages: setup, lab-image, then two tracks side by side (scripts/test-tracks.sh):
# lint, syntax, unit and the host's integration tests; the LVM lab VM's tests; the molecule scenarios
# shared between them. Each part is timed.
set -uo pipefail
cd "$(dirname "$0")/.."
BT_STAGES=$(mktemp /tmp/bt-stages.XXXXXX)
# the failed tests, each with its error's first line (tests/lib/failures.py): printed above the table
BT_FAILURES=$(mktemp /tmp/bt-failures.XXXXXX)
export BT_STAGES BT_FAILURES
. scripts/stages.sh

start=$(date +%s)
finish() {
  rc=$?
  echo
  if [ -s "$BT_FAILURES" ]; then
    echo "failed tests ($(wc -l < "$BT_FAILURES") lines; the first 6):"
    head -n 6 "$BT_FAILURES" | cut -c1-240
    echo
  fi
  stage_table
  printf '%-38s %14s  %s\n' "make test (total)" \
    "$(printf '%3d min %02d s' $(( ($(date +%s) - start) / 60 )) $(( ($(date +%s) - start) % 60 )))" \
    "$([ "$rc" = 0 ] && echo passed || echo "FAILED (exit $rc)")"
  rm -f "$BT_STAGES" "$BT_FAILURES"
}
trap finish EXIT
trap 'exit 143' TERM  # so the table's last line says FAILED when CI stops the run
trap 'exit 130' INT

# Room first: a full disk half way fails tests far from the cause, and pauses the lab VM (its disk
# writes have nowhere to go), which held a CI run until its limit. The tests need BT_MIN_FREE_GB on
# each file system they write to: /tmp (test directories), /var/tmp (the VM's -snapshot overlay),
# the lab cache (the VM's data disk) and podman's storage.
. scripts/env.sh
need_gb=${BT_MIN_FREE_GB:-12}
for dir in /tmp /var/tmp "$LAB_CACHE" /var/lib/containers; do
  d=$dir; while [ ! -d "$d" ]; do d=$(dirname "$d"); done
  free_gb=$(( $(df -Pk "$d" | awk 'NR == 2 { print $4 }') / 1024 / 1024 ))
  if [ "$free_gb" -lt "$need_gb" ]; then
    echo "make test: only $free_gb GB free for $dir ($(df -P "$d" | awk 'NR == 2 { print $6 }')); the tests need $need_gb GB (BT_MIN_FREE_GB). Free some space (old /tmp/bt-pytest.* directories of failed runs, podman system prune) and run again." >&2
    exit 1
  fi
done

stage setup make --no-print-directory setup || exit $?
export BT_SETUP_DONE=1
stage lab-image make --no-print-directory lab-image || exit $?
# lint, syntax and the unit tests open the host track: the vm track (the critical path) boots the
# lab VM meanwhile
bash scripts/test-tracks.sh || exit $?
echo "make test: all stages passed"
