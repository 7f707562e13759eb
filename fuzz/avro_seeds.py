#!/usr/bin/env python3
"""Writes the seed inputs of the decode_avro fuzz target into corpus/decode_avro/ (seed_*),
encoded by fastavro (an encoder independent of frazil) with the target's two writer schemas.
Run with the test venv's python: ~/.cache/frazil/venv/bin/python fuzz/avro_seeds.py
Each seed is records of [schema byte][length byte][body]; schema byte 0, 1, 2 = ids 1, 2, 3
(3: unknown to the registry)."""

import datetime
import decimal
import io
import json
import os
import re
import uuid

import fastavro

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = open(os.path.join(HERE, "..", "src", "decode", "fuzz.rs")).read()
OUT = os.path.join(HERE, "corpus", "decode_avro")


def schema(name):
    m = re.search(r'pub const %s: &str = r#"(.*?)"#;' % name, SRC, re.S)
    return json.loads(m.group(1))


def record(i, second=False):
    r = {
        "i": i, "l": -i * 1000, "f": 1.5, "d": -2.25, "b": i % 2 == 0, "s": "dev-%d" % i, "y": b"\x00\x01",
        "x": b"abcd", "e": "ABC"[i % 3], "a": [1, -2, i], "m": {"k": "v%d" % i},
        "n": None if i % 2 else {"v": 0.5}, "o": None if i % 3 == 0 else "x",
        "day": datetime.date(2024, 5, 6),
        "t": datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.timezone.utc),
        "tm": datetime.time(7, 8, 9, 123000),
        "dec": decimal.Decimal("1234.56") * (1 if i % 2 else -1),
        "u": str(uuid.UUID(int=i)),
    }
    if second and r["n"] is not None:
        r["n"]["w"] = "new"
    return r


def body(parsed, r):
    b = io.BytesIO()
    fastavro.schemaless_writer(b, parsed, r)
    return b.getvalue()


def main():
    w1, w2 = fastavro.parse_schema(schema("AVRO_W1")), fastavro.parse_schema(schema("AVRO_W2"))
    seeds = {
        "w1_one": [(0, body(w1, record(1)))],
        "w1_w2_mixed": [(0, body(w1, record(2))), (1, body(w2, record(3, True))), (1, body(w2, record(4, True)))],
        "unknown_and_truncated": [(2, body(w1, record(5))), (0, body(w1, record(6))[:-3]), (0, body(w1, record(7)))],
    }
    os.makedirs(OUT, exist_ok=True)
    for name, records in seeds.items():
        out = b""
        for sel, b in records:
            assert len(b) < 256, len(b)
            out += bytes([sel, len(b)]) + b
        open(os.path.join(OUT, "seed_" + name), "wb").write(out)
    open(os.path.join(OUT, "seed_schema"), "w").write(json.dumps(schema("AVRO_W2")))


if __name__ == "__main__":
    main()
