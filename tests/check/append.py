#!/usr/bin/env python3
"""Appends rows to a table frazil writes, as a foreign writer would: pyiceberg's merge append.

The table property commit.manifest-merge.enabled is set first (pyiceberg then merges manifests on
every append, rewriting frazil's). Each row has the given id; every other column is null, or a zero
value when it is required. Retries on a commit conflict (another writer committed first). Takes the
catalog arguments of read_table.py. stdout: one JSON line
  {"appended": N, "snapshot-id": N, "operation": "append", "manifests": N}
Exits 1 with a message on stderr on any failure.
"""

import argparse
import datetime
import json
import sys
import time

from read_table import add_catalog_args, pyiceberg_table


def zero(arrow_type):
    import pyarrow as pa

    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return ""
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type) or pa.types.is_fixed_size_binary(arrow_type):
        return b"\0" * getattr(arrow_type, "byte_width", 0)
    if pa.types.is_timestamp(arrow_type):
        return datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc if arrow_type.tz else None)
    if pa.types.is_date(arrow_type):
        return datetime.date(1970, 1, 1)
    if pa.types.is_boolean(arrow_type):
        return False
    if pa.types.is_struct(arrow_type):
        return {f.name: (zero(f.type) if not f.nullable else None) for f in arrow_type}
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) or pa.types.is_map(arrow_type):
        return []
    return 0


def rows_for(table, ids):
    import pyarrow as pa
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    schema = schema_to_pyarrow(table.schema(), include_field_ids=False)
    columns = []
    for field in schema:
        if field.name == "id":
            columns.append(pa.array(ids, type=field.type))
        elif field.nullable:
            columns.append(pa.nulls(len(ids), type=field.type))
        else:
            columns.append(pa.array([zero(field.type)] * len(ids), type=field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_catalog_args(p)
    p.add_argument("--first-id", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    args = p.parse_args(argv)
    from pyiceberg.exceptions import CommitFailedException

    ids = list(range(args.first_id, args.first_id + args.count))
    try:
        for attempt in range(20):
            table = pyiceberg_table(args)
            try:
                if table.properties.get("commit.manifest-merge.enabled") != "true":
                    with table.transaction() as tx:
                        tx.set_properties({"commit.manifest-merge.enabled": "true", "commit.manifest.min-count-to-merge": "2"})
                    table = table.refresh()
                table.append(rows_for(table, ids))
                break
            except CommitFailedException:
                time.sleep(0.2 * (attempt + 1))
        else:
            raise RuntimeError("20 commit conflicts in a row")
        table = table.refresh()
        s = table.current_snapshot()
        print(json.dumps({
            "appended": len(ids),
            "snapshot-id": s.snapshot_id,
            "operation": s.summary.operation.value,
            "manifests": len(s.manifests(table.io)),
        }))
        return 0
    except Exception as e:
        print("append.py: appending to %s.%s failed: %s: %s" % (args.namespace, args.table, type(e).__name__, e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
