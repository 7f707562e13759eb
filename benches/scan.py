#!/usr/bin/env python3
"""Times two independent readers over one local Iceberg table (a metadata.json path):
pyiceberg planning its scan (StaticTable, plan_files) and DuckDB reading it (iceberg_scan,
count(*)). Each is run REPEAT times; the median is printed. stdout: one JSON line
  {"pyiceberg_plan_ms": F, "duckdb_scan_ms": F, "files": N, "rows": N}
Used by benches/maintain.rs; needs the test venv (tests/servers/install.sh).
"""

import json
import statistics
import sys
import time

REPEAT = 3


def main(metadata):
    import duckdb
    import duckdb_ext
    from pyiceberg.table import StaticTable

    plans, files = [], 0
    for _ in range(REPEAT):
        start = time.perf_counter()
        table = StaticTable.from_metadata("file://" + metadata)
        files = len(list(table.scan().plan_files()))
        plans.append(time.perf_counter() - start)
    con = duckdb.connect(":memory:")
    duckdb_ext.init(con)
    for ext in ("avro", "iceberg"):
        con.execute("LOAD " + ext)
    scans, rows = [], 0
    for _ in range(REPEAT):
        start = time.perf_counter()
        rows = con.execute("SELECT count(*) FROM iceberg_scan(?)", [metadata]).fetchone()[0]
        scans.append(time.perf_counter() - start)
    print(json.dumps({
        "pyiceberg_plan_ms": statistics.median(plans) * 1e3,
        "duckdb_scan_ms": statistics.median(scans) * 1e3,
        "files": files,
        "rows": rows,
    }))


if __name__ == "__main__":
    main(sys.argv[1])
