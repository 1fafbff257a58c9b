#!/usr/bin/env bash
# Per-thread CPU and context switches of a running process over a window:
# which thread is the serial path (bench/HISTORY.md, "Per thread (2026-11-30)").
#
#   bench/threads.sh PID [SECONDS]
#
# During `integro-bench e2e`, the PID is Integro's (`pgrep -x integro`).
# Threads are listed by id, in creation order: on SQLite the first
# `sqlx-sqlite-wor` is the writer connection's thread, the others readers'.
# CPU is in clock ticks (`getconf CLK_TCK`, usually 100 a second).
set -euo pipefail
pid=${1:?usage: bench/threads.sh PID [SECONDS]}
secs=${2:-10}
snapshot() {
    for task in /proc/"$pid"/task/*; do
        awk -v tid="$(basename "$task")" -v name="$(tr ' ' '_' < "$task"/comm)" '
            FILENAME ~ /status$/ && /^voluntary_ctxt_switches/ { vol = $2 }
            FILENAME ~ /status$/ && /^nonvoluntary_ctxt_switches/ { invol = $2 }
            FILENAME ~ /stat$/ { cpu = $14 + $15 }
            END { print tid, name, vol, invol, cpu }' "$task"/status "$task"/stat
    done | sort
}
before=$(mktemp)
trap 'rm -f "$before"' EXIT
snapshot > "$before"
sleep "$secs"
printf '%-8s %-18s %10s %10s %8s\n' tid thread voluntary involuntary cpu
join "$before" <(snapshot) | sort -n |
    awk '{ printf "%-8s %-18s %10d %10d %8d\n", $1, $2, $7 - $3, $8 - $4, $9 - $5 }'
