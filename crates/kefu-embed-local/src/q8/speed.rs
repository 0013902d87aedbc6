//! The int8 products' speed on every kernel path this CPU has (`kefu-bench products`), and the seeded inputs the
//! tests and it share.
//!
//! The encoder's latency is mostly these products (bench/RESULTS.md), and a host is often shared: timing two builds
//! one after the other mixes their difference with the host's. Running every path in one process, interleaved round
//! by round, compares them under the same conditions.

use std::time::Instant;

use super::{Kernel, Q8Matrix, BLOCK};

/// One kernel path's speed at one row count ([`product_speed`]).
#[derive(Debug, Clone)]
pub struct ProductSpeed {
    /// The path: `AMX, VNNI outside 9-32 rows`, `AVX512-VNNI`, `AVX-512`, `AVX2` or `scalar`.
    pub kernel: &'static str,
    /// `4-bit` (e5's weights) or `7-bit` (MiniLM's, rounded at load).
    pub weights: &'static str,
    /// Token rows per product.
    pub rows: usize,
    /// Billions of multiply-adds per second: the best round.
    pub gmacs: f64,
}

/// The projections of one 384-wide encoder layer (e5-small's and MiniLM's): `[out, in]` of the fused query, key and
/// value projection, the attention output, and the feed-forward in and out.
const LAYER: [(usize, usize); 4] = [(1152, 384), (384, 384), (1536, 384), (384, 1536)];

/// One layer's products ([`LAYER`]) with seeded weights, 4-bit and 7-bit, on each kernel path, for each row count,
/// on one thread (as the latency bar is set): the best of `rounds`, the paths interleaved within each round. A pass
/// repeats the layer until it has done about 100 million multiply-adds (2 ms at 50 GMAC/s), well above the clock's
/// resolution.
pub fn product_speed(rows: &[usize], rounds: usize) -> Vec<ProductSpeed> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    pool.install(|| {
        let kinds: [(&'static str, Vec<Q8Matrix>); 2] = [
            (
                "4-bit",
                LAYER
                    .iter()
                    .zip(1..)
                    .map(|(&(out, inp), seed)| {
                        Q8Matrix::from_q4_0(&random_q4(out, inp, seed), out, inp)
                    })
                    .collect(),
            ),
            (
                "7-bit",
                LAYER
                    .iter()
                    .map(|&(out, inp)| Q8Matrix::from_f32(&weights(out, inp), out, inp))
                    .collect(),
            ),
        ];
        let layer_macs: usize = LAYER.iter().map(|&(out, inp)| out * inp).sum();
        // Each row count's inputs, one per projection (the same widths for both weight kinds), made once.
        let inputs: Vec<Vec<Vec<f32>>> = rows
            .iter()
            .map(|&r| LAYER.iter().map(|&(_, inp)| activations(r, inp)).collect())
            .collect();
        // Every (weights, path, row count) cell in the order of the table, each with its best time per pass.
        let kernels = timed_paths();
        let cells: Vec<(&'static str, &[Q8Matrix], Kernel, usize)> = kinds
            .iter()
            .flat_map(|(name, matrices)| {
                kernels.iter().flat_map(move |&kernel| {
                    (0..rows.len()).map(move |i| (*name, matrices.as_slice(), kernel, i))
                })
            })
            .collect();
        let mut best = vec![f64::MAX; cells.len()];
        for _ in 0..rounds {
            for (&(_, matrices, kernel, i), best) in cells.iter().zip(&mut best) {
                let passes = (100_000_000 / (layer_macs * rows[i])).max(1);
                let start = Instant::now();
                for _ in 0..passes {
                    for (m, x) in matrices.iter().zip(&inputs[i]) {
                        std::hint::black_box(m.matmul_with(x, kernel));
                    }
                }
                *best = best.min(start.elapsed().as_secs_f64() / passes as f64);
            }
        }
        cells
            .iter()
            .zip(best)
            .map(|(&(weights, _, kernel, i), best)| ProductSpeed {
                kernel: kernel.name(),
                weights,
                rows: rows[i],
                gmacs: (layer_macs * rows[i]) as f64 / best / 1e9,
            })
            .collect()
    })
}

/// The paths [`product_speed`] times: every one the CPU has but the scalar loop, unless that is the only one. Outside
/// tests a matrix keeps only the SIMD layout, which the scalar loop cannot read.
fn timed_paths() -> Vec<Kernel> {
    Kernel::available()
        .into_iter()
        .filter(|k| !matches!(k, Kernel::Scalar) || matches!(Kernel::detect(), Kernel::Scalar))
        .collect()
}

/// Q4_0 rows from a seeded generator (xorshift): random nibbles and scales.
pub(super) fn random_q4(out: usize, inp: usize, seed: u64) -> Vec<u8> {
    let mut s = seed;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut bytes = Vec::new();
    for _ in 0..out * inp / BLOCK {
        let scale = half::f16::from_f32((next() % 1000) as f32 / 20_000.0 + 0.001);
        bytes.extend(scale.to_le_bytes());
        bytes.extend((0..16).map(|_| next() as u8));
    }
    bytes
}

/// `rows × inp` activations spread over ±5.2.
pub(super) fn activations(rows: usize, inp: usize) -> Vec<f32> {
    (0..rows * inp)
        .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 97.0)
        .collect()
}

/// `out × inp` f32 weights spread over ±1.65.
pub(super) fn weights(out: usize, inp: usize) -> Vec<f32> {
    (0..out * inp)
        .map(|i| ((i * 104_729 % 2003) as f32 - 1001.0) / 613.0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_gets_a_speed_for_each_weight_kind_and_row_count() {
        let speeds = product_speed(&[1, 5], 1);
        assert_eq!(speeds.len(), 2 * timed_paths().len() * 2);
        // In order: weight kind, then path (the detected one first), then row count.
        assert_eq!(speeds[0].kernel, Kernel::detect().name());
        assert_eq!((speeds[0].weights, speeds[0].rows), ("4-bit", 1));
        assert_eq!((speeds[1].weights, speeds[1].rows), ("4-bit", 5));
        let last = speeds.last().expect("rows");
        assert_eq!((last.weights, last.rows), ("7-bit", 5));
        for s in &speeds {
            assert!(s.gmacs.is_finite() && s.gmacs > 0.0, "{s:?}");
        }
    }
}
