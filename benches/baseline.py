#!/usr/bin/env python3
"""What a small team would write instead of frazil: a Python consumer that reads a topic to its
end, batches the JSON values into pyarrow tables and appends them to an Iceberg table with
pyiceberg, in a fixed number of commits.

    baseline.py --form best  ...   # pyarrow.json parses each batch (the fast way)
    baseline.py --form naive ...   # json.loads per event + pa.Table.from_pylist (the obvious way)

Prints one JSON line: events, wall seconds, CPU seconds (user + sys of this process), peak RSS
in bytes, and the number of commits.
"""
import argparse
import io
import json
import resource
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--form", choices=["best", "naive"], required=True)
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--catalog", required=True)
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--table", required=True)
    ap.add_argument("--commits", type=int, default=10, help="appends over the whole topic")
    ap.add_argument("--s3-endpoint", required=True)
    ap.add_argument("--s3-access-key", required=True)
    ap.add_argument("--s3-secret-key", required=True)
    ap.add_argument("--s3-region", default="us-east-1")
    a = ap.parse_args()
    started = time.monotonic()

    import pyarrow as pa
    import pyarrow.json as pj
    from confluent_kafka import Consumer, TopicPartition
    from pyiceberg.catalog import load_catalog

    consumer = Consumer({"bootstrap.servers": a.brokers, "group.id": "baseline-" + a.table,
                         "enable.auto.commit": False, "fetch.max.bytes": 4 << 20})
    meta = consumer.list_topics(a.topic, timeout=10).topics[a.topic]
    ends = {}
    for p in meta.partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(a.topic, p), timeout=10)
        if high > low:
            ends[p] = high
    total = sum(ends.values())
    per_commit = max(1, -(-total // a.commits))
    consumer.assign([TopicPartition(a.topic, p, 0) for p in ends])

    catalog = load_catalog("baseline", type="rest", uri=a.catalog, **{
        "s3.endpoint": a.s3_endpoint, "s3.access-key-id": a.s3_access_key,
        "s3.secret-access-key": a.s3_secret_key, "s3.region": a.s3_region, "s3.path-style-access": "true"})
    try:
        catalog.create_namespace(a.namespace)
    except Exception:
        pass
    table = None

    def to_arrow(values):
        if a.form == "best":
            return pj.read_json(io.BytesIO(b"\n".join(values)))
        return pa.Table.from_pylist([json.loads(v) for v in values])

    pending, events, commits = [], 0, 0
    done = set()
    while len(done) < len(ends):
        for m in consumer.consume(num_messages=10000, timeout=1.0):
            if m.error():
                continue
            pending.append(m.value())
            if m.offset() + 1 >= ends[m.partition()]:
                done.add(m.partition())
        if len(pending) >= per_commit or (len(done) == len(ends) and pending):
            batch = to_arrow(pending)
            if table is None:
                table = catalog.create_table((a.namespace, a.table), schema=batch.schema)
            elif not set(batch.schema.names) <= set(table.schema().column_names):
                # A batch from partitions whose events never had some field made the table
                # without it: grow it, as frazil does.
                with table.update_schema() as update:
                    update.union_by_name(batch.schema)
            table.append(batch)
            events += len(pending)
            commits += 1
            pending = []
    consumer.close()

    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"form": a.form, "events": events, "wall": time.monotonic() - started,
                      "cpu": usage.ru_utime + usage.ru_stime, "peak_rss": usage.ru_maxrss * 1024,
                      "commits": commits}))


if __name__ == "__main__":
    sys.exit(main())
