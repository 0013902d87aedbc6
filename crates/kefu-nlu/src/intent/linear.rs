//! Multinomial logistic regression over a sparse block and a dense block, fitted to its L2-regularised optimum
//! (mean cross-entropy + ‖W‖² / (2·C·n), the bias unpenalised: scikit-learn's `LogisticRegression(C)` objective)
//! by full-batch L-BFGS. The gradient is summed over [`SHARES`] fixed slices of the rows, each on its own thread,
//! in slice order, so training gives the same bits on any machine.
//!
//! Written here rather than taken from a crate: linfa-logistic and smartcore want dense `ndarray` matrices, which
//! at 50k sparse features × 150 classes would cost gigabytes, and argmin's generic L-BFGS clones its
//! parameter vector (millions of floats) several times per iteration. Measured on BANKING77 (bench/RESULTS.md):
//! the per-example SGD this replaced stopped short of the optimum and lost 0.3–0.9 accuracy points.

use serde::{Deserialize, Serialize};

use super::features::Sparse;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinearConfig {
    /// Inverse regularisation strength (scikit-learn's `C`): larger fits the training data more closely.
    pub c: f32,
    /// L-BFGS iterations at most.
    pub max_iterations: usize,
    /// Stop when the largest gradient component is below this.
    pub tolerance: f32,
    /// Correction pairs L-BFGS keeps.
    pub memory: usize,
}

impl Default for LinearConfig {
    fn default() -> Self {
        LinearConfig {
            // Chosen on BANKING77's development tenth (bench/RESULTS.md).
            c: 10.0,
            max_iterations: 500,
            // Tighter than scikit-learn's 1e-4: the last digits of BANKING77 accuracy moved until here.
            tolerance: 1e-5,
            memory: 8,
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

/// Adds `x · row` to `out` for every (feature, value) of an example: the logits of a weight matrix `w`.
fn scores_into(
    w: &[f32],
    bias: &[f32],
    sparse: &Sparse,
    dense: &[f32],
    base: usize,
    out: &mut [f32],
) {
    let k = bias.len();
    out.copy_from_slice(bias);
    for &(f, x) in sparse {
        let row = &w[f as usize * k..(f as usize + 1) * k];
        for (o, w) in out.iter_mut().zip(row) {
            *o += x * w;
        }
    }
    for (d, &x) in dense.iter().enumerate() {
        if x == 0.0 {
            continue;
        }
        let row = &w[base + d * k..base + (d + 1) * k];
        for (o, w) in out.iter_mut().zip(row) {
            *o += x * w;
        }
    }
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
        let mut out = vec![0.0; self.classes];
        scores_into(
            &self.weights,
            &self.bias,
            sparse,
            dense,
            self.sparse_dim * self.classes,
            &mut out,
        );
        out
    }

    /// Fits the weights to the regularised optimum (see the module docs); the same rows give the same bits.
    pub fn train(&mut self, rows: &[Row<'_>], cfg: &LinearConfig) {
        let n_weights = self.weights.len();
        let mut theta = vec![0.0f32; n_weights + self.classes];
        let problem = Problem {
            rows,
            classes: self.classes,
            base: self.sparse_dim * self.classes,
            n_weights,
            l2: 1.0 / (cfg.c.max(1e-6) as f64 * rows.len().max(1) as f64),
        };
        if !rows.is_empty() {
            lbfgs(&problem, &mut theta, cfg);
        }
        self.bias = theta.split_off(n_weights);
        self.weights = theta;
    }
}

struct Problem<'a> {
    rows: &'a [Row<'a>],
    classes: usize,
    base: usize,
    n_weights: usize,
    l2: f64,
}

/// Slices of the rows whose gradients are computed in parallel (one thread and one gradient buffer each) and summed
/// in order. Fixed, not the core count, so the sum's rounding and thus the model do not depend on the machine.
const SHARES: usize = 4;

impl Problem<'_> {
    /// The objective at `theta` (weights then biases), its gradient written into `grad`.
    fn value_and_gradient(&self, theta: &[f32], grad: &mut [f32]) -> f64 {
        let k = self.classes;
        let (w, bias) = theta.split_at(self.n_weights);
        let share = self.rows.len().div_ceil(SHARES);
        let parts: Vec<(f64, Vec<f32>)> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .rows
                .chunks(share.max(1))
                .map(|chunk| {
                    s.spawn(move || {
                        let mut g = vec![0.0f32; theta.len()];
                        let mut loss = 0.0f64;
                        let mut p = vec![0.0f32; k];
                        let mut scores = vec![0.0f32; k];
                        for row in chunk {
                            scores_into(w, bias, row.sparse, row.dense, self.base, &mut scores);
                            softmax_into(&scores, &mut p);
                            loss -= f64::from(p[row.label].max(1e-30)).ln();
                            p[row.label] -= 1.0;
                            let (gw, gb) = g.split_at_mut(self.n_weights);
                            for &(f, x) in row.sparse {
                                let gr = &mut gw[f as usize * k..(f as usize + 1) * k];
                                for (gi, pi) in gr.iter_mut().zip(&p) {
                                    *gi += x * pi;
                                }
                            }
                            for (d, &x) in row.dense.iter().enumerate() {
                                if x == 0.0 {
                                    continue;
                                }
                                let gr = &mut gw[self.base + d * k..self.base + (d + 1) * k];
                                for (gi, pi) in gr.iter_mut().zip(&p) {
                                    *gi += x * pi;
                                }
                            }
                            for (gi, pi) in gb.iter_mut().zip(&p) {
                                *gi += pi;
                            }
                        }
                        (loss, g)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("gradient thread"))
                .collect()
        });
        let n = self.rows.len() as f32;
        grad.iter_mut().for_each(|g| *g = 0.0);
        let mut loss = 0.0f64;
        for (l, g) in parts {
            loss += l;
            for (a, b) in grad.iter_mut().zip(&g) {
                *a += b;
            }
        }
        loss /= f64::from(n);
        grad.iter_mut().for_each(|g| *g /= n);
        let mut penalty = 0.0f64;
        let l2 = self.l2 as f32;
        for (g, &t) in grad[..self.n_weights]
            .iter_mut()
            .zip(&theta[..self.n_weights])
        {
            *g += l2 * t;
            penalty += f64::from(t) * f64::from(t);
        }
        loss + 0.5 * self.l2 * penalty
    }
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum()
}

/// Limited-memory BFGS (Nocedal & Wright, algorithm 7.4) with a backtracking Armijo line search, in place.
fn lbfgs(problem: &Problem<'_>, theta: &mut [f32], cfg: &LinearConfig) {
    let len = theta.len();
    let mut grad = vec![0.0f32; len];
    let mut value = problem.value_and_gradient(theta, &mut grad);
    let mut history: std::collections::VecDeque<(Vec<f32>, Vec<f32>, f64)> = Default::default();
    let mut direction = vec![0.0f32; len];
    let mut trial = vec![0.0f32; len];
    let mut trial_grad = vec![0.0f32; len];
    let mut alphas = Vec::with_capacity(cfg.memory);
    for iteration in 0..cfg.max_iterations {
        let max_g = grad.iter().fold(0.0f32, |m, g| m.max(g.abs()));
        if max_g < cfg.tolerance {
            break;
        }
        // Two-loop recursion: direction = −H·grad.
        direction.copy_from_slice(&grad);
        alphas.clear();
        for (s, y, rho) in history.iter().rev() {
            let a = rho * dot(s, &direction);
            for (d, yi) in direction.iter_mut().zip(y) {
                *d -= (a as f32) * yi;
            }
            alphas.push(a);
        }
        if let Some((s, y, _)) = history.back() {
            let gamma = (dot(s, y) / dot(y, y)) as f32;
            direction.iter_mut().for_each(|d| *d *= gamma);
        }
        for ((s, y, rho), a) in history.iter().zip(alphas.iter().rev()) {
            let b = rho * dot(y, &direction);
            for (d, si) in direction.iter_mut().zip(s) {
                *d += ((a - b) as f32) * si;
            }
        }
        direction.iter_mut().for_each(|d| *d = -*d);
        let mut slope = dot(&grad, &direction);
        if slope >= 0.0 {
            // Not a descent direction (numerical trouble): restart from steepest descent.
            history.clear();
            for (d, g) in direction.iter_mut().zip(&grad) {
                *d = -g;
            }
            slope = dot(&grad, &direction);
        }
        // The first step is scaled to a unit move; later ones start at the quasi-Newton step of 1.
        let mut step = if iteration == 0 {
            1.0 / dot(&grad, &grad).sqrt().max(1e-12)
        } else {
            1.0
        };
        let mut accepted = None;
        for _ in 0..30 {
            for ((t, x), d) in trial.iter_mut().zip(theta.iter()).zip(&direction) {
                *t = x + (step as f32) * d;
            }
            let v = problem.value_and_gradient(&trial, &mut trial_grad);
            if v <= value + 1e-4 * step * slope {
                accepted = Some(v);
                break;
            }
            step *= 0.5;
        }
        let Some(new_value) = accepted else {
            break;
        };
        let s: Vec<f32> = trial.iter().zip(theta.iter()).map(|(a, b)| a - b).collect();
        let y: Vec<f32> = trial_grad.iter().zip(&grad).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        theta.copy_from_slice(&trial);
        std::mem::swap(&mut grad, &mut trial_grad);
        let improvement = value - new_value;
        value = new_value;
        // Keep only pairs that keep the inverse-Hessian estimate positive definite.
        if sy > 1e-12 {
            if history.len() == cfg.memory.max(1) {
                history.pop_front();
            }
            history.push_back((s, y, 1.0 / sy));
        }
        if improvement.abs() <= 1e-10 * value.abs().max(1.0) {
            break;
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

    fn three_classes() -> Vec<Sparse> {
        (0..3).map(|c| vec![(c as u32, 1.0)]).collect()
    }

    #[test]
    fn learns_a_separable_problem_and_calibrates() {
        // Feature 0 → class 0, feature 1 → class 1, feature 2 → class 2.
        let xs = three_classes();
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

    /// At the optimum the gradient vanishes: for one feature seen with two labels in the ratio 3:1 and little
    /// regularisation, the fitted probabilities approach 3/4 and 1/4.
    #[test]
    fn reaches_the_regularised_optimum() {
        let x: Sparse = vec![(0, 1.0)];
        let dense = [0.5f32];
        let rows: Vec<Row<'_>> = (0..40)
            .map(|i| Row {
                sparse: &x,
                dense: &dense,
                label: usize::from(i % 4 == 0),
            })
            .collect();
        let mut m = Linear::new(2, 1, 1);
        let cfg = LinearConfig {
            c: 1e4,
            tolerance: 1e-6,
            ..LinearConfig::default()
        };
        m.train(&rows, &cfg);
        let mut p = [0.0f32; 2];
        softmax_into(&m.logits(&x, &dense), &mut p);
        assert!((p[0] - 0.75).abs() < 1e-3, "{p:?}");
        // Strong regularisation pulls the weights (not the bias) toward zero: the bias alone carries the prior.
        let mut strong = Linear::new(2, 1, 1);
        strong.train(
            &rows,
            &LinearConfig {
                c: 1e-4,
                ..LinearConfig::default()
            },
        );
        assert!(
            strong.weights.iter().all(|w| w.abs() < 1e-2),
            "{:?}",
            strong.weights
        );
        softmax_into(&strong.logits(&x, &dense), &mut p);
        assert!((p[0] - 0.75).abs() < 1e-2, "{p:?}");
    }

    #[test]
    fn training_is_reproducible() {
        let xs = three_classes();
        let rows: Vec<Row<'_>> = (0..31)
            .map(|i| Row {
                sparse: &xs[i % 3],
                dense: &[],
                label: (i * 7 % 5) % 3,
            })
            .collect();
        let fit = || {
            let mut m = Linear::new(3, 3, 0);
            m.train(&rows, &LinearConfig::default());
            (m.weights, m.bias)
        };
        assert_eq!(fit(), fit());
    }
}
