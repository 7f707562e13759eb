#!/usr/bin/env python3
"""Independent reader for Iceberg tables written by frazil.

Loads NAMESPACE.TABLE through an Iceberg REST catalog and writes every row, one JSON object per
line, to --out. Two readers that share no code with frazil (nor with iceberg-rust):

  --reader pyiceberg  pyiceberg loads the table through the catalog and scans it (pyarrow reads the files).
  --reader duckdb     DuckDB's iceberg extension ATTACHes the REST catalog and reads metadata, manifests
                      and Parquet files from S3 itself (--duckdb-mode scan: iceberg_scan() on the current
                      metadata.json named by the catalog instead). pyiceberg is not used on this path.

Run it with the test venv: $HOME/.cache/frazil/venv/bin/python (tests/servers/install.sh makes it).

Output conventions (identical for both readers, so their outputs can be compared line for line after
sorting; --sort does that):
  * one JSON object per row, keys in table schema order, nested structs as objects, lists as arrays;
  * maps: arrays of {"key": K, "value": V} in stored order (keys need not be strings);
  * timestamps: ISO-8601 strings, always with 6 fractional digits (9 for nanosecond types);
    timestamptz in UTC with a "+00:00" suffix ("2024-05-06T07:08:09.123456+00:00"),
    timestamp without zone with no suffix ("2024-05-06T07:08:09.123456");
  * date: "YYYY-MM-DD"; time: "HH:MM:SS.ffffff";
  * binary and fixed: standard base64 with padding (RFC 4648 section 4);
  * uuid: canonical lowercase 8-4-4-4-12 string;
  * decimal: string with the column's scale ("12.30");
  * float/double: JSON numbers; NaN and infinities as the strings "NaN", "Infinity", "-Infinity";
  * null: JSON null.

stdout: one summary JSON line,
  {"rows": N, "snapshots": N, "format_version": N, "current_snapshot_summary": {...},
   "reader": "...", "metadata_location": "..."}
where rows is what the reader returned, and the rest is the table metadata (pyiceberg's view for
--reader pyiceberg, the catalog's raw loadTable answer for --reader duckdb).
current_snapshot_summary is {} when the table has no snapshot.

Exits 1 with a message on stderr on any failure.
"""

import argparse
import base64
import datetime
import decimal
import json
import math
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid

EPOCH = datetime.datetime(1970, 1, 1)


class Failure(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Arrow -> JSON conversion (shared by both readers)
# ---------------------------------------------------------------------------------------------


def _int_type_for(t):
    """Arrow type with every timestamp/time replaced by int64, so they convert without precision loss."""
    import pyarrow as pa

    if pa.types.is_timestamp(t) or pa.types.is_time64(t):
        return pa.int64()
    if pa.types.is_time32(t):
        return pa.int32()
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(_int_type_for(f.type)) for f in t])
    if pa.types.is_map(t):
        return pa.map_(_int_type_for(t.key_type), _int_type_for(t.item_type))
    if pa.types.is_large_list(t):
        return pa.large_list(t.value_field.with_type(_int_type_for(t.value_type)))
    if pa.types.is_fixed_size_list(t):
        return pa.list_(t.value_field.with_type(_int_type_for(t.value_type)), t.list_size)
    if pa.types.is_list(t):
        return pa.list_(t.value_field.with_type(_int_type_for(t.value_type)))
    if pa.types.is_dictionary(t):
        return _int_type_for(t.value_type)
    return t


_UNIT_DIGITS = {"s": 0, "ms": 3, "us": 6, "ns": 9}


def _fmt_timestamp(v, unit, tz):
    digits = _UNIT_DIGITS[unit]
    per_sec = 10**digits
    secs, frac = divmod(v, per_sec)  # floor division: correct for pre-1970 values
    text = (EPOCH + datetime.timedelta(seconds=secs)).strftime("%Y-%m-%dT%H:%M:%S")
    if digits == 0:
        text += ".000000"
    elif digits < 6:
        text += "." + str(frac * 10 ** (6 - digits)).zfill(6)
    else:
        text += "." + str(frac).zfill(digits)
    return text + ("+00:00" if tz is not None else "")


def _fmt_time(v, unit):
    digits = _UNIT_DIGITS[unit]
    secs, frac = divmod(v, 10**digits)
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    frac_text = str(frac * 10 ** (6 - digits)).zfill(6) if digits <= 6 else str(frac).zfill(9)
    return "%02d:%02d:%02d.%s" % (h, m, s, frac_text)


def _json_value(v, t):
    """Python value from Array.to_pylist() of the int-cast array, plus the ORIGINAL Arrow type."""
    import pyarrow as pa

    if v is None:
        return None
    if isinstance(t, pa.ExtensionType):
        if getattr(t, "extension_name", "") == "arrow.uuid" or isinstance(v, uuid.UUID):
            return str(v if isinstance(v, uuid.UUID) else uuid.UUID(bytes=bytes(v)))
        return _json_value(v, t.storage_type)
    if pa.types.is_dictionary(t):
        return _json_value(v, t.value_type)
    if pa.types.is_timestamp(t):
        return _fmt_timestamp(v, t.unit, t.tz)
    if pa.types.is_time(t):
        return _fmt_time(v, t.unit)
    if pa.types.is_date(t):
        return v.isoformat()
    if pa.types.is_boolean(t):
        return bool(v)
    if pa.types.is_integer(t):
        return int(v)
    if pa.types.is_floating(t):
        v = float(v)
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return v
    if pa.types.is_decimal(t):
        return str(v) if isinstance(v, decimal.Decimal) else str(decimal.Decimal(v))
    if (
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_fixed_size_binary(t)
        or (hasattr(pa.types, "is_binary_view") and pa.types.is_binary_view(t))
    ):
        return base64.b64encode(bytes(v)).decode("ascii")
    if isinstance(v, uuid.UUID):
        return str(v)
    if pa.types.is_struct(t):
        return {f.name: _json_value(v.get(f.name), f.type) for f in t}
    if pa.types.is_map(t):
        return [{"key": _json_value(k, t.key_type), "value": _json_value(x, t.item_type)} for k, x in v]
    if (
        pa.types.is_list(t)
        or pa.types.is_large_list(t)
        or pa.types.is_fixed_size_list(t)
        or (hasattr(pa.types, "is_list_view") and pa.types.is_list_view(t))
    ):
        return [_json_value(x, t.value_type) for x in v]
    if isinstance(v, (str, int, float)):
        return v
    raise Failure("no JSON conversion for Arrow type %s (value %r)" % (t, v))


def arrow_to_json_lines(table):
    """pyarrow.Table -> list of JSON strings, one per row, keys in column order."""
    import pyarrow as pa

    table = table.combine_chunks() if table.num_rows else table
    columns = []
    for name, col in zip(table.column_names, table.columns):
        orig_type = col.type
        storage = col
        if isinstance(orig_type, pa.ExtensionType):
            if getattr(orig_type, "extension_name", "") == "arrow.uuid":
                values = [None if b is None else str(uuid.UUID(bytes=b)) for b in
                          pa.chunked_array([c.storage for c in col.chunks], orig_type.storage_type).to_pylist()]
                columns.append((name, values, None))
                continue
            storage = pa.chunked_array([c.storage for c in col.chunks], orig_type.storage_type)
            orig_type = orig_type.storage_type
        if pa.types.is_dictionary(orig_type):
            storage = storage.cast(orig_type.value_type)
            orig_type = orig_type.value_type
        int_type = _int_type_for(orig_type)
        if int_type != orig_type:
            try:
                storage = storage.cast(int_type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise Failure("cannot convert column %r of type %s: %s" % (name, orig_type, e))
        columns.append((name, storage.to_pylist(), orig_type))
    lines = []
    for i in range(table.num_rows):
        row = {}
        for name, values, t in columns:
            row[name] = values[i] if t is None else _json_value(values[i], t)
        lines.append(json.dumps(row, ensure_ascii=False, allow_nan=False, separators=(",", ":")))
    return lines


# ---------------------------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------------------------


def namespace_parts(ns):
    parts = [p for p in ns.split(".") if p]
    if not parts:
        raise Failure("empty --namespace")
    return parts


def _s3_props(args):
    return {
        "s3.endpoint": args.s3_endpoint,
        "s3.access-key-id": args.s3_access_key,
        "s3.secret-access-key": args.s3_secret_key,
        "s3.region": args.s3_region,
        "s3.path-style-access": "true",
    }


def static_metadata_file(args):
    """--metadata as a metadata file: itself, or for a table directory the version its
    metadata/version-hint.text names."""
    if args.metadata.endswith(".json"):
        return args.metadata
    from pyiceberg.io import load_file_io

    io = load_file_io(_s3_props(args), args.metadata)
    with io.new_input(args.metadata.rstrip("/") + "/metadata/version-hint.text").open() as f:
        n = f.read().decode().strip()
    return "%s/metadata/v%s.metadata.json" % (args.metadata.rstrip("/"), n)


def pyiceberg_table(args):
    """The table through pyiceberg's REST catalog client (also used by expire.py), or with
    --metadata, pyiceberg's StaticTable (no catalog at all)."""
    from pyiceberg.catalog import load_catalog

    if getattr(args, "metadata", ""):
        from pyiceberg.table import StaticTable

        return StaticTable.from_metadata(static_metadata_file(args), properties=_s3_props(args))
    props = dict(_s3_props(args), type="rest", uri=args.catalog)
    if args.warehouse:
        props["warehouse"] = args.warehouse
    catalog = load_catalog("frazil-check", **props)
    return catalog.load_table(tuple(namespace_parts(args.namespace)) + (args.table,))


def add_catalog_args(p):
    p.add_argument("--catalog", default="", help="REST catalog URI, e.g. http://127.0.0.1:8181")
    p.add_argument("--metadata", default="", help="instead of a catalog: a metadata.json URL, or a table directory "
                   "whose metadata/version-hint.text names the version (pyiceberg StaticTable, DuckDB iceberg_scan)")
    p.add_argument("--warehouse", default="", help="warehouse string to send ('' sends none)")
    p.add_argument("--namespace", required=True, help="namespace; dots separate levels")
    p.add_argument("--table", required=True)
    p.add_argument("--s3-endpoint", required=True, help="e.g. http://127.0.0.1:9000")
    p.add_argument("--s3-access-key", required=True)
    p.add_argument("--s3-secret-key", required=True)
    p.add_argument("--s3-region", default="us-east-1")


def read_pyiceberg(args):
    table = pyiceberg_table(args)
    cols = _columns(args)
    arrow = (table.scan(selected_fields=tuple(cols)) if cols else table.scan()).to_arrow()
    md = table.metadata
    snap = table.current_snapshot()
    summary = {}
    if snap is not None and snap.summary is not None:
        summary = {k: str(v) for k, v in snap.summary.additional_properties.items()}
        summary["operation"] = snap.summary.operation.value
        summary = dict(sorted(summary.items()))
    info = {
        "snapshots": len(md.snapshots),
        "format_version": int(md.format_version),
        "current_snapshot_summary": summary,
        "metadata_location": table.metadata_location,
    }
    return arrow, info


def _http_json(url):
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read().decode("utf-8"))
    except urllib.error.HTTPError as e:
        body = e.read().decode("utf-8", "replace")[:2000]
        raise Failure("GET %s -> HTTP %s: %s" % (url, e.code, body))
    except urllib.error.URLError as e:
        raise Failure("GET %s failed: %s" % (url, e.reason))


def rest_load_table(args):
    """(config, loadTable answer) from the catalog over plain HTTP (no Iceberg library involved)."""
    base = args.catalog.rstrip("/")
    cfg_url = base + "/v1/config"
    if args.warehouse:
        cfg_url += "?" + urllib.parse.urlencode({"warehouse": args.warehouse})
    cfg = _http_json(cfg_url)
    prefix = (cfg.get("overrides") or {}).get("prefix") or (cfg.get("defaults") or {}).get("prefix")
    ns = "\x1f".join(namespace_parts(args.namespace))
    path = "/v1/"
    if prefix:
        path += urllib.parse.quote(prefix, safe="") + "/"
    path += "namespaces/%s/tables/%s" % (urllib.parse.quote(ns, safe=""), urllib.parse.quote(args.table, safe=""))
    return cfg, _http_json(base + path)


def _sql_str(s):
    return "'" + str(s).replace("'", "''") + "'"


def _sql_ident(s):
    return '"' + str(s).replace('"', '""') + '"'


def _columns(args):
    return [c for c in (args.select or "").split(",") if c]


def _select_sql(args):
    cols = _columns(args)
    return ", ".join(_sql_ident(c) for c in cols) if cols else "*"


def read_duckdb(args):
    import duckdb
    import duckdb_ext

    if args.metadata:
        # No catalog: the metadata as pyiceberg reads it, the rows as DuckDB's iceberg_scan reads
        # the table directory (following its version hint) or the file.
        table = pyiceberg_table(args)
        cfg, loaded = {}, {"metadata": json.loads(table.metadata.model_dump_json(by_alias=True)), "metadata-location": table.metadata_location}
        args.duckdb_mode = "scan"
    else:
        cfg, loaded = rest_load_table(args)
    md = loaded.get("metadata") or {}
    metadata_location = args.metadata or loaded.get("metadata-location")
    current_id = md.get("current-snapshot-id")
    snapshots = md.get("snapshots") or []
    summary = {}
    if current_id is not None and current_id != -1:
        for s in snapshots:
            if s.get("snapshot-id") == current_id:
                summary = {k: str(v) for k, v in sorted((s.get("summary") or {}).items())}
    if "format-version" not in md:
        raise Failure("catalog's loadTable answer has no metadata.format-version: %s" % json.dumps(loaded)[:2000])
    info = {
        "snapshots": len(snapshots),
        "format_version": int(md["format-version"]),
        "current_snapshot_summary": summary,
        "metadata_location": metadata_location,
    }

    ep = urllib.parse.urlparse(args.s3_endpoint)
    if not ep.hostname:
        raise Failure("--s3-endpoint must be a URL like http://127.0.0.1:9000, got %r" % args.s3_endpoint)
    endpoint = ep.netloc  # DuckDB wants host:port without the scheme
    use_ssl = "true" if ep.scheme == "https" else "false"

    con = duckdb.connect(":memory:")
    # Point DuckDB at the extensions bundled in the duckdb-ext wheels (INSTALL cannot download here).
    duckdb_ext.init(con)
    for ext in ("httpfs", "avro", "iceberg"):
        try:
            con.execute("LOAD " + ext)
        except duckdb.Error as e:
            raise Failure("cannot load DuckDB extension %s (pip install 'duckdb-ext[iceberg,avro,httpfs]'): %s" % (ext, e))
    con.execute("SET TimeZone = 'UTC'")
    # URL_STYLE 'path' is required (virtual-host style would ask for http://warehouse.127.0.0.1:PORT/...).
    con.execute(
        "CREATE SECRET frazil_s3 (TYPE s3, KEY_ID %s, SECRET %s, REGION %s, ENDPOINT %s, URL_STYLE 'path', USE_SSL %s)"
        % (_sql_str(args.s3_access_key), _sql_str(args.s3_secret_key), _sql_str(args.s3_region),
           _sql_str(endpoint), use_ssl)
    )
    if args.duckdb_mode == "attach":
        # DuckDB always sends ?warehouse=<ATTACH string>, and an empty one is refused (HTTP 400) by a catalog
        # that wants the exact string: without --warehouse, use the one the catalog advertises.
        warehouse = args.warehouse or (cfg.get("overrides") or {}).get("warehouse") or \
            (cfg.get("defaults") or {}).get("warehouse") or ""
        con.execute(
            "ATTACH %s AS frazil_cat (TYPE iceberg, ENDPOINT %s, AUTHORIZATION_TYPE 'none')"
            % (_sql_str(warehouse), _sql_str(args.catalog.rstrip("/")))
        )
        schema = ".".join(namespace_parts(args.namespace))
        query = "SELECT %s FROM frazil_cat.%s.%s" % (_select_sql(args), _sql_ident(schema), _sql_ident(args.table))
    else:
        if not metadata_location:
            raise Failure("catalog's loadTable answer has no metadata-location")
        query = "SELECT %s FROM iceberg_scan(%s)" % (_select_sql(args), _sql_str(metadata_location))
    if current_id is None or current_id == -1:
        # No snapshot: DuckDB may refuse to scan; an empty table has no rows either way.
        try:
            arrow = con.execute(query).fetch_arrow_table()
        except duckdb.Error:
            import pyarrow as pa

            arrow = pa.table({})
    else:
        arrow = con.execute(query).fetch_arrow_table()
    return arrow, info


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_catalog_args(p)
    p.add_argument("--reader", choices=["pyiceberg", "duckdb"], required=True)
    p.add_argument("--duckdb-mode", choices=["attach", "scan"], default="attach",
                   help="duckdb only: ATTACH the REST catalog (default) or iceberg_scan the current metadata.json")
    p.add_argument("--select", default="", help="comma-separated top-level columns to read (default: all)")
    p.add_argument("--sort", action="store_true", help="sort output lines (canonical order for comparisons)")
    p.add_argument("--out", help="file to write the JSON lines to (without it, only the summary is printed)")
    args = p.parse_args(argv)

    try:
        if args.reader == "pyiceberg":
            arrow, info = read_pyiceberg(args)
        else:
            arrow, info = read_duckdb(args)
        rows = arrow.num_rows
        if args.out:
            lines = arrow_to_json_lines(arrow)
            if args.sort:
                lines.sort()
            with open(args.out, "w", encoding="utf-8") as f:
                for line in lines:
                    f.write(line + "\n")
            rows = len(lines)
        summary = {
            "rows": rows,
            "snapshots": info["snapshots"],
            "format_version": info["format_version"],
            "current_snapshot_summary": info["current_snapshot_summary"],
            "reader": args.reader if args.reader == "pyiceberg" else "duckdb-" + args.duckdb_mode,
            "metadata_location": info["metadata_location"],
        }
        print(json.dumps(summary, sort_keys=False))
        return 0
    except Failure as e:
        print("read_table.py (%s): %s" % (args.reader, e), file=sys.stderr)
        return 1
    except Exception as e:  # a library error: name it, with the table we were reading
        print(
            "read_table.py (%s): reading %s.%s from %s failed: %s: %s"
            % (args.reader, args.namespace, args.table, args.catalog, type(e).__name__, e),
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
