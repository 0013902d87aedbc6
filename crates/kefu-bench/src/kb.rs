//! `kefu-bench kb`: knowledge-index scale. A synthetic corpus (mixed Chinese/English text over a Zipf-like
//! vocabulary, random unit vectors of the embedder's dimension) is indexed at each size; then BM25, dense and
//! hybrid searches are timed. Embedding is not part of this measurement (see `kefu-bench embed` for its speed):
//! this is what the node's index costs in time and memory as a knowledge base grows.

use std::time::Instant;

use kefu_knowledge::{Entry, Filter, Fusion, IndexSettings, SearchIndex, SearchParams};
use uuid::Uuid;

/// A small deterministic generator (xorshift), so every run indexes the same corpus.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Zipf-like: small ranks are much more frequent.
    fn zipf(&mut self, n: usize) -> usize {
        let u = self.unit().max(1e-6);
        ((n as f32).powf(u) - 1.0) as usize % n
    }
}

const ZH: &str = "退货退款物流快递订单发票优惠券积分会员地址修改取消支付分期保修售后质量尺码颜色库存预售发货签收客服时间运费价格";
const EN: &[&str] = &[
    "order",
    "refund",
    "return",
    "shipping",
    "delivery",
    "invoice",
    "coupon",
    "points",
    "member",
    "address",
    "cancel",
    "payment",
    "warranty",
    "quality",
    "size",
    "color",
    "stock",
    "express",
    "package",
    "tracking",
    "price",
    "account",
    "password",
    "policy",
    "days",
    "business",
    "warehouse",
    "customs",
    "international",
    "support",
];

fn vocabulary() -> Vec<String> {
    let zh: Vec<char> = ZH.chars().collect();
    let mut v: Vec<String> = zh.chunks(2).map(|c| c.iter().collect()).collect();
    v.extend(EN.iter().map(|s| s.to_string()));
    // A long tail of rarer terms.
    v.extend((0..5000).map(|i| format!("term{i}")));
    v
}

fn text(rng: &mut Rng, vocab: &[String], words: usize) -> String {
    let mut s = String::new();
    for _ in 0..words {
        s.push_str(&vocab[rng.zipf(vocab.len())]);
        s.push(' ');
    }
    s
}

fn vector(rng: &mut Rng, dim: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dim).map(|_| rng.unit() - 0.5).collect();
    kefu_llm::normalise(&mut v);
    v
}

pub(crate) fn rss_mib() -> f64 {
    crate::rss_kib(std::process::id()).map_or(0.0, |kib| kib as f64 / 1024.0)
}

pub(crate) fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub fn run(sizes: &[usize], dim: usize, queries: usize) -> anyhow::Result<()> {
    let vocab = vocabulary();
    let tenant = Uuid::from_u128(7);
    println!("| chunks | index chunks/s | RSS growth MiB | dense MiB | bm25 p50/p99 ms | dense p50/p99 ms | hybrid p50/p99 ms |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for &n in sizes {
        let before = rss_mib();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let index = SearchIndex::new(IndexSettings::default(), dim)?;
        let started = Instant::now();
        let batch = 10_000;
        let mut kept_vectors = Vec::new();
        for start in (0..n).step_by(batch) {
            let entries: Vec<Entry> = (start..(start + batch).min(n))
                .map(|i| {
                    let v = vector(&mut rng, dim);
                    if i % (n / queries.max(1)).max(1) == 0 && kept_vectors.len() < queries {
                        kept_vectors.push(v.clone());
                    }
                    Entry {
                        chunk_id: Uuid::from_u128(i as u128 + 1),
                        document_id: Uuid::from_u128((i / 20) as u128 + 1),
                        tenant_id: tenant,
                        collection: "default".into(),
                        lang: if i % 2 == 0 { "zh".into() } else { "en".into() },
                        tags: Vec::new(),
                        title: text(&mut rng, &vocab, 6),
                        body: text(&mut rng, &vocab, 80),
                        vectors: vec![v],
                    }
                })
                .collect();
            index.add(&entries)?;
        }
        index.commit()?;
        let build = started.elapsed().as_secs_f64();
        let grown = rss_mib() - before;
        let filter = Filter::tenant(tenant);
        let mut times = [Vec::new(), Vec::new(), Vec::new()];
        for q in 0..queries {
            let query = text(&mut rng, &vocab, 4);
            // A query vector near a stored one, as a paraphrase would be.
            let mut v = kept_vectors[q % kept_vectors.len()].clone();
            let noise = vector(&mut rng, dim);
            v.iter_mut().zip(&noise).for_each(|(a, b)| *a += 0.5 * b);
            kefu_llm::normalise(&mut v);
            for (slot, fusion) in [Fusion::Bm25, Fusion::Dense, SearchParams::default().fusion]
                .into_iter()
                .enumerate()
            {
                let p = SearchParams {
                    fusion,
                    ..SearchParams::default()
                };
                let t = Instant::now();
                let r = index.search(&query, Some(&v), &filter, &p)?;
                times[slot].push(t.elapsed().as_secs_f64() * 1000.0);
                std::hint::black_box(r);
            }
        }
        for t in &mut times {
            t.sort_by(f64::total_cmp);
        }
        println!(
            "| {n} | {:.0} | {grown:.0} | {:.0} | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} / {:.2} |",
            n as f64 / build,
            index.dense_memory_bytes() as f64 / (1024.0 * 1024.0),
            pct(&times[0], 0.5),
            pct(&times[0], 0.99),
            pct(&times[1], 0.5),
            pct(&times[1], 0.99),
            pct(&times[2], 0.5),
            pct(&times[2], 0.99),
        );
        drop(index);
    }
    Ok(())
}
