"""Reads `cargo metadata` on stdin and prints every crate frazil's binary links, with its license.

Only normal dependencies count (not build scripts, dev- or test-only crates), following the
resolved graph from the frazil package for the platform the metadata was filtered for.
"""
import json
import sys

meta = json.load(sys.stdin)
packages = {p["id"]: p for p in meta["packages"]}
nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
root = next(p["id"] for p in meta["packages"] if p["name"] == "frazil")

seen, todo = set(), [root]
while todo:
    node = nodes[todo.pop()]
    for dep in node["deps"]:
        if any(k["kind"] is None for k in dep["dep_kinds"]) and dep["pkg"] not in seen:
            seen.add(dep["pkg"])
            todo.append(dep["pkg"])

print("frazil is Apache-2.0 (/usr/share/doc/frazil/LICENSE). It links these crates, under these licenses:\n")
for pkg in sorted((packages[i] for i in seen), key=lambda p: (p["name"], p["version"])):
    print(f'{pkg["name"]} {pkg["version"]}: {pkg.get("license") or "see " + (pkg.get("license_file") or "the crate")}')
