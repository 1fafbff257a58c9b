#!/usr/bin/env bash
# Webhook ingest benchmark: Integro (SQLite and PostgreSQL) and the reference
# servers of ../shared/bench-reference, measured by the same generator in the
# same run. Writes bench/results/<date>/results.jsonl and summary.md.
#
# Then the end-to-end load (webhook → provider send) on both databases.
#
# usage: bench/run.sh [DURATION_S]        (default 10 s per ingest case)
# env:   PG_ADMIN_URL (postgres://postgres@127.0.0.1:5432/postgres)  CONCURRENCY (64)
#        CASES: a subset of "ref-ok ref-sqlite-batch ref-pg-batch integro-sqlite integro-pg
#               e2e-sqlite e2e-pg" (default all)
#        E2E_RATES (default "200 1000") and E2E_DURATION (default 60) for the e2e cases
#        ROUNDS (default 3): the ingest cases run this many times, each Integro case
#               beside its reference (alternately first and second), fresh each time
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${1:-10}
CONC=${CONCURRENCY:-64}
# This machine's speed drifts by tens of percent within minutes (bench/README.md),
# so one run of each server can put a slow minute on one side of a ratio. Each
# round measures Integro and its reference back to back, the order swapped
# every round so that a steady drift cancels; summarize.py takes each round's
# ratio and reports their median.
ROUNDS=${ROUNDS:-3}
ROUND=1
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
PG_BASE=${PG_ADMIN_URL%/*}
# Integro's database URLs ask for plaintext: the reference server is built
# without TLS and talks to PostgreSQL in plaintext, while Integro (built
# with rustls) would negotiate TLS on loopback too (sslmode=prefer, as
# libpq): at ingest saturation PostgreSQL's backend spent ~4% of its time
# in OpenSSL (perf), and Integro's tokio threads a few % in rustls.
# The same work on both sides; a deployment's URL says what it needs.
PG_PLAIN="sslmode=disable"
STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
OUT=$ROOT/bench/results/$STAMP
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

echo "building (release)…"
cargo build --release -q -p integro -p integro-bench
INTEGRO=$ROOT/target/release/integro
BENCH=$ROOT/target/release/integro-bench
REF_SRC=$ROOT/../shared/bench-reference
REF_TARGET=${REF_TARGET:-/tmp/integro-hookbench-target}
cp -r "$REF_SRC/." "$WORK/ref"
(cd "$WORK/ref/hookbench" && CARGO_TARGET_DIR=$REF_TARGET cargo build --release -q)
HOOKBENCH=$REF_TARGET/release/hookbench

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
PORT=3000

# measure LABEL PID URL SIGN_URL [generator args…]
measure() {
  local label=$1 pid=$2 url=$3 sign=$4; shift 4
  local c0; c0=$(cpu_ticks "$pid")
  local report
  report=$("$BENCH" ingest --url "$url" --sign-url "$sign" --token "$TOKEN" --duration "$DURATION" --label "$label" "$@")
  local c1; c1=$(cpu_ticks "$pid")
  local cpu; cpu=$(awk -v a="$c0" -v b="$c1" -v t="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", (b-a)/t}')
  local rss; rss=$(peak_rss_kib "$pid")
  echo "$report" | python3 -c "import sys,json; r=json.load(sys.stdin); r['server_cpu_s']=$cpu; r['server_peak_rss_kib']=$rss; r['round']=$ROUND; print(json.dumps(r))" | tee -a "$OUT/results.jsonl"
}

reference() {  # MODE LABEL [env…]
  local mode=$1 label=$2; shift 2
  env MODE=$mode ADDR=127.0.0.1:$PORT TWILIO_AUTH_TOKEN=$TOKEN PUBLIC_URL=https://bot.example.com/hook "$@" "$HOOKBENCH" > "$OUT/$label-r$ROUND.log" 2>&1 &
  local pid=$!
  wait_port $PORT
  measure "$label" $pid "http://127.0.0.1:$PORT/hook" https://bot.example.com/hook --concurrency "$CONC"
  # The same fixed rate as Integro's: what p99 this machine gives at 2,000/s.
  measure "$label-2000rps" $pid "http://127.0.0.1:$PORT/hook" https://bot.example.com/hook --rate 2000
  kill $pid; wait $pid 2>/dev/null || true
}

integro() {  # LABEL DATABASE_URL(empty for SQLite)
  local label=$1 dburl=$2 data=$WORK/$1-r$ROUND
  export INTEGRO_DATA_DIR=$data INTEGRO_LISTEN=127.0.0.1:$PORT INTEGRO_PUBLIC_URL=https://bot.example.com \
         INTEGRO_LOG=warn INTEGRO_WORKERS=0 INTEGRO_ADMIN_PASSWORD=bench-password-1
  if [[ -n $dburl ]]; then export INTEGRO_DATABASE_URL=$dburl; else unset INTEGRO_DATABASE_URL; fi
  local tenant bot account
  tenant=$("$INTEGRO" --json tenant create Bench | python3 -c 'import sys,json;print(json.load(sys.stdin)["id"])')
  bot=$("$INTEGRO" --json bot create --tenant "$tenant" --name Bench --fallback-reply "Thanks!" | python3 -c 'import sys,json;print(json.load(sys.stdin)["id"])')
  account=$("$INTEGRO" --json account add --tenant "$tenant" --bot "$bot" --kind twilio_whatsapp --name Bench \
      --credential account_sid=AC0000000000000000000000000000acc0 --credential auth_token=$TOKEN \
      --credential phone_number=+14155238886 | python3 -c 'import sys,json;print(json.load(sys.stdin)["account"]["id"])')
  "$INTEGRO" serve > "$OUT/$label-r$ROUND.log" 2>&1 &
  local pid=$!
  wait_port $PORT
  local path=/webhooks/twilio/$account
  measure "$label-saturation" $pid "http://127.0.0.1:$PORT$path" "https://bot.example.com$path" --concurrency "$CONC"
  measure "$label-2000rps" $pid "http://127.0.0.1:$PORT$path" "https://bot.example.com$path" --rate 2000
  kill -TERM $pid; wait $pid 2>/dev/null || true
  rm -rf "$data"
  unset INTEGRO_DATABASE_URL INTEGRO_DATA_DIR INTEGRO_LISTEN INTEGRO_PUBLIC_URL INTEGRO_LOG INTEGRO_WORKERS INTEGRO_ADMIN_PASSWORD
}

psql_admin() { psql "$PG_ADMIN_URL" -qAt -c "$1" >/dev/null 2>&1; }
want() { [[ -z ${CASES:-} || " $CASES " == *" $1 "* ]]; }

# run_case CASE: one ingest case, on a fresh server and database.
run_case() {
  case $1 in
    ref-ok) reference ok ref-ok ;;
    ref-sqlite-batch)
      reference sqlite-batch ref-sqlite-batch SQLITE_PATH=$WORK/ref.db SQLITE_SYNC=full BATCH_WINDOW_US=0
      rm -f "$WORK"/ref.db* ;;
    ref-pg-batch)
      psql_admin "DROP DATABASE IF EXISTS integro_bench_ref"; psql_admin "CREATE DATABASE integro_bench_ref"
      reference pg-batch ref-pg-batch PG_URL=$PG_BASE/integro_bench_ref BATCH_WINDOW_US=0 ;;
    integro-sqlite) integro integro-sqlite "" ;;
    integro-pg)
      psql_admin "DROP DATABASE IF EXISTS integro_bench"; psql_admin "CREATE DATABASE integro_bench"
      integro integro-pg "$PG_BASE/integro_bench?$PG_PLAIN" ;;
  esac
}
# pair REFERENCE INTEGRO: the selected ones of the two, in this round's order.
pair() {
  local cases=("$1" "$2")
  if (( ROUND % 2 == 0 )); then cases=("$2" "$1"); fi
  for c in "${cases[@]}"; do
    if want "$c"; then run_case "$c"; fi
  done
}
ingest_cases=0
for c in ref-ok ref-sqlite-batch ref-pg-batch integro-sqlite integro-pg; do
  if want "$c"; then ingest_cases=1; fi
done
for ROUND in $(seq 1 $(( ingest_cases ? ROUNDS : 0 ))); do
  echo "round $ROUND of $ROUNDS…"
  if want ref-ok; then run_case ref-ok; fi
  pair ref-sqlite-batch integro-sqlite
  pair ref-pg-batch integro-pg
done

# Only e2e cases selected: no ingest table.
if [[ -s $OUT/results.jsonl ]]; then
  python3 "$ROOT/bench/summarize.py" "$OUT/results.jsonl" "$(git rev-parse --short HEAD)" > "$OUT/summary.md"
else
  echo "commit \`$(git rev-parse --short HEAD)\`" > "$OUT/summary.md"
fi

# End to end: each case writes e2e.json, summary.md and e2e.svg in its folder.
e2e() {  # LABEL RATE [DATABASE_URL]
  local label=$1 rate=$2 dburl=${3:-}
  "$BENCH" e2e --integro "$INTEGRO" --rate "$rate" --duration "${E2E_DURATION:-60}" \
      --out "$OUT/$label-$rate" ${dburl:+--database-url "$dburl"} > /dev/null || true
  { echo; sed 's/^# /## '"$label"' at '"$rate"'\/s: /' "$OUT/$label-$rate/summary.md"; } >> "$OUT/summary.md"
}
for rate in ${E2E_RATES:-200 1000}; do
  if want e2e-sqlite; then e2e e2e-sqlite "$rate"; fi
  if want e2e-pg; then
    psql_admin "DROP DATABASE IF EXISTS integro_bench_e2e"; psql_admin "CREATE DATABASE integro_bench_e2e"
    e2e e2e-pg "$rate" "$PG_BASE/integro_bench_e2e?$PG_PLAIN"
  fi
done
cat "$OUT/summary.md"
