#!/usr/bin/env bash
# make test: every stage CI runs, in order, each timed; the table of stages and their wall-clock
# times is printed at the end of every run (also a failed or interrupted one), so a slower stage
# shows in the CI log. Stages: setup, lab-image, then two tracks side by side (scripts/test-tracks.sh):
# lint, syntax, unit and the host's integration tests; the LVM lab VM's tests; the molecule scenarios
# shared between them. Each part is timed.
set -uo pipefail
cd "$(dirname "$0")/.."
BT_STAGES=$(mktemp /tmp/bt-stages.XXXXXX)
export BT_STAGES
. scripts/stages.sh

start=$(date +%s)
finish() {
  rc=$?
  echo
  stage_table
  printf '%-38s %14s  %s\n' "make test (total)" \
    "$(printf '%3d min %02d s' $(( ($(date +%s) - start) / 60 )) $(( ($(date +%s) - start) % 60 )))" \
    "$([ "$rc" = 0 ] && echo passed || echo "FAILED (exit $rc)")"
  rm -f "$BT_STAGES"
}
trap finish EXIT

stage setup make --no-print-directory setup || exit $?
export BT_SETUP_DONE=1
stage lab-image make --no-print-directory lab-image || exit $?
# lint, syntax and the unit tests open the host track: the vm track (the critical path) boots the
# lab VM meanwhile
bash scripts/test-tracks.sh || exit $?
echo "make test: all stages passed"
