#!/usr/bin/env python3
"""Describes every dataset of an HDF5 file as JSON, read through h5py.

A second, independent reader for the project's HDF5 files: test/recipe.test.ts compares its output with what
the project's own reader returns for the same file.

usage: python3 scripts/h5py-dump.py FILE [--values]

Prints one JSON object: {"file": FILE, "h5py": VERSION, "datasets": [...]}, the datasets sorted by their full
path. Each entry holds
  key     full path without the leading slash, e.g. "infos/qpos"
  dtype   numpy dtype name ("float32", "uint8", "int32", "float64", "bool", "string", ...)
  shape   list of dimensions ([] for a scalar)
  sha256  of the array's values as little-endian bytes in their stored dtype, rows in order (numeric arrays)
  sum     sum of the values in float64 (numeric arrays)
  value   the value itself for scalars (numbers, booleans and strings), and for every array with --values
"""
import hashlib
import json
import sys


def describe(name, ds, numpy, with_values):
    entry = {"key": name}
    dt = ds.dtype
    if dt.kind in ("S", "U", "O"):
        raw = ds[()]
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8")
        elif hasattr(raw, "tolist"):
            raw = [v.decode("utf-8") if isinstance(v, bytes) else v for v in numpy.asarray(raw).ravel().tolist()]
        entry.update({"dtype": "string", "shape": list(ds.shape), "value": raw})
        return entry
    values = numpy.asarray(ds[()])
    if values.dtype.kind == "b":
        dtype_name = "bool"
        stored = values.astype(numpy.uint8)
    else:
        dtype_name = values.dtype.name
        stored = values.astype(values.dtype.newbyteorder("<"), copy=False)
    entry["dtype"] = dtype_name
    entry["shape"] = list(values.shape)
    entry["sha256"] = hashlib.sha256(numpy.ascontiguousarray(stored).tobytes()).hexdigest()
    entry["sum"] = float(numpy.sum(values, dtype=numpy.float64))
    if values.shape == () or with_values:
        entry["value"] = values.tolist()
    return entry


def main(argv):
    args = [a for a in argv if not a.startswith("--")]
    flags = [a for a in argv if a.startswith("--")]
    if "--help" in flags or "-h" in argv or len(args) != 1:
        print(__doc__.strip())
        return 0 if ("--help" in flags or "-h" in argv) else 2
    unknown = [f for f in flags if f not in ("--values", "--help")]
    if unknown:
        print(f"h5py-dump: unknown option {unknown[0]} (see --help)", file=sys.stderr)
        return 2
    try:
        import h5py
        import numpy
    except ImportError as err:
        print(f"h5py-dump: {err}", file=sys.stderr)
        return 3
    path = args[0]
    entries = []
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                entries.append(describe(name, obj, numpy, "--values" in flags))
        f.visititems(visit)
    entries.sort(key=lambda e: e["key"])
    json.dump({"file": path, "h5py": h5py.__version__, "datasets": entries}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
