#!/usr/bin/env python3
"""The benchmark workload: realistic gateway telemetry, ~300 bytes of JSON per event, made
deterministically from the event's number, produced to a topic across its partitions.

    telemetry.py --brokers 127.0.0.1:9092 --topic telemetry --partitions 8 --count 1000000
    telemetry.py --sample 3          # print three events and their mean size
    telemetry.py ... --format avro   # the same events as Confluent-framed Avro (schema id 1)
    telemetry.py --avro-schema       # print that Avro schema
    telemetry.py ... --format protobuf  # ... as Confluent-framed Protobuf (schema id 2)
    telemetry.py --proto-schema      # print that .proto schema

The Avro and Protobuf forms carry the same fields with their natural types (`ts` a timestamp),
framed as a Confluent producer would (magic byte 0, the schema id, for Protobuf the message
indexes, then fastavro's or Google's protobuf package's binary encoding).

Every event: a device id, its site, two timestamps (epoch ms and RFC 3339), a sequence number,
twelve numeric readings, a nested status object, and on every 10th event an array of alarms.
"""
import argparse
import datetime
import json
import sys

SITES = ["north-yard", "south-pump", "east-mill", "west-dock", "substation-7"]
EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def event(i):
    ms = EPOCH_MS + i * 37
    e = {
        "device": f"gw-{i % 64:02d}-sensor-{i % 997:03d}",
        "site": SITES[i % len(SITES)],
        "ts": ms,
        "event_time": datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).isoformat(timespec="milliseconds"),
        "seq": i,
        "temp_c": round(18.0 + (i % 200) * 0.05, 2),
        "humidity": round(40.0 + (i % 300) * 0.1, 1),
        "pressure_hpa": round(1000.0 + (i % 50) * 0.3, 1),
        "voltage": round(229.0 + (i % 20) * 0.1, 1),
        "current_a": round((i % 150) * 0.01, 2),
        "power_w": (i * 7) % 3500,
        "vibration": round((i % 1000) / 1000.0, 3),
        "rpm": (i * 13) % 6000,
        "flow_lpm": round((i % 400) * 0.25, 2),
        "level_pct": i % 101,
        "battery_pct": 100 - i % 60,
        "rssi_dbm": -40 - i % 50,
        "status": {"code": i % 5, "ok": i % 5 != 4, "fw": f"2.{i % 4}.{i % 10}"},
    }
    if i % 10 == 0:
        e["alarms"] = [f"A{(i // 10) % 17}", f"B{(i // 10) % 5}"]
    return e


AVRO_SCHEMA = {
    "type": "record", "name": "Telemetry", "namespace": "bench",
    "fields": [
        {"name": "device", "type": "string"},
        {"name": "site", "type": "string"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "event_time", "type": "string"},
        {"name": "seq", "type": "long"},
    ] + [{"name": n, "type": "double"} for n in ("temp_c", "humidity", "pressure_hpa", "voltage", "current_a")]
      + [{"name": "power_w", "type": "long"}, {"name": "vibration", "type": "double"}, {"name": "rpm", "type": "long"},
         {"name": "flow_lpm", "type": "double"}]
      + [{"name": n, "type": "long"} for n in ("level_pct", "battery_pct", "rssi_dbm")]
      + [{"name": "status", "type": {"type": "record", "name": "Status", "fields": [
            {"name": "code", "type": "int"}, {"name": "ok", "type": "boolean"}, {"name": "fw", "type": "string"}]}},
         {"name": "alarms", "type": ["null", {"type": "array", "items": "string"}], "default": None}],
}


PROTO_SCHEMA = """syntax = "proto3";
package bench;

import "google/protobuf/timestamp.proto";

message Telemetry {
  string device = 1;
  string site = 2;
  google.protobuf.Timestamp ts = 3;
  string event_time = 4;
  int64 seq = 5;
  double temp_c = 6;
  double humidity = 7;
  double pressure_hpa = 8;
  double voltage = 9;
  double current_a = 10;
  int64 power_w = 11;
  double vibration = 12;
  int64 rpm = 13;
  double flow_lpm = 14;
  int64 level_pct = 15;
  int64 battery_pct = 16;
  int64 rssi_dbm = 17;
  Status status = 18;
  repeated string alarms = 19;

  message Status {
    int32 code = 1;
    bool ok = 2;
    string fw = 3;
  }
}
"""


def protobuf_encoder():
    """event number -> Confluent-framed Protobuf bytes (schema id 2, the file's first message)."""
    import os
    from google.protobuf import message_factory

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "check"))
    from protobuf_encode import compile_pool

    Telemetry = message_factory.GetMessageClass(compile_pool(PROTO_SCHEMA, {}).FindMessageTypeByName("bench.Telemetry"))

    def encode(i):
        e = event(i)
        m = Telemetry(**{k: v for k, v in e.items() if k not in ("ts", "status", "alarms")})
        m.ts.FromMilliseconds(e["ts"])
        m.status.code, m.status.ok, m.status.fw = e["status"]["code"], e["status"]["ok"], e["status"]["fw"]
        m.alarms.extend(e.get("alarms", []))
        return b"\0\0\0\0\2\0" + m.SerializeToString()

    return encode


def avro_encoder():
    """event number -> Confluent-framed Avro bytes."""
    import io
    import fastavro

    schema = fastavro.parse_schema(AVRO_SCHEMA)

    def encode(i):
        e = event(i)
        for n in ("temp_c", "humidity", "pressure_hpa", "voltage", "current_a", "vibration", "flow_lpm"):
            e[n] = float(e[n])
        e.setdefault("alarms", None)
        buf = io.BytesIO()
        buf.write(b"\0\0\0\0\1")
        fastavro.schemaless_writer(buf, schema, e)
        return buf.getvalue()

    return encode


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers")
    ap.add_argument("--topic", default="telemetry")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--start", type=int, default=0, help="the first event's seq")
    ap.add_argument("--sample", type=int, default=0)
    ap.add_argument("--format", choices=["json", "avro", "protobuf"], default="json")
    ap.add_argument("--avro-schema", action="store_true")
    ap.add_argument("--proto-schema", action="store_true")
    a = ap.parse_args()
    if a.avro_schema:
        print(json.dumps(AVRO_SCHEMA))
        return
    if a.proto_schema:
        print(PROTO_SCHEMA, end="")
        return
    if a.sample:
        sizes = [len(json.dumps(event(i), separators=(",", ":"))) for i in range(10_000)]
        for i in range(a.sample):
            print(json.dumps(event(i), separators=(",", ":")))
        print(f"mean size: {sum(sizes) / len(sizes):.0f} bytes")
        return

    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": a.brokers})
    if a.topic not in admin.list_topics(timeout=10).topics:
        for f in admin.create_topics([NewTopic(a.topic, a.partitions, 1)]).values():
            f.result()
    p = Producer({"bootstrap.servers": a.brokers, "linger.ms": 50, "batch.num.messages": 10000,
                  "queue.buffering.max.messages": 500000, "compression.type": "none"})
    encoders = {"avro": avro_encoder, "protobuf": protobuf_encoder}
    encode = encoders[a.format]() if a.format in encoders else lambda i: json.dumps(event(i), separators=(",", ":")).encode()
    for i in range(a.start, a.start + a.count):
        value = encode(i)
        while True:
            try:
                p.produce(a.topic, value=value, partition=i % a.partitions)
                break
            except BufferError:
                p.poll(0.05)
        if i % 20000 == 0:
            p.poll(0)
    left = p.flush(60)
    if left:
        sys.exit(f"telemetry.py: {left} events not acknowledged")
    print(f"telemetry.py: produced {a.count} events to {a.topic} ({a.partitions} partitions)", file=sys.stderr)


if __name__ == "__main__":
    main()
