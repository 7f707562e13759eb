#!/usr/bin/env python3
"""Prints benches/group.sh's figures.

    group.py WORK_DIR EVENTS

WORK_DIR/results holds `ceiling WALL USER SYS RSS_KIB {json}`, `agents N T0 T1 E:U:S:M,...`
and `join T`; the agents' logs are WORK_DIR/<name>.log (`n<N>-<i>` draining, `rb-<i>` rebalancing).
"""
import datetime
import glob
import os
import re
import sys

work, events = sys.argv[1], int(sys.argv[2])
lines = [l.split() for l in open(os.path.join(work, "results"))]


def stamp(line):
    """The Unix time of a log line (`2026-12-07T03:57:30.184Z LEVEL ...`)."""
    t = datetime.datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ")
    return t.replace(tzinfo=datetime.timezone.utc).timestamp()


def log(name):
    return open(os.path.join(work, name + ".log")).read().splitlines()


ceiling = next(l for l in lines if l[0] == "ceiling")
c_wall = float(ceiling[1])
c_cpu = float(ceiling[2]) + float(ceiling[3])
print(f"group bench: {events:,} events on 12 partitions (~300-byte JSON), `frazil run` agents in one group, commit_interval 1s")
print(f"{'':28} {'events/s':>10} {'vs ceiling':>10} {'CPU µs/event':>13} {'vs ceiling':>10} {'peak RSS/agent':>15}")
print(f"{'fetch-only ceiling (1 client)':28} {events / c_wall:>10,.0f} {'1.00x':>10} {c_cpu / events * 1e6:>13.2f} {'1.00x':>10} {int(ceiling[4]) / 1024:>11.1f} MiB")
for l in (l for l in lines if l[0] == "agents"):
    n, t0, t1 = int(l[1]), float(l[2]), float(l[3])
    agents = [a.split(":") for a in l[4].strip(",").split(",")]
    cpu = sum(float(a[1]) + float(a[2]) for a in agents)
    rss = max(int(a[3]) for a in agents) / 1024
    # Reading starts with the first member's first assignment.
    first = min(stamp(next(x for x in log(f"n{n}-{i}") if "assigns this agent" in x)) for i in range(1, n + 1))
    rate = events / (t1 - first)
    print(f"{f'{n} agent(s)':28} {rate:>10,.0f} {rate / (events / c_wall):>9.2f}x {cpu / events * 1e6:>13.2f} {cpu / c_cpu:>9.2f}x {rss:>11.1f} MiB"
          f"   (drained {t1 - t0:.1f} s after start, {first - t0:.1f} s of it joining)")

join = float(next(l for l in lines if l[0] == "join")[1])
joined = log("rb-3")
# A partition comes with the first assignment ("starting at offset") or a later one.
took = re.compile(r"(\S+/\d+): (assigned to this agent; reading from offset|starting at offset)")
first = next((stamp(x) for x in joined if took.search(x)), None)
gaps = []
for x in joined:
    m = took.search(x)
    if not m:
        continue
    taken = stamp(x)
    # When its former owner stopped reading it (after the join).
    left = [stamp(y) for i in (1, 2) for y in log(f"rb-{i}") if f"{m.group(1)}: assigned to another member" in y and stamp(y) >= join]
    if left:
        gaps.append((taken - min(left), m.group(1)))
print(f"rebalance: a third agent joined two reading ~10,000 events/s; it read its first partition {first - join:.2f} s after it started"
      if first else "rebalance: the third agent was given no partition")
if gaps:
    worst = max(gaps)
    print(f"  partitions moved to it: {len(gaps)}; each unread between its former owner letting go and the new one reading: "
          f"median {sorted(g for g, _ in gaps)[len(gaps) // 2]:.2f} s, longest {worst[0]:.2f} s ({worst[1]})")
fenced = sum(sum("commit fenced" in x for x in log(f"rb-{i}")) for i in (1, 2, 3))
print(f"  commits fenced during the rebalance: {fenced} partition(s)")
