#!/usr/bin/env python3
"""Turns benches/run.sh's raw lines into one table of medians and ratios (and optionally JSON).

    report.py RESULTS EVENTS ROUNDS [JSON_OUT]

RESULTS lines: `NAME WALL USER SYS PEAK_RSS_KIB [the command's JSON line]` for measured commands,
and `startup US`, `idle RSS_KIB THREADS ANON_RSS_KIB`, `size TARGET BYTES`, `spooled_files N`.
"""
import json
import statistics
import sys

path, events, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
json_out = sys.argv[4] if len(sys.argv) > 4 else ""

runs, extra, sizes = {}, {}, {}
for line in open(path):
    parts = line.split(maxsplit=5)
    name = parts[0]
    if name == "size":
        sizes[parts[1]] = int(parts[2])
    elif name in ("startup", "idle", "spooled_files"):
        extra[name] = parts[1:]
    else:
        wall, user, sys_, rss = float(parts[1]), float(parts[2]), float(parts[3]), int(parts[4]) * 1024
        out = {}
        if len(parts) > 5:
            try:
                out = json.loads(parts[5])
            except ValueError:
                pass
        runs.setdefault(name, []).append({"wall": wall, "cpu": user + sys_, "rss": rss, "out": out})


def med(name, key):
    return statistics.median(r[key] for r in runs[name])


def mib(b):
    return f"{b / 2**20:.1f} MiB"


fig = {"events": events, "rounds": rounds}
for name in ("ceiling", "frazil", "frazil_lean", "python_best", "python_naive", "ceiling_avro", "frazil_avro", "ceiling_proto", "frazil_proto",
             "wide64", "tenth",
             "status_backlog", "drain_backlog"):
    if name in runs:
        n = len(runs[name])
        ev = events if name in ("ceiling", "frazil", "frazil_lean", "python_best", "python_naive", "ceiling_avro", "frazil_avro",
                                "ceiling_proto", "frazil_proto") else None
        fig[name] = {
            "runs": n,
            "wall_s": med(name, "wall"),
            "cpu_s": med(name, "cpu"),
            "peak_rss_bytes": med(name, "rss"),
        }
        if ev:
            fig[name]["events_per_s"] = ev / med(name, "wall")
            fig[name]["cpu_us_per_event"] = med(name, "cpu") / ev * 1e6
if "ceiling" in runs:
    fig["ceiling"]["mb_per_s"] = statistics.median(r["out"].get("bytes", 0) / r["wall"] for r in runs["ceiling"]) / 1e6
if "encode" in runs:
    fig["encode"] = runs["encode"][0]["out"]
if "startup" in extra:
    fig["startup_to_first_fetch_s"] = int(extra["startup"][0]) / 1e6
if "idle" in extra:
    fig["idle_rss_bytes"] = int(extra["idle"][0]) * 1024
    fig["idle_threads"] = int(extra["idle"][1])
    if len(extra["idle"]) > 2:
        fig["idle_anon_rss_bytes"] = int(extra["idle"][2]) * 1024
if "spooled_files" in extra:
    fig["recovery_files"] = extra["spooled_files"][0]
fig["binary_bytes"] = sizes

print(f"\nfrazil benchmark: {events:,} telemetry events (~360 B JSON) over 8 partitions, medians of {rounds} rounds")
print("| | wall | events/s | CPU (user+sys) | CPU per event | peak RSS |")
print("|---|---|---|---|---|---|")
labels = {"ceiling": "fetch-only ceiling (rskafka, discard)", "frazil": "frazil flush (decode, spool, upload, commit)",
          "python_best": "Python: confluent-kafka + pyarrow.json + pyiceberg", "python_naive": "Python: json.loads + from_pylist + pyiceberg",
          "ceiling_avro": "Avro (~145 B): fetch-only ceiling", "frazil_avro": "Avro (~145 B): frazil flush",
          "ceiling_proto": "Protobuf (~185 B): fetch-only ceiling", "frazil_proto": "Protobuf (~185 B): frazil flush"}
for name, label in labels.items():
    if name in fig:
        f = fig[name]
        print(f'| {label} | {f["wall_s"]:.1f} s | {f["events_per_s"]:,.0f} | {f["cpu_s"]:.2f} s | {f["cpu_us_per_event"]:.2f} µs | {mib(f["peak_rss_bytes"])} |')
if "encode" in fig:
    e = fig["encode"]
    print(f'| raw encode in one process (arrow-json, parquet zstd 3) | | | | {e["json_to_arrow_us"] + e["arrow_to_parquet_us"]:.2f} µs '
          f'({e["json_to_arrow_us"]:.2f} + {e["arrow_to_parquet_us"]:.2f}) | |')

print("\nRatios, from the same run:")
if "frazil" in fig and "ceiling" in fig:
    print(f'- frazil wall throughput / fetch-only ceiling: {fig["frazil"]["events_per_s"] / fig["ceiling"]["events_per_s"]:.2f}')
if "frazil" in fig and "encode" in fig:
    raw = fig["encode"]["json_to_arrow_us"] + fig["encode"]["arrow_to_parquet_us"]
    print(f'- frazil CPU per event / raw encode: {fig["frazil"]["cpu_us_per_event"] / raw:.2f}')
if "frazil_avro" in fig and "ceiling_avro" in fig:
    print(f'- Avro: frazil wall throughput / fetch-only ceiling: {fig["frazil_avro"]["events_per_s"] / fig["ceiling_avro"]["events_per_s"]:.2f}')
if "frazil_proto" in fig and "ceiling_proto" in fig:
    print(f'- Protobuf: frazil wall throughput / fetch-only ceiling: {fig["frazil_proto"]["events_per_s"] / fig["ceiling_proto"]["events_per_s"]:.2f}')
if "frazil_proto" in fig and "frazil_avro" in fig:
    print(f'- Protobuf / Avro: frazil CPU per event {fig["frazil_proto"]["cpu_us_per_event"] / fig["frazil_avro"]["cpu_us_per_event"]:.2f}')
for base in ("python_best", "python_naive"):
    if "frazil" in fig and base in fig:
        print(f'- frazil / {base}: CPU per event {fig["frazil"]["cpu_us_per_event"] / fig[base]["cpu_us_per_event"]:.2f}, '
              f'peak RSS {fig["frazil"]["peak_rss_bytes"] / fig[base]["peak_rss_bytes"]:.2f}')

print("\nFootprint:")
if "idle_rss_bytes" in fig:
    anon = f' ({mib(fig["idle_anon_rss_bytes"])} anonymous; the rest is the mapped binary and libraries)' if "idle_anon_rss_bytes" in fig else ""
    print(f'- `frazil run` idle: {mib(fig["idle_rss_bytes"])} RSS{anon}, {fig["idle_threads"]} threads; '
          f'start-up to first fetch {fig["startup_to_first_fetch_s"] * 1000:.0f} ms')
if "frazil" in fig:
    print(f'- peak RSS, 8 partitions: {mib(fig["frazil"]["peak_rss_bytes"])}')
if "frazil_lean" in fig:
    lean = fig["frazil_lean"]
    ceiling = f', {lean["events_per_s"] / fig["ceiling"]["events_per_s"]:.2f} of the ceiling' if "ceiling" in fig else ""
    print(f'- peak RSS, 8 partitions, lean settings (fetch_max_bytes 1 MiB, buffer_max_bytes 2 MiB): {mib(lean["peak_rss_bytes"])}; '
          f'{lean["cpu_us_per_event"]:.2f} us CPU per event{ceiling}')
if "tenth" in fig and "frazil" in fig:
    print(f'- peak RSS with {events // 10:,} events pending: {mib(fig["tenth"]["peak_rss_bytes"])}, against '
          f'{mib(fig["frazil"]["peak_rss_bytes"])} with {events:,}')
if "wide64" in fig:
    print(f'- peak RSS, 64 partitions ({events // 4:,} events): {mib(fig["wide64"]["peak_rss_bytes"])}')
if "status_backlog" in fig:
    print(f'- {fig.get("recovery_files", "?")} spooled files: `status --offline` {fig["status_backlog"]["wall_s"]:.2f} s, '
          f'drained by `flush` in {fig["drain_backlog"]["wall_s"]:.1f} s (peak RSS {mib(fig["drain_backlog"]["peak_rss_bytes"])})')
for t, b in sorted(sizes.items()):
    print(f"- binary {t}: {mib(b)}")

# The footprint targets (issue 23), each beside what this run measured. Idle CPU and wake-ups are
# benches/idle.sh's, which prints them beside their targets the same way.
MIB = 1024 * 1024
targets = []  # (figure, measured text, target text, verdict)


def against(figure, value, limit, shown, unit_text, higher_is_better=False):
    met = value >= limit if higher_is_better else value <= limit
    if met:
        verdict = "met"
    elif higher_is_better:
        verdict = f"missed: {limit / value:.2f}x short"
    else:
        verdict = f"missed by {shown(value - limit)} ({value / limit:.2f}x)"
    sign = ">=" if higher_is_better else "<="
    targets.append((figure, shown(value), f"{sign} {unit_text}", verdict))


as_mib = lambda b: f"{b / MIB:.1f} MiB"
if "frazil" in fig and "ceiling" in fig:
    ratio = fig["frazil"]["events_per_s"] / fig["ceiling"]["events_per_s"]
    against("wall throughput / fetch-only ceiling", ratio, 0.9, lambda v: f"{v:.2f}", "0.90", higher_is_better=True)
if "frazil" in fig:
    against("peak RSS, 8 partitions", fig["frazil"]["peak_rss_bytes"], 24 * MIB, as_mib, "24 MiB")
if "wide64" in fig:
    against("peak RSS, 64 partitions", fig["wide64"]["peak_rss_bytes"], 32 * MIB, as_mib, "32 MiB")
if "idle_rss_bytes" in fig:
    against("idle RSS", fig["idle_rss_bytes"], 8 * MIB, as_mib, "8 MiB")
for t in ("aarch64-unknown-linux-gnu", "aarch64-unknown-linux-musl"):
    if t in sizes:
        against(f"stripped binary, {t}", sizes[t], 10 * MIB, as_mib, "10 MiB")
if targets:
    print("\nAgainst the footprint targets:")
    print("| figure | measured | target | |")
    print("|---|---|---|---|")
    for row in targets:
        print("| " + " | ".join(row) + " |")
    fig["targets"] = [dict(zip(("figure", "measured", "target", "verdict"), r)) for r in targets]

if json_out:
    with open(json_out, "w") as f:
        json.dump(fig, f, indent=2)
    print(f"\nJSON: {json_out}")
