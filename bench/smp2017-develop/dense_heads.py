#!/usr/bin/env python3
"""SMP2017 develop: other heads on the row's frozen e5 vectors (session 31, bench/RESULTS.md).

Reads the vectors `kefu eval intent --dataset smp2017 --dev --encoders e5-small@8+10+12 --data-dir DIR` cached in
DIR/cache, trains on SMP's train split and prints develop accuracy for a linear model, an RBF SVM and a one-layer
MLP on the dense block alone (no n-grams). Needs numpy and scikit-learn; run from this folder:
    python3 dense_heads.py /tmp/kie
"""
import os
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import normalize
from sklearn.svm import SVC

from model import cache, split

m = cache(os.path.join(sys.argv[1], "cache", "vectors-e5-small_8_10_12.bin"))
(tr, ytr), (dv, ydv) = split("train"), split("develop")
xtr, xdv = normalize(np.stack([m[t] for t in tr])), normalize(np.stack([m[t] for t in dv]))
heads = [(f"logistic regression C={c}", LogisticRegression(C=c, max_iter=3000)) for c in (10, 100)]
heads += [(f"RBF SVM C={c}", SVC(C=c)) for c in (3, 10, 30)]
heads += [(f"MLP {h}", MLPClassifier(hidden_layer_sizes=(h,), max_iter=300, random_state=0, alpha=1e-3)) for h in (512, 1024)]
for name, clf in heads:
    clf.fit(xtr, ytr)
    print(f"{name}: {100 * np.mean(clf.predict(xdv) == np.array(ydv)):.2f}", flush=True)
