#!/usr/bin/env python3
"""Turns results.jsonl from bench/run.sh into a Markdown summary with ratios.

With several rounds (bench/run.sh's ROUNDS), each round's Integro figure is
set against its reference measured beside it, and the summary gives the
median of those ratios with every round's value: the machine's speed drifts
between minutes, so a ratio of two distant runs says less."""
import json, platform, statistics, subprocess, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
commit = sys.argv[2] if len(sys.argv) > 2 else "?"
for r in rows:
    r.setdefault("round", 1)
by = {(r["label"], r["round"]): r for r in rows}
rounds = sorted({r["round"] for r in rows})
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
print(f"# Webhook ingest benchmark\n\ncommit `{commit}` · {platform.node()} · {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores · {cpu}\n")
print("| round | case | mode | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | errors | server CPU s | peak RSS MiB | steal % |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
def steal(r):
    """The share of the machine's CPU time the host took during the measure."""
    m = r.get("machine")
    return f"{m['steal_pct']:.0f}" if m else "?"


for r in rows:
    l = r["latency_ms"]
    print(f"| {r['round']} | {r['label']} | {r['mode']} | {r['throughput_rps']:.0f} | {l['p50']:.2f} | {l['p90']:.2f} | {l['p99']:.2f} | {l['p999']:.2f} | {r['errors']} | {r['server_cpu_s']} | {r['server_peak_rss_kib']/1024:.1f} | {steal(r)} |")
print()


def paired(a, b, value):
    """(a's value, b's value) for each round that measured both."""
    return [(value(by[(a, n)]), value(by[(b, n)])) for n in rounds if (a, n) in by and (b, n) in by]


def each(values, fmt):
    return ", ".join(fmt(v) for v in values)


def ratio(a, b):
    pairs = paired(a, b, lambda r: r["throughput_rps"])
    ratios = [x / y for x, y in pairs if y]
    if not ratios:
        return
    line = f"- {a} / {b}: **{statistics.median(ratios):.0%}** of the reference throughput"
    if len(ratios) > 1:
        line += f" (median of {len(ratios)} rounds: {each(ratios, lambda v: f'{v:.0%}')})"
    print(line)


def p99(a, b):
    pairs = paired(a, b, lambda r: r["latency_ms"]["p99"])
    if not pairs:
        return
    ours, theirs = [x for x, _ in pairs], [y for _, y in pairs]
    line = f"- {a}: p99 **{statistics.median(ours):.1f} ms**, against {statistics.median(theirs):.1f} ms for {b}"
    if len(pairs) > 1:
        line += f" (per round: {each(ours, lambda v: f'{v:.1f}')} against {each(theirs, lambda v: f'{v:.1f}')})"
    print(line)


ratio("integro-sqlite-saturation", "ref-sqlite-batch")
ratio("integro-pg-saturation", "ref-pg-batch")
ratio("integro-sqlite-saturation", "ref-ok")
p99("integro-sqlite-2000rps", "ref-sqlite-batch-2000rps")
p99("integro-pg-2000rps", "ref-pg-batch-2000rps")
