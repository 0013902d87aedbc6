//! Multinomial logistic regression over a sparse block and dense blocks, trained by per-example SGD with a
//! linearly decaying learning rate (the fastText schedule) and L2 weight decay on the rows an example touches.
//! Written here rather than taken from a crate: the available ones (linfa-logistic, smartcore) want dense
//! `ndarray` matrices, which at 100k sparse features × 150 classes would cost gigabytes and minutes.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::features::Sparse;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinearConfig {
    pub epochs: usize,
    pub learning_rate: f32,
    pub l2: f32,
    pub seed: u64,
}

impl Default for LinearConfig {
    fn default() -> Self {
        LinearConfig {
            epochs: 30,
            learning_rate: 1.0,
            l2: 1e-5,
            seed: 7,
        }
    }
}

/// One training row: sparse features (ids below `sparse_dim`) and a dense tail (length `dense_dim`).
pub(crate) struct Row<'a> {
    pub sparse: &'a Sparse,
    pub dense: &'a [f32],
    pub label: usize,
}

/// Weights laid out feature-major (`w[f * classes + k]`) so one feature's class weights are contiguous.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    pub classes: usize,
    pub sparse_dim: usize,
    pub dense_dim: usize,
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
}

impl Linear {
    pub fn new(classes: usize, sparse_dim: usize, dense_dim: usize) -> Linear {
        Linear {
            classes,
            sparse_dim,
            dense_dim,
            weights: vec![0.0; (sparse_dim + dense_dim) * classes],
            bias: vec![0.0; classes],
        }
    }

    /// Raw class scores.
    pub fn logits(&self, sparse: &Sparse, dense: &[f32]) -> Vec<f32> {
        let k = self.classes;
        let mut out = self.bias.clone();
        for &(f, x) in sparse {
            let row = &self.weights[f as usize * k..(f as usize + 1) * k];
            for (o, w) in out.iter_mut().zip(row) {
                *o += x * w;
            }
        }
        let base = self.sparse_dim * k;
        for (d, &x) in dense.iter().enumerate() {
            if x == 0.0 {
                continue;
            }
            let row = &self.weights[base + d * k..base + (d + 1) * k];
            for (o, w) in out.iter_mut().zip(row) {
                *o += x * w;
            }
        }
        out
    }

    pub fn train(&mut self, rows: &[Row<'_>], cfg: &LinearConfig) {
        let k = self.classes;
        let mut order: Vec<usize> = (0..rows.len()).collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
        let total = (cfg.epochs * rows.len()).max(1) as f32;
        let mut step = 0usize;
        let mut grad = vec![0.0f32; k];
        let base = self.sparse_dim * k;
        for _ in 0..cfg.epochs {
            order.shuffle(&mut rng);
            for &i in &order {
                let lr = cfg.learning_rate * (1.0 - step as f32 / total);
                step += 1;
                let row = &rows[i];
                let scores = self.logits(row.sparse, row.dense);
                softmax_into(&scores, &mut grad);
                grad[row.label] -= 1.0;
                let decay = 1.0 - lr * cfg.l2;
                for &(f, x) in row.sparse {
                    let w = &mut self.weights[f as usize * k..(f as usize + 1) * k];
                    for (w, g) in w.iter_mut().zip(&grad) {
                        *w = *w * decay - lr * g * x;
                    }
                }
                for (d, &x) in row.dense.iter().enumerate() {
                    let w = &mut self.weights[base + d * k..base + (d + 1) * k];
                    for (w, g) in w.iter_mut().zip(&grad) {
                        *w = *w * decay - lr * g * x;
                    }
                }
                for (b, g) in self.bias.iter_mut().zip(&grad) {
                    *b -= lr * g;
                }
            }
        }
    }
}

/// Numerically stable softmax of `scores` into `out`.
pub(crate) fn softmax_into(scores: &[f32], out: &mut [f32]) {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for (o, s) in out.iter_mut().zip(scores) {
        *o = (s - max).exp();
        sum += *o;
    }
    for o in out.iter_mut() {
        *o /= sum;
    }
}

/// Mean negative log-likelihood of the true labels at temperature `t`.
fn nll(logits: &[Vec<f32>], labels: &[usize], t: f32) -> f64 {
    let mut total = 0.0f64;
    let mut p = Vec::new();
    for (l, &y) in logits.iter().zip(labels) {
        let scaled: Vec<f32> = l.iter().map(|x| x / t).collect();
        p.resize(l.len(), 0.0);
        softmax_into(&scaled, &mut p);
        total -= (p[y].max(1e-12) as f64).ln();
    }
    total / logits.len().max(1) as f64
}

/// Temperature scaling (Guo et al. 2017): the `t` minimising held-out NLL, by golden-section search on `ln t`.
pub(crate) fn fit_temperature(logits: &[Vec<f32>], labels: &[usize]) -> f32 {
    if logits.is_empty() {
        return 1.0;
    }
    let (mut a, mut b) = ((0.05f32).ln(), (20.0f32).ln());
    let phi = 0.618_034f32;
    for _ in 0..40 {
        let c = b - phi * (b - a);
        let d = a + phi * (b - a);
        if nll(logits, labels, c.exp()) < nll(logits, labels, d.exp()) {
            b = d;
        } else {
            a = c;
        }
    }
    ((a + b) / 2.0).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_separable_problem_and_calibrates() {
        // Feature 0 → class 0, feature 1 → class 1, feature 2 → class 2.
        let xs: Vec<Sparse> = (0..3).map(|c| vec![(c as u32, 1.0)]).collect();
        let rows: Vec<Row<'_>> = (0..30)
            .map(|i| Row {
                sparse: &xs[i % 3],
                dense: &[],
                label: i % 3,
            })
            .collect();
        let mut m = Linear::new(3, 3, 0);
        m.train(&rows, &LinearConfig::default());
        for (c, x) in xs.iter().enumerate() {
            let l = m.logits(x, &[]);
            let best = (0..3).max_by(|&a, &b| l[a].total_cmp(&l[b])).unwrap();
            assert_eq!(best, c);
        }
        let logits: Vec<Vec<f32>> = rows.iter().map(|r| m.logits(r.sparse, r.dense)).collect();
        let labels: Vec<usize> = rows.iter().map(|r| r.label).collect();
        let t = fit_temperature(&logits, &labels);
        // Perfectly separable data is best fit by sharpening.
        assert!(t < 1.0, "{t}");
    }
}
