#!/usr/bin/env python3
"""Turns results.jsonl from bench/run.sh into a Markdown summary with ratios."""
import json, platform, subprocess, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
commit = sys.argv[2] if len(sys.argv) > 2 else "?"
by = {r["label"]: r for r in rows}
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
print(f"# Webhook ingest benchmark\n\ncommit `{commit}` · {platform.node()} · {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores · {cpu}\n")
print("| case | mode | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | errors | server CPU s | peak RSS MiB |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    l = r["latency_ms"]
    print(f"| {r['label']} | {r['mode']} | {r['throughput_rps']:.0f} | {l['p50']:.2f} | {l['p90']:.2f} | {l['p99']:.2f} | {l['p999']:.2f} | {r['errors']} | {r['server_cpu_s']} | {r['server_peak_rss_kib']/1024:.1f} |")
print()
def ratio(a, b):
    if a in by and b in by and by[b]["throughput_rps"]:
        print(f"- {a} / {b}: **{by[a]['throughput_rps'] / by[b]['throughput_rps']:.0%}** of the reference throughput")
ratio("integro-sqlite-saturation", "ref-sqlite-batch")
ratio("integro-pg-saturation", "ref-pg-batch")
ratio("integro-sqlite-saturation", "ref-ok")
def p99(a, b):
    if a in by and b in by:
        print(f"- {a}: p99 **{by[a]['latency_ms']['p99']:.1f} ms**, against {by[b]['latency_ms']['p99']:.1f} ms for {b}")
p99("integro-sqlite-2000rps", "ref-sqlite-batch-2000rps")
p99("integro-pg-2000rps", "ref-pg-batch-2000rps")
