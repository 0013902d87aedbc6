#!/usr/bin/env python3
"""SMP2017: do pinyin n-grams help beside character n-grams? (session 32, research; bench/RESULTS.md)

SMP2017's queries are voice-assistant transcripts, where recognition errors swap a character for a homophone, and
Chinese typed with a pinyin IME has the same kind of error. This compares TF-IDF character 1-3 grams with and
without toneless pinyin syllable n-grams (pypinyin), a logistic regression on top, on develop (trained on train) and
by 5-fold CV on train + develop. A sketch in scikit-learn, not kefu's featuriser: it asks whether the signal is
there at all. Needs `pip install numpy scipy scikit-learn pypinyin`; run from this folder: python3 pinyin.py
"""
import numpy as np
from pypinyin import Style, lazy_pinyin
from scipy.sparse import hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from model import split


def syllables(text):
    return ' '.join(lazy_pinyin(text, style=Style.NORMAL, errors=lambda x: list(x)))


def features(fit, apply, ngrams, weight):
    chars = TfidfVectorizer(analyzer='char', ngram_range=(1, 3), sublinear_tf=True)
    parts_fit, parts_apply = [chars.fit_transform(fit)], [chars.transform(apply)]
    if ngrams:
        pinyin = TfidfVectorizer(analyzer='word', token_pattern=r'\S+', ngram_range=ngrams, sublinear_tf=True)
        parts_fit.append(weight * pinyin.fit_transform([syllables(t) for t in fit]))
        parts_apply.append(weight * pinyin.transform([syllables(t) for t in apply]))
    return hstack(parts_fit).tocsr(), hstack(parts_apply).tocsr()


def accuracy(fit, y_fit, apply, y_apply, ngrams, weight):
    f, a = features(fit, apply, ngrams, weight)
    return (LogisticRegression(C=10, max_iter=3000).fit(f, y_fit).predict(a) == y_apply).mean() * 100


tr, dv = split('train'), split('develop')
tr_x, tr_y = [t.lower() for t in tr[0]], np.array(tr[1])
dv_x, dv_y = [t.lower() for t in dv[0]], np.array(dv[1])
all_x, all_y = tr_x + dv_x, np.concatenate([tr_y, dv_y])
folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(all_x, all_y))
for ngrams, weight in ((None, 0), ((1, 3), 1.0), ((1, 1), 0.3), ((1, 2), 0.3), ((2, 2), 0.3), ((1, 2), 0.6)):
    dev = accuracy(tr_x, tr_y, dv_x, dv_y, ngrams, weight)
    cv = np.mean([accuracy([all_x[i] for i in a], all_y[a], [all_x[i] for i in b], all_y[b], ngrams, weight)
                  for a, b in folds])
    print(f'pinyin {ngrams or "none"}, weight {weight}: develop {dev:.2f}, 5-fold CV {cv:.2f}', flush=True)
