#!/usr/bin/env bash
# Stand-in for Seafile Pro's seaf-backup-cmd.sh (the real one cannot be installed here).
# Follows the documented contract of the real-time backup server:
#   seaf-backup-cmd.sh status                 prints the documented status format, exactly
#   seaf-backup-cmd.sh sync [--force] <id>    blocks until the library is backed up
# State comes from a small key=value file named by $SEAF_BACKUP_STANDIN_STATE, so tests can set
# empty lists, many ids, failures and malformed output:
#   total=5                      Total number of libraries
#   synchronized=3               Number of synchronized libraries
#   waiting=0                    Number of libraries waiting for sync
#   syncing="id id"              syncing library ids (the count is their number)
#   failed="id id"               ids failed to sync (the count is their number)
#   fail_sync="id"               ids whose plain `sync` fails (`sync --force` succeeds)
#   mode=ok|error|raw            error: status exits 1; raw: status prints $STATE.raw verbatim
#   delay=0.2                    seconds a sync blocks
# A successful sync moves the id from failed/syncing to synchronized. Every call is appended to
# $SEAF_BACKUP_STANDIN_STATE.log.
set -euo pipefail
state=${SEAF_BACKUP_STANDIN_STATE:?SEAF_BACKUP_STANDIN_STATE must name the stand-in state file}
total=0 synchronized=0 waiting=0 syncing="" failed="" fail_sync="" mode=ok delay=0.2
# shellcheck disable=SC1090
. "$state"
echo "$*" >> "$state.log"

count() { set -- $1; echo $#; }
without() { local out="" x; for x in $1; do [ "$x" = "$2" ] || out="$out${out:+ }$x"; done; echo "$out"; }
contains() { local x; for x in $1; do [ "$x" = "$2" ] && return 0; done; return 1; }
save() {
  local tmp="$state.tmp.$$"
  {
    echo "total=$total"; echo "synchronized=$synchronized"; echo "waiting=$waiting"
    echo "syncing=\"$syncing\""; echo "failed=\"$failed\""; echo "fail_sync=\"$fail_sync\""
    echo "mode=$mode"; echo "delay=$delay"
  } > "$tmp"
  mv "$tmp" "$state"
}

case "${1:-}" in
status)
  case "$mode" in
  error) echo "Failed to connect to the backup server daemon" >&2; exit 1 ;;
  raw) cat "$state.raw"; exit 0 ;;
  esac
  echo "Total number of libraries: $total"
  echo "Number of synchronized libraries: $synchronized"
  echo "Number of libraries waiting for sync: $waiting"
  echo "Number of libraries syncing: $(count "$syncing")"
  echo "Number of libraries failed to sync: $(count "$failed")"
  echo
  echo "List of syncing libraries:"
  for id in $syncing; do echo "$id"; done
  echo
  echo "List of libraries failed to sync:"
  for id in $failed; do echo "$id"; done
  ;;
sync)
  shift
  force=no
  if [ "${1:-}" = "--force" ]; then force=yes; shift; fi
  if [ $# -ne 1 ] || ! [[ $1 =~ ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$ ]]; then
    echo "usage: seaf-backup-cmd.sh sync [--force] <library id>" >&2; exit 2
  fi
  id=$1
  sleep "$delay"
  if [ "$force" = no ] && contains "$fail_sync" "$id"; then
    echo "Failed to sync library $id: object corrupted on the primary server" >&2
    exit 1
  fi
  if contains "$failed" "$id" || contains "$syncing" "$id"; then
    failed=$(without "$failed" "$id"); syncing=$(without "$syncing" "$id")
    synchronized=$((synchronized + 1))
  fi
  fail_sync=$(without "$fail_sync" "$id")
  save
  echo "Library $id is synced."
  ;;
*)
  echo "usage: seaf-backup-cmd.sh status | sync [--force] <library id>" >&2
  exit 2
  ;;
esac
