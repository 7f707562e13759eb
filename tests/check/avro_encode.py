#!/usr/bin/env python3
"""Confluent-framed Avro messages made by an independent encoder (fastavro).

  avro_encode.py SPEC OUT

SPEC is JSON: {"schemas": {"<id>": <Avro schema>}, "messages": [{"schema_id": N, "record": {...}}]}.
Record values are JSON; a `decimal` value is given as a string ("12.30") and becomes a Decimal, a
uuid as its text. OUT gets one line per message: the base64 of magic byte 0, the 4-byte big-endian
schema id, and the record as fastavro's schemaless (binary) encoding.
"""

import base64
import decimal
import io
import json
import struct
import sys

import fastavro


def prepare(schema, value, named):
    """`value` with decimal strings made Decimals, following `schema`."""
    if value is None:
        return None
    if isinstance(schema, str):
        return prepare(named[schema], value, named) if schema in named else value
    if isinstance(schema, list):
        # A union: pick the first non-null branch that takes the value.
        for branch in schema:
            if branch != "null":
                return prepare(branch, value, named)
        return value
    t = schema["type"]
    if schema.get("logicalType") == "decimal":
        return decimal.Decimal(value)
    if t in ("record", "error"):
        named[schema["name"]] = schema
        return {f["name"]: prepare(f["type"], value.get(f["name"]), named) for f in schema["fields"] if f["name"] in value}
    if t == "array":
        return [prepare(schema["items"], v, named) for v in value]
    if t == "map":
        return {k: prepare(schema["values"], v, named) for k, v in value.items()}
    if t in ("enum", "fixed"):
        named[schema["name"]] = schema
    return value


def main():
    spec_path, out_path = sys.argv[1], sys.argv[2]
    with open(spec_path) as f:
        spec = json.load(f)
    parsed = {int(i): (s, fastavro.parse_schema(s)) for i, s in spec["schemas"].items()}
    with open(out_path, "w") as out:
        for m in spec["messages"]:
            raw, schema = parsed[m["schema_id"]]
            buf = io.BytesIO()
            buf.write(b"\0" + struct.pack(">I", m["schema_id"]))
            fastavro.schemaless_writer(buf, schema, prepare(raw, m["record"], {}))
            out.write(base64.b64encode(buf.getvalue()).decode() + "\n")


if __name__ == "__main__":
    main()
