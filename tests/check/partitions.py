#!/usr/bin/env python3
"""How a table is partitioned, as pyiceberg and DuckDB see it from its manifests.

Takes the catalog arguments of read_table.py, plus --column/--value for an equality filter on a
partition source column. stdout: one JSON line
  {"spec": [{"name", "transform", "source"}],
   "files": [{"path", "partition": {...}, "records"}],          # pyiceberg's inspect.files()
   "pyiceberg_planned": N,                                        # files a filtered scan plans
   "duckdb_rows": N, "duckdb_files_scanned": N or null}           # DuckDB's filtered count, and
                                                                  # the files its profile says it read
Exits 1 with a message on stderr on any failure.
"""

import argparse
import json
import re
import sys

from read_table import add_catalog_args, pyiceberg_table, rest_load_table


def duckdb_filtered(args, metadata_location):
    import duckdb
    import duckdb_ext
    import urllib.parse

    con = duckdb.connect(":memory:")
    duckdb_ext.init(con)
    for ext in ("httpfs", "avro", "iceberg"):
        con.execute("LOAD " + ext)
    ep = urllib.parse.urlparse(args.s3_endpoint)
    con.execute(
        "CREATE SECRET s (TYPE s3, KEY_ID '%s', SECRET '%s', REGION '%s', ENDPOINT '%s', URL_STYLE 'path', USE_SSL false)"
        % (args.s3_access_key, args.s3_secret_key, args.s3_region, ep.netloc)
    )
    query = "SELECT count(*) FROM iceberg_scan('%s') WHERE \"%s\" = '%s'" % (metadata_location, args.column, args.value)
    rows = con.execute(query).fetchone()[0]
    con.execute("PRAGMA enable_profiling = 'json'")
    con.execute("PRAGMA profiling_output = ''")
    plan = "\n".join(str(r[1]) for r in con.execute("EXPLAIN ANALYZE " + query).fetchall())
    m = re.search(r'"?Total Files Read"?\s*[:=]\s*"?(\d+)', plan)
    return rows, (int(m.group(1)) if m else None), plan


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_catalog_args(p)
    p.add_argument("--column", required=True)
    p.add_argument("--value", required=True)
    args = p.parse_args(argv)
    try:
        from pyiceberg.expressions import EqualTo

        table = pyiceberg_table(args)
        spec = [
            {"name": f.name, "transform": str(f.transform), "source": table.schema().find_column_name(f.source_id)}
            for f in table.spec().fields
        ]
        files = []
        for row in table.inspect.files().to_pylist():
            part = row.get("partition") or {}
            files.append({"path": row["file_path"], "partition": {k: str(v) for k, v in part.items()}, "records": row["record_count"]})
        planned = len(list(table.scan(row_filter=EqualTo(args.column, args.value)).plan_files()))
        _, loaded = rest_load_table(args)
        rows, scanned, plan = duckdb_filtered(args, loaded["metadata-location"])
        print(json.dumps({"spec": spec, "files": files, "pyiceberg_planned": planned, "duckdb_rows": rows,
                          "duckdb_files_scanned": scanned, "duckdb_plan": plan[-3000:]}))
        return 0
    except Exception as e:
        print("partitions.py: %s.%s: %s: %s" % (args.namespace, args.table, type(e).__name__, e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
