#!/usr/bin/env python3
"""CLINC150 with its validation split cut in two, for choosing settings that the validation split itself feeds
(`refit_with_calibration`: the calibration set is also learned from, so val can no longer score it).

Writes a data_full.json-shaped file: train and oos_train as published; val + oos_val hold the half of the validation
queries whose text hashes (SHA-256) even, test + oos_test the other half (`--swap`: the other way round, a second
check of a choice). Run the eval on it with `kefu eval intent --dataset clinc150 --path <out> ...`; the real test
split is never read.
"""
import hashlib
import json
import sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
src = root / "eval/datasets/clinc150/data_full.json"
args = [a for a in sys.argv[1:] if a != "--swap"]
calibrate = 1 if "--swap" in sys.argv[1:] else 0
out = Path(args[0] if args else "/tmp/clinc150-val-halves.json")
d = json.loads(src.read_text())


def half(rows, h):
    return [r for r in rows if int(hashlib.sha256(r[0].encode()).hexdigest(), 16) % 2 == h]


halves = {
    "train": d["train"],
    "oos_train": d["oos_train"],
    "val": half(d["val"], calibrate),
    "oos_val": half(d["oos_val"], calibrate),
    "test": half(d["val"], 1 - calibrate),
    "oos_test": half(d["oos_val"], 1 - calibrate),
}
out.write_text(json.dumps(halves))
print(out, {k: len(v) for k, v in halves.items()})
