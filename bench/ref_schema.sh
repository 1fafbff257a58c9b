#!/usr/bin/env bash
# The reference server `sqlite-batch` of ../shared/bench-reference, given more
# to store per webhook: each variant in bench/ref-schema/*.sql runs on the
# reference's one SQLite connection after it creates its table. Measured as
# bench/run.sh measures Integro's SQLite case: 10 s at saturation, then 10 s
# at 2,000 webhooks/s on the same database. It answers: what does this
# machine give at 2,000/s when the commit writes what the issue asks for?
#
# usage: bench/ref_schema.sh            (env: VARIANTS, default "plain dedup integro";
#                                        ROUNDS, default 2)
# Writes bench/results/<date>-ref-schema/results.jsonl and summary.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VARIANTS=${VARIANTS:-plain dedup integro}
ROUNDS=${ROUNDS:-2}
OUT=$ROOT/bench/results/$(date -u +%Y-%m-%dT%H%M%SZ)-ref-schema
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

cargo build --release -q -p integro-bench
BENCH=$ROOT/target/release/integro-bench
# A copy of the reference, with one hook: EXTRA_SQL runs on its SQLite
# connection once the table exists. Nothing else of it changes.
cp -r "$ROOT/../shared/bench-reference/hookbench" "$WORK/hookbench"
python3 - "$WORK/hookbench/src/main.rs" <<'PY'
import sys
path = sys.argv[1]
src = open(path).read()
anchor = '    .expect("create table");\n    pool\n}\n\nasync fn open_pg'
if src.count(anchor) != 1:
    sys.exit("the reference's open_sqlite changed: update bench/ref_schema.sh")
hook = ('    .expect("create table");\n'
        '    if let Ok(extra) = std::env::var("EXTRA_SQL") {\n'
        '        sqlx::raw_sql(&extra).execute(&pool).await.expect("EXTRA_SQL");\n'
        '    }\n    pool\n}\n\nasync fn open_pg')
open(path, "w").write(src.replace(anchor, hook))
PY
(cd "$WORK/hookbench" && CARGO_TARGET_DIR=${REF_SCHEMA_TARGET:-/tmp/integro-hookbench-schema-target} cargo build --release -q)
HOOKBENCH=${REF_SCHEMA_TARGET:-/tmp/integro-hookbench-schema-target}/release/hookbench
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
PORT=3000

for round in $(seq 1 "$ROUNDS"); do
  for variant in $VARIANTS; do
    db=$WORK/ref.db
    env MODE=sqlite-batch ADDR=127.0.0.1:$PORT TWILIO_AUTH_TOKEN=$TOKEN PUBLIC_URL=https://bot.example.com/hook \
        SQLITE_PATH="$db" SQLITE_SYNC=full BATCH_WINDOW_US=0 EXTRA_SQL="$(cat "$ROOT/bench/ref-schema/$variant.sql")" \
        "$HOOKBENCH" > "$OUT/$variant-r$round.log" 2>&1 &
    pid=$!
    wait_port $PORT
    gen() { "$BENCH" ingest --url http://127.0.0.1:$PORT/hook --sign-url https://bot.example.com/hook --token $TOKEN --duration 10 "$@"; }
    saturation=$(gen --concurrency 64 --label "$variant-saturation")
    c0=$(cpu_ticks $pid); w0=$(written_bytes $pid)
    fixed=$(gen --rate 2000 --label "$variant-2000rps")
    c1=$(cpu_ticks $pid); w1=$(written_bytes $pid)
    kill $pid; wait $pid 2>/dev/null || true
    size=$(stat -c %s "$db")
    rm -f "$db" "$db-wal" "$db-shm"
    python3 - "$variant" "$round" "$c0" "$c1" "$w0" "$w1" "$size" "$(getconf CLK_TCK)" "$saturation" "$fixed" <<'PY' | tee -a "$OUT/results.jsonl"
import json, sys
variant, rnd, c0, c1, w0, w1, size, tck = sys.argv[1:9]
sat, fixed = json.loads(sys.argv[9]), json.loads(sys.argv[10])
n = fixed["ok"]
print(json.dumps({
    "variant": variant, "round": int(rnd),
    "saturation_rps": round(sat["throughput_rps"]), "saturation_p99_ms": sat["latency_ms"]["p99"],
    "rate2000_p50_ms": fixed["latency_ms"]["p50"], "rate2000_p99_ms": fixed["latency_ms"]["p99"],
    "rate2000_p999_ms": fixed["latency_ms"]["p999"],
    "rate2000_cpu_us_per_webhook": round((int(c1) - int(c0)) / int(tck) * 1e6 / n),
    "rate2000_written_kb_per_webhook": round((int(w1) - int(w0)) / 1024 / n, 1),
    "rate2000_steal_pct": round(fixed["machine"]["steal_pct"], 2),
    "database_bytes": int(size), "errors": sat["errors"] + fixed["errors"],
}))
PY
  done
done

python3 - "$OUT/results.jsonl" "$(git rev-parse --short HEAD)" > "$OUT/summary.md" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"# The reference `sqlite-batch` with more to store (commit `{sys.argv[2]}`)\n")
print("| variant | round | saturation req/s | p99 at 2,000/s | p99.9 | CPU a webhook | written a webhook | steal |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['variant']} | {r['round']} | {r['saturation_rps']:,} | {r['rate2000_p99_ms']:.1f} ms | "
          f"{r['rate2000_p999_ms']:.1f} ms | {r['rate2000_cpu_us_per_webhook']} µs | "
          f"{r['rate2000_written_kb_per_webhook']} KB | {r['rate2000_steal_pct']}% |")
PY
cat "$OUT/summary.md"
