#!/usr/bin/env python3
"""Writes the seed inputs of the decode_protobuf fuzz target into corpus/decode_protobuf/ (seed_*),
encoded by Google's protobuf package (an encoder independent of frazil) with the target's schema.
Run with the test venv's python: ~/.cache/frazil/venv/bin/python fuzz/protobuf_seeds.py
Each seed is records of [kind byte][length byte][bytes]; kind 0, 1, 2 = a body of
plant.v1.Reading, Reading.Inner, Other; kind 3 = the whole frame after the magic byte."""

import os
import re
import struct
import sys

from google.protobuf import json_format, message_factory

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "check"))
from protobuf_encode import compile_pool  # noqa: E402

SRC = open(os.path.join(HERE, "..", "src", "decode", "fuzz.rs")).read()
OUT = os.path.join(HERE, "corpus", "decode_protobuf")


def text(name):
    return re.search(r'pub const %s: &str = r#"(.*?)"#;' % name, SRC, re.S).group(1)


POOL = compile_pool(text("PROTO_READING"), {"plant/v1/site.proto": text("PROTO_SITE")})


def body(type_name, value):
    msg = message_factory.GetMessageClass(POOL.FindMessageTypeByName(type_name))()
    json_format.ParseDict(value, msg, descriptor_pool=POOL)
    return msg.SerializeToString()


def rec(kind, data):
    assert len(data) < 256, len(data)
    return bytes([kind, len(data)]) + data


FULL = body("plant.v1.Reading", {
    "device": "gw-01", "at": "2023-11-14T22:13:20.123456789Z", "tempC": 21.5, "counter": "18446744073709551615",
    "delta": -3, "seq": "42", "alarms": ["A1", "B2"], "gauges": {"rpm": 1200, "flow": 3.5}, "status": "STATUS_OK",
    "site": {"name": "north", "position": [1.5, -2]}, "battery": "87", "extra": {"note": "ok", "n": 2},
    "payload": {"@type": "type.googleapis.com/plant.v1.Other", "flag": True}, "line": 7,
    "inner": {"label": "top", "children": [{"label": "kid"}]}, "raw": "AP8=", "code": 4000000000})
SPARSE = body("plant.v1.Reading", {"device": "gw-02", "gateway": "g9"})
INNER = body("plant.v1.Reading.Inner", {"label": "top", "children": [{"label": "kid", "children": [{}]}]})
OTHER = body("plant.v1.Other", {"flag": True})
FRAMED = struct.pack(">I", 1) + b"\x00" + SPARSE  # indexes [0] as the single byte 0
UNKNOWN = struct.pack(">I", 2) + b"\x00" + SPARSE

SEEDS = {
    "seed_reading": rec(0, FULL) + rec(0, SPARSE),
    "seed_three_types": rec(0, SPARSE) + rec(1, INNER) + rec(2, OTHER),
    "seed_frames": rec(3, FRAMED) + rec(3, UNKNOWN) + rec(0, FULL[:-3]),
    "seed_schema": text("PROTO_READING").strip().encode(),
}

os.makedirs(OUT, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
print("wrote", ", ".join(sorted(SEEDS)), "to", OUT)
