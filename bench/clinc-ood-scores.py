#!/usr/bin/env python3
"""Out-of-scope scores for CLINC150 compared outside the classifier: how well each separates the in-scope queries the
model gets right from the out-of-scope ones (bench/RESULTS.md, session 18).

A proxy, not the shipped pipeline: a scikit-learn logistic regression (C = 10) on the e5 + MiniLM vectors alone, no
n-grams, learns from train + oos_train and scores SPLIT (val by default) + its out-of-scope queries. For each score it
prints the diagnosis `kefu eval intent` prints (the best in-scope accuracy at >= 90 % out-of-scope recall, threshold
picked on the scored rows) and the AUROC of right in-scope against out-of-scope. Scores: the probability p; the cosine
to the predicted intent's nearest training example; p * cos^2 (what the classifier ships); the Mahalanobis distance d
to the predicted intent's mean under a shared, shrunk covariance; and p * exp(-d / tau).

Needs the vectors `kefu eval intent --dataset clinc150 --encoders e5-small,minilm --data-dir DIR` cached in
DIR/cache, and `pip install numpy scikit-learn`.
Usage: bench/clinc-ood-scores.py DIR [SPLIT]
"""
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

import vector_cache

root = Path(__file__).resolve().parent.parent
cache = Path(sys.argv[1]) / "cache"
split = sys.argv[2] if len(sys.argv) > 2 else "val"


e5, minilm = vector_cache.load(cache / "vectors-e5-small.bin"), vector_cache.load(cache / "vectors-minilm.bin")
data = json.loads((root / "eval/datasets/clinc150/data_full.json").read_text())


def features(rows):
    unit = lambda v: v / np.linalg.norm(v)
    return np.array([np.concatenate([unit(e5[t.strip()]), unit(minilm[t.strip()])]) for t, _ in rows], dtype=np.float64)


train, scored = data["train"] + data["oos_train"], data[split] + data["oos_" + split]
x_train, x = features(train), features(scored)
labels = sorted({l for _, l in train})
index = {l: i for i, l in enumerate(labels)}
y_train, y = np.array([index[l] for _, l in train]), np.array([index[l] for _, l in scored])
oos = index["oos"]

p_all = LogisticRegression(C=10, max_iter=300).fit(x_train * 2, y_train).predict_proba(x * 2)
p_all[:, oos] = -1
pred, p = p_all.argmax(1), p_all.max(1)
in_scope = y != oos
right = (pred == y) & in_scope

cos = np.zeros(len(x))
for c in np.unique(pred):
    rows = pred == c
    cos[rows] = (x[rows] @ x_train[y_train == c].T).max(1) / 2  # two unit halves: |v|^2 = 2

known = y_train != oos
xi, yi = x_train[known], y_train[known]
means = {c: xi[yi == c].mean(0) for c in np.unique(yi)}
cov = np.cov(np.vstack([xi[yi == c] - means[c] for c in np.unique(yi)]).T)


def mahalanobis(shrink):
    dim = cov.shape[0]
    inv = np.linalg.inv(cov + shrink * np.trace(cov) / dim * np.eye(dim))
    d = np.zeros(len(x))
    for c in np.unique(pred):
        rows = pred == c
        z = x[rows] - means[c]
        d[rows] = np.einsum("ij,jk,ik->i", z, inv, z)
    return d


def diagnosis(score):
    best = 0.0
    for t in np.unique(score):
        rejected = score < t
        if rejected[~in_scope].mean() >= 0.9:
            best = max(best, (right & ~rejected).sum() / in_scope.sum())
    return 100 * best


def auroc(score):
    rows = right | ~in_scope
    return 100 * roc_auc_score(right[rows], score[rows])


print(f"{split}: top-intent accuracy {100 * right.sum() / in_scope.sum():.2f}")
print("| score | diagnosis | AUROC |\n|---|---:|---:|")
scores = [("p", p), ("cos", cos), ("p * cos^2", p * cos**2)]
for shrink in (0.01, 0.1, 0.3):
    d = mahalanobis(shrink)
    scores.append((f"-d, shrink {shrink}", -d))
    for k in (0.5, 1, 2):
        scores.append((f"p * exp(-d / ({k} median d)), shrink {shrink}", p * np.exp(-d / (k * np.median(d)))))
for name, s in scores:
    print(f"| {name} | {diagnosis(s):.2f} | {auroc(s):.2f} |")
