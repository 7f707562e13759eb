#!/usr/bin/env python3
"""Expires every snapshot of a table that pyiceberg may expire (all but branch heads and tagged ones).

What an operator's maintenance job does to a table frazil writes to. Takes the catalog arguments
of read_table.py. stdout: one JSON line
  {"expired": [snapshot ids], "kept": [snapshot ids], "refs": {"name": {"snapshot-id": N, "type": "tag"|"branch"}}}
Exits 1 with a message on stderr on any failure.
"""

import argparse
import datetime
import json
import sys

from read_table import add_catalog_args, pyiceberg_table


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_catalog_args(p)
    args = p.parse_args(argv)
    try:
        table = pyiceberg_table(args)
        before = {s.snapshot_id for s in table.metadata.snapshots}
        # A second in the future: every snapshot is older, so only the protected ones survive.
        cutoff = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=1)
        table.maintenance.expire_snapshots().older_than(cutoff).commit()
        table = table.refresh()
        after = {s.snapshot_id for s in table.metadata.snapshots}
        refs = {
            name: {"snapshot-id": r.snapshot_id, "type": r.snapshot_ref_type.value}
            for name, r in table.metadata.refs.items()
        }
        print(json.dumps({"expired": sorted(before - after), "kept": sorted(after), "refs": refs}))
        return 0
    except Exception as e:
        print("expire.py: expiring %s.%s failed: %s: %s" % (args.namespace, args.table, type(e).__name__, e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
