#!/usr/bin/env bash
# The fuzz targets (fuzz/, a workspace of its own) on the stable toolchain:
# built with libFuzzer's coverage instrumentation (the flags `cargo fuzz`
# passes, without a sanitizer, which would need nightly), then each run for a
# fixed number of inputs from a fixed seed and an empty corpus. Fails when a
# target does not build or an input makes it crash; the input is then left
# in fuzz/artifacts/<target>/ (fuzz/README.md says how to replay it).
#
#   bash .ci/fuzz.sh            env: FUZZ_RUNS (inputs per target, default 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${FUZZ_RUNS:-100000}"
host=$(rustc -vV | sed -n 's/^host: //p')

# fuzz/Cargo.lock is not committed: start from the versions the main
# workspace is tested with (cargo drops what fuzz/ does not use and adds
# libFuzzer's crates).
cp Cargo.lock fuzz/Cargo.lock
# An explicit --target keeps the flags off build scripts and proc macros,
# which run on the host and must not call into libFuzzer.
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing" \
    cargo build --manifest-path fuzz/Cargo.toml --bins --target "$host"

corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
for source in fuzz/fuzz_targets/*.rs; do
    target=$(basename "$source" .rs)
    mkdir -p "fuzz/artifacts/$target" "$corpus/$target"
    echo "fuzz: $target, $RUNS inputs"
    if ! "fuzz/target/$host/debug/$target" -seed=20261122 -runs="$RUNS" \
            -artifact_prefix="fuzz/artifacts/$target/" "$corpus/$target" >"$corpus/$target.log" 2>&1; then
        tail -n 60 "$corpus/$target.log" >&2
        echo "fuzz: $target crashed; the input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
    grep -E '^Done|^#[0-9]+ +DONE' "$corpus/$target.log" || true
done
