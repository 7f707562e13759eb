#!/usr/bin/env python3
"""Produces sample telemetry events (JSON objects) to a Kafka topic, creating it if needed.

    produce.py --brokers 127.0.0.1:9092 --topic telemetry --partitions 4 --count 1000 [--start 0]
"""
import argparse
import json
import sys

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic


def event(i):
    return {
        "id": i,
        "device": f"dev-{i % 50}",
        "site": None if i % 7 == 0 else f"site-{i % 3}",
        "temp": (i % 1000) / 10.0 + 0.25,
        "ok": i % 2 == 0,
        "readings": [i * 0.5, 1.5, -2.0],
        "status": {"code": i % 4, "msg": None if i % 3 == 0 else "fine"},
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--start", type=int, default=0)
    a = ap.parse_args()

    admin = AdminClient({"bootstrap.servers": a.brokers})
    if a.topic not in admin.list_topics(timeout=10).topics:
        for f in admin.create_topics([NewTopic(a.topic, a.partitions, 1)]).values():
            f.result()
    p = Producer({"bootstrap.servers": a.brokers, "linger.ms": 20})
    for i in range(a.start, a.start + a.count):
        p.produce(a.topic, key=f"key-{i}".encode(), value=json.dumps(event(i)).encode(), partition=i % a.partitions)
        if i % 10000 == 0:
            p.poll(0)
    left = p.flush(30)
    if left:
        sys.exit(f"produce.py: {left} events not acknowledged")
    print(f"produced {a.count} events to {a.topic} ({a.partitions} partitions)")


if __name__ == "__main__":
    main()
