#!/usr/bin/env python3
"""Confluent-framed JSON Schema messages, each checked by an independent validator (Python's
jsonschema package) before it is framed.

  json_schema_encode.py SPEC OUT

SPEC is JSON: {"schemas": {"<id>": {"schema": {...}, "references": {"<name>": {...}}}},
"messages": [{"schema_id": N, "value": {...}, "valid": true|false}]}. Each value is validated
against its schema (draft 7, with formats checked, `$ref`s to the references by name); the run
fails if a value's validity is not what the spec says. OUT gets one line per message: the base64
of magic byte 0, the 4-byte big-endian schema id, and the value as compact JSON text (as
Confluent's JSONSerializer writes it).
"""

import base64
import json
import struct
import sys

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7


def validator(spec):
    resources = [(name, Resource.from_contents(doc, default_specification=DRAFT7))
                 for name, doc in spec.get("references", {}).items()]
    registry = Registry().with_resources(resources)
    return jsonschema.Draft7Validator(spec["schema"], registry=registry, format_checker=jsonschema.FormatChecker())


def main():
    spec_path, out_path = sys.argv[1], sys.argv[2]
    with open(spec_path) as f:
        spec = json.load(f)
    validators = {int(i): validator(s) for i, s in spec["schemas"].items()}
    with open(out_path, "w") as out:
        for m in spec["messages"]:
            errors = list(validators[m["schema_id"]].iter_errors(m["value"]))
            if (not errors) != m["valid"]:
                raise SystemExit(f"{m['value']}: expected valid={m['valid']}, got errors {[e.message for e in errors]}")
            framed = b"\0" + struct.pack(">I", m["schema_id"]) + json.dumps(m["value"], separators=(",", ":")).encode()
            out.write(base64.b64encode(framed).decode() + "\n")


if __name__ == "__main__":
    main()
