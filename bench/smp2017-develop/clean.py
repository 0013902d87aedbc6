"""Writes a copy of SMP2017 task 1 whose train split leaves out the rows cross-validation reads confidently against
their label (session 34: label cleaning, tried on develop and dropped; bench/RESULTS.md).

A row is left out when the fold model that did not learn from it gives another intent more than 0.5 and the row's
own label less than THRESHOLD (a label outside the five best counts 0). develop and test are linked unchanged.

    python3 bench/smp2017-develop/clean.py CV_PREDICTIONS.jsonl THRESHOLD OUT_DIR [SMP_DIR]

CV_PREDICTIONS comes from `kefu eval intent --dataset smp2017 --dev --cv 5 --predictions FILE`; SMP_DIR defaults to
../shared/data/smp_ecdt_zh/smp2017_task1 beside the repository. Then `kefu eval intent --dataset smp2017 --path
OUT_DIR --dev ...` trains on the cleaned split.
"""

import json
import os
import sys


def main(argv):
    if len(argv) not in (3, 4):
        sys.exit(__doc__)
    cv, threshold, out = argv[0], float(argv[1]), argv[2]
    src = os.path.abspath(argv[3] if len(argv) == 4 else "../shared/data/smp_ecdt_zh/smp2017_task1")
    drop = set()
    with open(cv, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            top = dict(row["top"])
            best, p_best = row["top"][0]
            if best != row["label"] and p_best > 0.5 and top.get(row["label"], 0.0) < threshold:
                drop.add(row["text"])
    os.makedirs(os.path.join(out, "train"), exist_ok=False)
    for split in ("develop", "test"):
        os.symlink(os.path.join(src, split), os.path.join(out, split))
    dropped = 0
    for name in sorted(os.listdir(os.path.join(src, "train"))):
        kept = []
        with open(os.path.join(src, "train", name), encoding="utf-8-sig") as f:
            for line in f:
                if line.strip() in drop:
                    dropped += 1
                else:
                    kept.append(line)
        with open(os.path.join(out, "train", name), "w", encoding="utf-8") as f:
            f.writelines(kept)
    print(f"left out {dropped} training lines ({len(drop)} texts)")


if __name__ == "__main__":
    main(sys.argv[1:])
