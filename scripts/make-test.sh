#!/usr/bin/env bash
# make test: every stage CI runs, in order, each timed; the table of stages and their wall-clock
# times is printed at the end of every run (also a failed or interrupted one), so a slower stage
# shows in the CI log. Stages: setup, lint, syntax, unit, lab-image, then the integration tests and
# molecule scenarios as two tracks side by side (scripts/test-tracks.sh), each timed per part.
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
  printf '%-32s %14s  %s\n' "make test (total)" \
    "$(printf '%3d min %02d s' $(( ($(date +%s) - start) / 60 )) $(( ($(date +%s) - start) % 60 )))" \
    "$([ "$rc" = 0 ] && echo passed || echo "FAILED (exit $rc)")"
  rm -f "$BT_STAGES"
}
trap finish EXIT

stage setup make --no-print-directory setup || exit $?
export BT_SETUP_DONE=1
for target in lint syntax unit lab-image; do
  stage "$target" make --no-print-directory "$target" || exit $?
done
bash scripts/test-tracks.sh || exit $?
echo "make test: all stages passed"
