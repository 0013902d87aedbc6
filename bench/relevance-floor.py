#!/usr/bin/env python3
"""Where to put knowledge.min_dense (the relevance floor): the best embedding cosine of each query against the demo
knowledge base, for questions the base answers and for questions it does not.

In scope: the 60 Chinese shop-FAQ queries (eval/datasets/shop-faq-zh.json, written against demo/knowledge's FAQ) and
32 English shop questions (eval/datasets/shop-questions-en.json; the base answers them in English and, across
languages, in Chinese).
Out of scope: the first 100 SMP2017 chit-chat utterances (Chinese, ../shared/data, not in the repository) and the
first 100 CLINC150 out-of-scope test queries (English, eval/datasets/clinc150).

Usage: KEFU_BIN=target/debug/kefu KEFU__MODELS__DIR=… python3 bench/relevance-floor.py
Each query runs `kefu kb search --json` (as the engine searches), so this takes a few minutes.
"""
import json, os, subprocess, sys, tempfile

BIN = os.environ.get("KEFU_BIN", "target/release/kefu")
env = dict(os.environ, KEFU__LOG__FILTER="error")
data = tempfile.mkdtemp(prefix="kefu-floor-")


def kefu(*args):
    return subprocess.run([BIN, *args, "--data-dir", data], env=env, capture_output=True, text=True, check=True).stdout


kefu("tenant", "create", "demo", "--admin-email", "floor@example.com")
kefu("kb", "import", "demo/knowledge", "--collection", "help")

inscope = [q["text"] for q in json.load(open("eval/datasets/shop-faq-zh.json"))["queries"]]
inscope_en = [q["text"] for q in json.load(open("eval/datasets/shop-questions-en.json"))["queries"]]
chat = [l.strip() for l in open("../shared/data/smp_ecdt_zh/smp2017_task1/develop/develop_chat.txt") if l.strip()][:100]
oos_en = [q for q, _ in json.load(open("eval/datasets/clinc150/data_full.json"))["oos_test"]][:100]


def best_dense(q):
    hits = json.loads(kefu("kb", "search", q, "--json", "--k", "10"))["hits"]
    return max([h["scores"]["dense"]["score"] for h in hits if h["scores"].get("dense")] or [0.0])


sets = {"in scope (zh shop FAQ queries)": inscope, "in scope (en shop questions)": inscope_en, "chit-chat (SMP2017, zh)": chat, "out of scope (CLINC150, en)": oos_en}
scores = {name: [best_dense(q) for q in qs] for name, qs in sets.items()}
print(f"best dense cosine per query against demo/knowledge ({os.path.basename(BIN)}, e5 embedder)")
print("| floor | " + " | ".join(f"{n}: kept" for n in scores) + " |")
print("|---:|" + "---:|" * len(scores))
for floor in [0.78, 0.80, 0.81, 0.82, 0.83, 0.84, 0.85, 0.86, 0.87, 0.88, 0.90]:
    cells = [f"{100 * sum(s >= floor for s in v) / len(v):.1f} %" for v in scores.values()]
    print(f"| {floor:.2f} | " + " | ".join(cells) + " |")
json.dump(scores, open(os.path.join(data, "scores.json"), "w"))
print(f"(scores in {data}/scores.json)", file=sys.stderr)
