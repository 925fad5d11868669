# Sourced by scripts/make-test.sh and scripts/test-tracks.sh: time the stages of make test.
#   stage NAME CMD...   run CMD; append "NAME<TAB>seconds<TAB>exit status" to $BT_STAGES
#   stage_table         print the recorded stages as a table (make test's last lines)
BT_STAGES=${BT_STAGES:-/dev/null}

stage() {
  local name=$1 t0 rc
  shift
  t0=$(date +%s)
  "$@"
  rc=$?
  printf '%s\t%s\t%s\n' "$name" "$(( $(date +%s) - t0 ))" "$rc" >> "$BT_STAGES"
  return "$rc"
}

stage_table() {
  [ -s "$BT_STAGES" ] || return 0
  awk -F'\t' '
    function mmss(s) { return sprintf("%3d min %02d s", int(s / 60), s % 60) }
    BEGIN { printf "%-38s %14s  %s\n", "make test stage", "wall clock", "result" }
    { printf "%-38s %14s  %s\n", $1, mmss($2), ($3 == 0 ? "passed" : "FAILED (exit " $3 ")") }
  ' "$BT_STAGES"
}
