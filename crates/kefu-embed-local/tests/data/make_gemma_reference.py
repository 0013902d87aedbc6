#!/usr/bin/env python3
"""Reference vectors for kefu's EmbeddingGemma encoder, made by sentence-transformers (pip install
sentence-transformers) from the model directory `kefu model pull embeddinggemma` writes:

    python3 make_gemma_reference.py <models dir>/embeddinggemma > gemma_reference.json

Each item: the text, what it was embedded for (its prompt), the token count with <bos>/<eos>, the unit vector.
"""
import json
import sys

import torch
from sentence_transformers import SentenceTransformer

torch.set_num_threads(1)
model = SentenceTransformer(sys.argv[1], device='cpu')
TEXTS = [
    '我想退货', 'where is my refund?', '今天天气怎么样', '帮我订一张明天去北京的机票',
    'I lost my card, please block it', '播放周杰伦的歌', '订单 A1023 还没发货，能帮我查一下吗？',
    'My order #A1023 has not shipped yet, can you check?', '你好', 'ok',
]
PROMPTS = {'classify': 'Classification', 'query': 'query', 'passage': 'document'}
items = []
for kind, name in PROMPTS.items():
    texts = TEXTS if kind == 'classify' else TEXTS[:4]
    prompt = model.prompts[name]
    vectors = model.encode(texts, prompt_name=name, normalize_embeddings=True)
    for text, v in zip(texts, vectors):
        tokens = len(model.tokenizer(prompt + text)['input_ids'])
        items.append({'kind': kind, 'text': text, 'tokens': tokens, 'vector': [round(float(x), 6) for x in v]})
json.dump({'dim': int(vectors.shape[1]), 'items': items}, sys.stdout, ensure_ascii=False)
