"""Averages the intent probabilities of several `kefu eval intent --predictions FILE` runs, row by row.

Each file is one run over the same rows (the same split, or the same `--cv K` folds): one JSON object per row with
its `text`, `label` and `top` (the best five in-scope intents with their calibrated probabilities). An intent missing
from a run's five counts 0 there; on SMP2017 that changed the chosen intent for 3 of 242,627 (combination, row)
pairs against averages over all 31 intents (session 34, bench/RESULTS.md). Prints the top-intent accuracy of each run alone and of the average of all of
them; `--all-subsets` prints every combination instead (that many looks at one split choose by chance).

    python3 bench/smp2017-develop/ensemble.py [--all-subsets] NAME=FILE NAME=FILE ...
"""

import itertools
import json
import sys


def load(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def accuracy(runs):
    first = runs[0]
    right = 0
    for i, row in enumerate(first):
        total = {}
        for run in runs:
            if run[i]["text"] != row["text"] or run[i]["label"] != row["label"]:
                sys.exit(f"row {i} differs between the runs: {run[i]['text']!r} / {row['text']!r}")
            for intent, p in run[i]["top"]:
                total[intent] = total.get(intent, 0.0) + p
        right += max(total, key=total.get) == row["label"]
    return right, len(first)


def main(argv):
    subsets = "--all-subsets" in argv
    named = [a.split("=", 1) for a in argv if a != "--all-subsets"]
    if not named or any(len(n) != 2 for n in named):
        sys.exit(__doc__)
    runs = {name: load(path) for name, path in named}
    lengths = {len(r) for r in runs.values()}
    if len(lengths) != 1:
        sys.exit(f"the runs hold different numbers of rows: {sorted(lengths)}")
    names = list(runs)
    if subsets:
        combos = [c for k in range(1, len(names) + 1) for c in itertools.combinations(names, k)]
    else:
        combos = [(n,) for n in names] + ([tuple(names)] if len(names) > 1 else [])
    for combo in combos:
        right, n = accuracy([runs[c] for c in combo])
        print(f"{'+'.join(combo):24s} {100 * right / n:6.2f} ({right}/{n})")


if __name__ == "__main__":
    main(sys.argv[1:])
