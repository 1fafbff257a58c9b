#!/usr/bin/env bash
# What an idle Integro costs on PostgreSQL: `serve` with workers and one
# `worker` process on a fresh database, nothing to do, for SECONDS; prints
# the CPU (user + system) of each Integro process and of PostgreSQL's
# processes (all of them: backends and the server's own), as a share of one
# core, and the machine's steal over the same time.
#
#   bash bench/idle_cpu.sh [INTEGRO_BINARY] [SECONDS]
#
# INTEGRO_TEST_POSTGRES_URL names the server (default
# postgres://postgres@127.0.0.1:5432/postgres); a database is made and
# dropped.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
bin=${1:-target/release/integro}
seconds=${2:-60}
admin=${INTEGRO_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
name="integro_idle_$$"
psql -q "$admin" -c "CREATE DATABASE $name"
url="${admin%/*}/$name"
dir=$(mktemp -d)
cleanup() {
    kill "${serve:-}" "${worker:-}" 2>/dev/null || true
    wait 2>/dev/null || true
    psql -q "$admin" -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" || true
    rm -rf "$dir"
}
trap cleanup EXIT
export INTEGRO_DATABASE_URL=$url INTEGRO_DATA_DIR=$dir INTEGRO_LOG=warn
"$bin" migrate >/dev/null
port=18391
INTEGRO_LISTEN=127.0.0.1:$port "$bin" serve >"$dir/serve.log" 2>&1 &
serve=$!
wait_port $port
INTEGRO_WORKER_LISTEN=127.0.0.1:$((port + 1)) "$bin" worker >"$dir/worker.log" 2>&1 &
worker=$!
wait_port $((port + 1))
sleep 5 # start-up done: connections opened, first maintenance tick run

postgres_ticks() {
    local sum=0
    for pid in $(pgrep -x postgres); do
        sum=$((sum + $(cpu_ticks "$pid" 2>/dev/null || echo 0)))
    done
    echo $sum
}
steal() { awk '/^cpu /{print $9}' /proc/stat; }
total() { awk '/^cpu /{s=0; for (i=2;i<=NF;i++) s+=$i; print s}' /proc/stat; }

s0=$(cpu_ticks $serve) w0=$(cpu_ticks $worker) p0=$(postgres_ticks) st0=$(steal) t0=$(total)
sleep "$seconds"
s1=$(cpu_ticks $serve) w1=$(cpu_ticks $worker) p1=$(postgres_ticks) st1=$(steal) t1=$(total)
hz=$(getconf CLK_TCK)
share() { awk -v t="$1" -v hz="$hz" -v s="$seconds" 'BEGIN { printf "%.2f%%", 100 * t / hz / s }'; }
echo "idle for ${seconds} s on PostgreSQL ($("$bin" --version))"
echo "  serve (16 workers)  $(share $((s1 - s0))) of a core"
echo "  worker process      $(share $((w1 - w0))) of a core"
echo "  PostgreSQL (all)    $(share $((p1 - p0))) of a core"
awk -v a=$((st1 - st0)) -v b=$((t1 - t0)) 'BEGIN { printf "  steal               %.1f%% of the machine\n", 100 * a / b }'
