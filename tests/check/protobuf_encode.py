#!/usr/bin/env python3
"""Confluent-framed Protobuf messages made by an independent encoder (Google's protobuf package,
with the descriptors compiled by grpcio-tools' protoc).

  protobuf_encode.py SPEC OUT

SPEC is JSON: {"schemas": {"<id>": {"text": "<.proto>", "imports": {"<import path>": "<.proto>"}}},
"messages": [{"schema_id": N, "type": "<full message name>", "value": {...}}]}. A value is in
Protobuf's JSON mapping (json_format.ParseDict: camelCase or field names, 64-bit integers as
strings, Timestamps as RFC 3339). OUT gets one line per message: the base64 of magic byte 0, the
4-byte big-endian schema id, the message indexes, and the serialized message.

The indexes name the message type within its file: the top-level message, then each nested one.
Map fields' entry types are not counted (as Confluent's Java serializer and the registry count);
they are zigzag varints, count first, and [0] is the single byte 0 (Confluent's MessageIndexes).
"""

import base64
import json
import os
import struct
import sys
import tempfile

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from grpc_tools import protoc
import grpc_tools

ROOT = "frazil-test-schema.proto"


def compile_pool(text, imports):
    """A descriptor pool holding the schema's file and everything it imports."""
    with tempfile.TemporaryDirectory() as d:
        for name, body in [(ROOT, text)] + list(imports.items()):
            path = os.path.join(d, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(body)
        out = os.path.join(d, "set.pb")
        well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
        args = ["protoc", f"-I{d}", f"-I{well_known}", "--include_imports", f"--descriptor_set_out={out}", ROOT]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on the schema:\n{text}")
        files = descriptor_pb2.FileDescriptorSet()
        with open(out, "rb") as f:
            files.ParseFromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for fd in files.file:
        pool.Add(fd)
    return pool


def indexes(desc):
    """The message indexes of `desc` in its file, skipping map entry types."""
    path = []
    while desc is not None:
        parent = desc.containing_type
        siblings = parent.nested_types if parent is not None else list(desc.file.message_types_by_name.values())
        siblings = [m for m in siblings if not m.GetOptions().map_entry]
        path.append(siblings.index(desc))
        desc = parent
    return list(reversed(path))


def varint(v, out):
    v = (v << 1) ^ (v >> 63)  # zigzag, as Kafka's ByteUtils.writeVarint
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def frame(schema_id, path, body):
    out = bytearray(b"\0" + struct.pack(">I", schema_id))
    if path == [0]:
        out.append(0)
    else:
        varint(len(path), out)
        for i in path:
            varint(i, out)
    return bytes(out) + body


def main():
    spec_path, out_path = sys.argv[1], sys.argv[2]
    with open(spec_path) as f:
        spec = json.load(f)
    pools = {int(i): compile_pool(s["text"], s.get("imports", {})) for i, s in spec["schemas"].items()}
    with open(out_path, "w") as out:
        for m in spec["messages"]:
            desc = pools[m["schema_id"]].FindMessageTypeByName(m["type"])
            msg = message_factory.GetMessageClass(desc)()
            json_format.ParseDict(m["value"], msg)
            framed = frame(m["schema_id"], indexes(desc), msg.SerializeToString())
            out.write(base64.b64encode(framed).decode() + "\n")


if __name__ == "__main__":
    main()
