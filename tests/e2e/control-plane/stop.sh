#!/usr/bin/env bash
# Stops what start.sh started from <workdir>: by pid, apiserver before etcd, then waits.
# Safe to call twice and when nothing runs. Leaves <workdir> itself in place.
#
# Usage: stop.sh <workdir>
set -euo pipefail

[[ $# -eq 1 && -n "$1" ]] || { echo "usage: stop.sh <workdir>" >&2; exit 2; }
[[ -d "$1" ]] || exit 0
WD="$(cd "$1" && pwd -P)"
[[ -f "$WD/pids" ]] || exit 0

# Only signal a pid that is still ours: its command line names this workdir
# (a recycled pid belongs to something else and must not be killed).
ours() {
  local pid=$1
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$WD/"
}

# wait_gone <pid> <seconds>: true once the pid is gone (or no longer ours).
wait_gone() {
  local pid=$1 deadline=$((SECONDS + $2))
  while ours "$pid"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

mapfile -t pids <"$WD/pids"
for pid in "${pids[@]}"; do
  ours "$pid" || continue
  kill -TERM "$pid" 2>/dev/null || true
  # Graceful first (etcd flushes, apiserver drains); force after 15 s.
  if ! wait_gone "$pid" 15; then
    echo "stop.sh: pid $pid ignored SIGTERM, killing" >&2
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 5 || echo "stop.sh: pid $pid still alive" >&2
  fi
done
rm -f "$WD/pids"
