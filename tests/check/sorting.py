#!/usr/bin/env python3
"""A table's sort order as pyiceberg sees it, and whether each data file's row groups hold their
rows in that order (read with pyarrow from the files the table's manifests list).

Takes the catalog arguments of read_table.py. stdout: one JSON line
  {"sort_order": [{"column", "direction", "null_order"}],
   "files": [{"path", "row_groups": N, "rows": N, "sorted": bool}]}
Exits 1 with a message on stderr on any failure.
"""

import argparse
import json
import sys

from read_table import add_catalog_args, pyiceberg_table


def in_order(rows, keys):
    """True when `rows` (tuples of key values) are ordered by `keys` ((descending, nulls_first))."""

    def rank(row):
        out = []
        for v, (descending, nulls_first) in zip(row, keys):
            null_rank = 0 if nulls_first else 1
            if v is None:
                out.append((null_rank, 0))
            else:
                # Reverse the value's order for descending keys without negating strings.
                out.append((1 - null_rank, Desc(v) if descending else v))
        return out

    ranked = [rank(r) for r in rows]
    return all(a <= b for a, b in zip(ranked, ranked[1:]))


class Desc:
    def __init__(self, v):
        self.v = v

    def __lt__(self, other):
        return other.v < self.v

    def __le__(self, other):
        return other.v <= self.v

    def __eq__(self, other):
        return self.v == other.v


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_catalog_args(p)
    args = p.parse_args(argv)
    try:
        import pyarrow.parquet as pq
        from pyiceberg.table.sorting import NullOrder, SortDirection

        table = pyiceberg_table(args)
        schema = table.schema()
        order = table.sort_order()
        fields = [
            {
                "column": schema.find_column_name(f.source_id),
                "direction": "desc" if f.direction == SortDirection.DESC else "asc",
                "null_order": "nulls-first" if f.null_order == NullOrder.NULLS_FIRST else "nulls-last",
            }
            for f in order.fields
        ]
        columns = [f["column"] for f in fields]
        keys = [(f["direction"] == "desc", f["null_order"] == "nulls-first") for f in fields]
        files = []
        for row in table.inspect.files().to_pylist():
            path = row["file_path"]
            with table.io.new_input(path).open() as f:
                pf = pq.ParquetFile(f)
                ok, rows = True, 0
                for i in range(pf.num_row_groups):
                    rg = pf.read_row_group(i, columns=columns)
                    values = list(zip(*(rg.column(c).to_pylist() for c in columns))) if columns else []
                    rows += rg.num_rows
                    ok = ok and in_order(values, keys)
                files.append({"path": path, "row_groups": pf.num_row_groups, "rows": rows, "sorted": ok})
        print(json.dumps({"sort_order": fields, "files": files}))
        return 0
    except Exception as e:
        print("sorting.py: %s.%s: %s: %s" % (args.namespace, args.table, type(e).__name__, e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
