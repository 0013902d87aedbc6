//! A BERT-style encoder (XLM-R and MiniLM share it): embeddings, post-LayerNorm transformer layers, mean pooling.
//!
//! Several texts run as one pass: the token rows of every segment are stacked into one `[T, H]` matrix so each
//! weight matrix is streamed once per batch; attention runs per segment, so no padding and no mask are needed.
//!
//! Everything but the f32 projections and the attention products of long segments (see [`GEMM_FROM`]) runs on plain
//! row-major `Vec<f32>`s, inside a SIMD frame (see [`Kernel::vectorize`]). A query is a dozen tokens, so each of
//! candle's tensor operations (an allocation, a dispatch, a copy to make heads contiguous) cost more than its
//! arithmetic; profiles put them at a third of an e5 query once the projections ran in int8.

use candle_core::{Device, Tensor};

use crate::q8::{Kernel, LANES};
use crate::EmbedError;

/// The word-embedding table. e5 keeps it 4-bit (250k rows would be 384 MB as f32) and expands only the rows used.
pub(crate) enum WordTable {
    /// `[rows, H]`, row-major.
    F32(Vec<f32>),
    Q4 {
        /// Q4_0 blocks, row-major, `hidden / 32` blocks per row.
        blocks: Vec<u8>,
        rows: usize,
    },
}

/// A projection matrix.
pub(crate) enum Weight {
    /// `[in, out]` f32, applied as `x · W`.
    F32(Tensor),
    /// `[out, in]` 4-bit values as int8 blocks, applied with int8 activations as the reference engine does
    /// (see [`crate::q8`]).
    Q8(crate::q8::Q8Matrix),
}

impl Weight {
    /// `x · W + b` for `x` of `rows × in`, row-major; the result is `rows × out`. An empty `b` is no bias.
    pub(crate) fn apply(&self, x: &[f32], b: &[f32]) -> Result<Vec<f32>, EmbedError> {
        Ok(match self {
            Weight::F32(w) => {
                let (inp, out) = w.dims2()?;
                let x = Tensor::from_slice(x, (x.len() / inp, inp), &Device::Cpu)?;
                let mut y = x.matmul(w)?.flatten_all()?.to_vec1::<f32>()?;
                for row in y.chunks_exact_mut(out) {
                    row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
                }
                y
            }
            Weight::Q8(w) if b.is_empty() => w.matmul(x),
            Weight::Q8(w) => w.matmul_bias(x, b),
        })
    }
}

pub(crate) struct Layer {
    /// Query, key and value projections side by side, applied as one matmul.
    pub qkv_w: Weight,
    pub qkv_b: Vec<f32>,
    pub out_w: Weight,
    pub out_b: Vec<f32>,
    /// LayerNorm weight and bias after attention.
    pub attn_ln: (Vec<f32>, Vec<f32>),
    pub ff_in_w: Weight,
    pub ff_in_b: Vec<f32>,
    pub ff_out_w: Weight,
    pub ff_out_b: Vec<f32>,
    /// LayerNorm weight and bias after the feed-forward block.
    pub out_ln: (Vec<f32>, Vec<f32>),
}

pub(crate) struct Encoder {
    pub hidden: usize,
    pub heads: usize,
    pub eps: f32,
    /// Longest segment, special tokens included.
    pub max_positions: usize,
    pub word: WordTable,
    /// `[max_positions, H]` (at least), indexed from 0 at each segment start.
    pub position: Vec<f32>,
    /// Token type 0, `[H]`.
    pub token_type: Vec<f32>,
    pub emb_ln: (Vec<f32>, Vec<f32>),
    pub layers: Vec<Layer>,
}

/// A weight given as `[out, in]` (PyTorch layout), stored transposed and contiguous for `x · W`.
pub(crate) fn linear_weight(w: Tensor) -> Result<Weight, EmbedError> {
    Ok(Weight::F32(w.t()?.contiguous()?))
}

/// A weight given as `[out, in]` (PyTorch layout), rounded to 7-bit blocks for the int8 kernels (see [`crate::q8`]);
/// f32 when its input width is not a whole number of blocks.
pub(crate) fn int8_weight(w: Tensor) -> Result<Weight, EmbedError> {
    let (out, inp) = w.dims2()?;
    if !inp.is_multiple_of(crate::q8::BLOCK) {
        return linear_weight(w);
    }
    let values = w.flatten_all()?.to_vec1::<f32>()?;
    Ok(Weight::Q8(crate::q8::Q8Matrix::from_f32(&values, out, inp)))
}

/// A tensor's values, row-major.
pub(crate) fn values(t: &Tensor) -> Result<Vec<f32>, EmbedError> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

/// One Q4_0 block (an fp16 scale and 16 nibble bytes; byte j holds value j in its low nibble and value j + 16 in
/// its high one, both stored + 8): its scale and its 32 values in −8..=7.
pub(crate) fn q4_0_block(block: &[u8]) -> (f32, [i8; 32]) {
    let scale = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
    let mut values = [0i8; 32];
    for (j, &byte) in block[2..18].iter().enumerate() {
        values[j] = (byte & 0x0f) as i8 - 8;
        values[j + 16] = (byte >> 4) as i8 - 8;
    }
    (scale, values)
}

/// Expands Q4_0 rows (18-byte blocks, see [`q4_0_block`]) into `out`.
pub(crate) fn dequantize_q4_0(blocks: &[u8], out: &mut [f32]) {
    for (block, dst) in blocks.chunks_exact(18).zip(out.chunks_exact_mut(32)) {
        let (scale, values) = q4_0_block(block);
        for (d, v) in dst.iter_mut().zip(values) {
            *d = f32::from(v) * scale;
        }
    }
}

/// GELU in its exact form, `x · (1 + erf(x / √2)) / 2`, in place.
///
/// candle's `gelu_erf` calls libm's scalar `erff` once per value, which was about a sixth of an e5 query's time.
/// Here erf is the rational approximation Eigen and XLA use for f32 (odd numerator of degree 13 over an even
/// denominator of degree 8 in x, input clamped to ±4 where erf is ±1 in f32; |error| < 5e-7, checked in the tests
/// below). It has no branches, so inside a SIMD frame it compiles to vector code.
pub(crate) fn gelu_erf(values: &mut [f32]) {
    struct Gelu<'a>(&'a mut [f32]);
    impl pulp::NullaryFnOnce for Gelu<'_> {
        type Output = ();
        #[inline(always)]
        fn call(self) {
            for v in self.0.iter_mut() {
                *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
            }
        }
    }
    crate::q8::Kernel::detect().vectorize(Gelu(values));
}

#[inline(always)]
fn erf(x: f32) -> f32 {
    const ALPHA: [f32; 7] = [
        -2.726_142_3e-10,
        2.770_681_4e-8,
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906_3e-4,
        -2.954_6e-3,
        -1.609_603_3e-2,
    ];
    const BETA: [f32; 5] = [
        -1.456_607_2e-5,
        -2.133_740_6e-4,
        -1.682_827e-3,
        -7.373_329e-3,
        -1.426_474e-2,
    ];
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = ALPHA.iter().fold(0.0, |p, &a| p * x2 + a) * x;
    let q = BETA.iter().fold(0.0, |q, &b| q * x2 + b);
    p / q
}

/// An encoder [`embed_windows`] can run: pooled states per layer for a batch of model inputs.
pub(crate) trait Network: Send + Sync {
    /// Width of one pooled block.
    fn hidden(&self) -> usize;
    /// Longest model input, special tokens included.
    fn max_positions(&self) -> usize;
    /// How many transformer layers it has.
    fn depth(&self) -> usize;
    /// [`Network::forward_pooled`] on checked input: every segment within 1..=`max_positions` tokens, `deepest` the
    /// deepest of `layers` and within the model; layers past it are not run.
    fn forward(
        &self,
        segments: &[Vec<u32>],
        layers: &[usize],
        deepest: usize,
    ) -> Result<Vec<Vec<f32>>, EmbedError>;

    /// Mean-pooled states (not normalised) after each of `layers` (0 = the embedding output), concatenated
    /// shallowest first, one row per segment. Each segment is a full model input (special tokens included); a
    /// segment too long or empty, or a layer past the last, is an error.
    fn forward_pooled(
        &self,
        segments: &[Vec<u32>],
        layers: &[usize],
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        if segments.is_empty() {
            return Ok(Vec::new());
        }
        let max = self.max_positions();
        if let Some(s) = segments.iter().find(|s| s.is_empty() || s.len() > max) {
            return Err(EmbedError::Model(format!(
                "segment of {} tokens (1..={max} allowed)",
                s.len()
            )));
        }
        let deepest = layers.iter().copied().max().unwrap_or(0);
        if deepest > self.depth() {
            return Err(EmbedError::Model(format!(
                "layer {deepest} asked for; the model has {}",
                self.depth()
            )));
        }
        self.forward(segments, layers, deepest)
    }
}

/// The mean of each segment's rows of `x` (`[T, h]`, the segments' rows one after another, `lens` of them each).
pub(crate) fn mean_rows(x: &[f32], lens: &[usize], h: usize) -> Vec<Vec<f32>> {
    let mut rows = x.chunks_exact(h);
    lens.iter()
        .map(|&len| {
            let mut sum = vec![0f32; h];
            for row in (&mut rows).take(len) {
                sum.iter_mut().zip(row).for_each(|(s, v)| *s += v);
            }
            sum.iter().map(|s| s / len as f32).collect()
        })
        .collect()
}

impl Network for Encoder {
    fn hidden(&self) -> usize {
        self.hidden
    }
    fn max_positions(&self) -> usize {
        self.max_positions
    }
    fn depth(&self) -> usize {
        self.layers.len()
    }

    /// Layers past `deepest` are not run, so pooling an early layer alone is a smaller, faster encoder.
    fn forward(
        &self,
        segments: &[Vec<u32>],
        layers: &[usize],
        deepest: usize,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let h = self.hidden;
        let kernel = Kernel::detect();
        let lens: Vec<usize> = segments.iter().map(Vec::len).collect();
        let mut pooled = vec![Vec::with_capacity(h * layers.len()); segments.len()];
        let pool = |x: &[f32], index: usize, pooled: &mut Vec<Vec<f32>>| {
            if layers.contains(&index) {
                for (out, mean) in pooled.iter_mut().zip(mean_rows(x, &lens, h)) {
                    out.extend(mean);
                }
            }
        };
        let mut x = self.embed_tokens(segments, kernel)?;
        pool(&x, 0, &mut pooled);
        for (index, layer) in self.layers.iter().enumerate().take(deepest) {
            let qkv = layer.qkv_w.apply(&x, &layer.qkv_b)?;
            let ctx = attention(kernel, &qkv, &lens, h, self.heads)?;
            let attn = layer.out_w.apply(&ctx, &layer.out_b)?;
            kernel.vectorize(AddNorm {
                x: &mut x,
                residual: Some(&attn),
                ln: &layer.attn_ln,
                eps: self.eps,
            });
            let mut mid = layer.ff_in_w.apply(&x, &layer.ff_in_b)?;
            gelu_erf(&mut mid);
            let ff = layer.ff_out_w.apply(&mid, &layer.ff_out_b)?;
            kernel.vectorize(AddNorm {
                x: &mut x,
                residual: Some(&ff),
                ln: &layer.out_ln,
                eps: self.eps,
            });
            pool(&x, index + 1, &mut pooled);
        }
        Ok(pooled)
    }
}

impl Encoder {
    /// Word + position + token-type embeddings of every segment's tokens, layer-normalised: `[T, H]`.
    fn embed_tokens(&self, segments: &[Vec<u32>], kernel: Kernel) -> Result<Vec<f32>, EmbedError> {
        let h = self.hidden;
        let total: usize = segments.iter().map(Vec::len).sum();
        let mut x = vec![0f32; total * h];
        let mut rows = x.chunks_exact_mut(h);
        for seg in segments {
            for (pos, (&id, row)) in seg.iter().zip(&mut rows).enumerate() {
                let id = id as usize;
                match &self.word {
                    WordTable::F32(table) if id < table.len() / h => {
                        row.copy_from_slice(&table[id * h..(id + 1) * h]);
                    }
                    WordTable::Q4 { blocks, rows } if id < *rows => {
                        let row_bytes = h / 32 * 18;
                        dequantize_q4_0(&blocks[id * row_bytes..(id + 1) * row_bytes], row);
                    }
                    _ => {
                        return Err(EmbedError::Model(format!(
                            "token id {id} outside the vocabulary"
                        )))
                    }
                }
                let position = &self.position[pos * h..(pos + 1) * h];
                for ((v, p), t) in row.iter_mut().zip(position).zip(&self.token_type) {
                    *v += p + t;
                }
            }
        }
        kernel.vectorize(AddNorm {
            x: &mut x,
            residual: None,
            ln: &self.emb_ln,
            eps: self.eps,
        });
        Ok(x)
    }
}

/// `x ← LayerNorm(x + residual)`, row by row (rows of the norm's width).
struct AddNorm<'a> {
    x: &'a mut [f32],
    residual: Option<&'a [f32]>,
    ln: &'a (Vec<f32>, Vec<f32>),
    eps: f32,
}

impl pulp::NullaryFnOnce for AddNorm<'_> {
    type Output = ();

    #[inline(always)]
    fn call(self) {
        let (w, b) = self.ln;
        let h = w.len();
        if let Some(r) = self.residual {
            self.x.iter_mut().zip(r).for_each(|(v, r)| *v += r);
        }
        for row in self.x.chunks_exact_mut(h) {
            let mean = lane_sum(row, |v| v) / h as f32;
            let var = lane_sum(row, |v| (v - mean) * (v - mean)) / h as f32;
            let inv = 1.0 / (var + self.eps).sqrt();
            for ((v, w), b) in row.iter_mut().zip(w).zip(b) {
                *v = (*v - mean) * inv * w + b;
            }
        }
    }
}

/// `Σ f(x)` over 16 independent lanes, so that it compiles to vector adds (an ordered float sum cannot).
#[inline(always)]
pub(crate) fn lane_sum(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    lane_fold(xs, 0.0, |a, v| a + f(v), |a, b| a + b)
}

/// `a · b` over 16 independent lanes, so that it compiles to vector multiply-adds.
#[inline(always)]
pub(crate) fn lane_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((lane, x), y) in lanes.iter_mut().zip(x).zip(y) {
            *lane += x * y;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `xs` folded by `step` in 16 independent lanes, so that it compiles to vector code (an ordered fold of floats
/// cannot); the lanes and the tail's fold are then combined in order by `merge`.
#[inline(always)]
fn lane_fold(
    xs: &[f32],
    init: f32,
    step: impl Fn(f32, f32) -> f32,
    merge: impl Fn(f32, f32) -> f32,
) -> f32 {
    let mut lanes = [init; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = step(*lane, v);
        }
    }
    let tail = chunks.remainder().iter().fold(init, |a, &v| step(a, v));
    merge(lanes.into_iter().fold(init, &merge), tail)
}

/// Segments longer than this take the two attention products through candle's gemm ([`attention_gemm`]); shorter
/// ones run them as the vector loops of [`Attention`]. The loops store every partial sum where a gemm keeps its sums
/// in registers: at a dozen tokens that costs less than a gemm's set-up and the copies into heads, at a few hundred
/// it cost e5 a fifth of its speed (bench/RESULTS.md, session 20). 48 lies between the two regimes.
const GEMM_FROM: usize = 48;

/// Scaled dot-product self-attention of each segment on its own, every head: from the `[T, 3H]` rows of queries,
/// keys and values side by side to the `[T, H]` context rows.
fn attention(
    kernel: Kernel,
    qkv: &[f32],
    lens: &[usize],
    hidden: usize,
    heads: usize,
) -> Result<Vec<f32>, EmbedError> {
    // Each segment's first row and length, split once between the two paths.
    let spans = lens.iter().scan(0, |start, &len| {
        *start += len;
        Some((*start - len, len))
    });
    let (long, short): (Vec<_>, Vec<_>) = spans.partition(|&(_, len)| len > GEMM_FROM);
    let mut ctx = vec![0f32; qkv.len() / 3];
    kernel.vectorize(Attention {
        qkv,
        ctx: &mut ctx,
        spans: &short,
        hidden,
        heads,
    });
    for (start, len) in long {
        attention_gemm(
            kernel,
            &qkv[start * 3 * hidden..(start + len) * 3 * hidden],
            &mut ctx[start * hidden..(start + len) * hidden],
            hidden,
            heads,
        )?;
    }
    Ok(ctx)
}

/// One segment's attention with both products as batched gemms over the heads: `rows` are its `[len, 3H]` queries,
/// keys and values, `out` its `[len, H]` context rows.
fn attention_gemm(
    kernel: Kernel,
    rows: &[f32],
    out: &mut [f32],
    hidden: usize,
    heads: usize,
) -> Result<(), EmbedError> {
    let (h, d) = (hidden, hidden / heads);
    let len = out.len() / h;
    let scale = 1.0 / (d as f32).sqrt();
    // `[heads, len, d]` each, the queries scaled.
    let mut q = Vec::with_capacity(len * h);
    let mut k = Vec::with_capacity(len * h);
    let mut v = Vec::with_capacity(len * h);
    for head in 0..heads {
        for row in rows.chunks_exact(3 * h) {
            q.extend(row[head * d..(head + 1) * d].iter().map(|x| x * scale));
            k.extend_from_slice(&row[h + head * d..h + (head + 1) * d]);
            v.extend_from_slice(&row[2 * h + head * d..2 * h + (head + 1) * d]);
        }
    }
    let tensor =
        |values: Vec<f32>, cols: usize| Tensor::from_vec(values, (heads, len, cols), &Device::Cpu);
    let (q, k, v) = (tensor(q, d)?, tensor(k, d)?, tensor(v, d)?);
    let mut scores = q.matmul(&k.t()?)?.flatten_all()?.to_vec1::<f32>()?;
    kernel.vectorize(SoftmaxRows {
        scores: &mut scores,
        len,
    });
    let context = tensor(scores, len)?
        .matmul(&v)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    for (head, block) in context.chunks_exact(len * d).enumerate() {
        for (row, c) in out.chunks_exact_mut(h).zip(block.chunks_exact(d)) {
            row[head * d..(head + 1) * d].copy_from_slice(c);
        }
    }
    Ok(())
}

/// [`softmax`] over every row of `len` scores.
struct SoftmaxRows<'a> {
    scores: &'a mut [f32],
    len: usize,
}

impl pulp::NullaryFnOnce for SoftmaxRows<'_> {
    type Output = ();

    #[inline(always)]
    fn call(self) {
        self.scores
            .chunks_exact_mut(self.len)
            .for_each(|row| softmax(row, self.len));
    }
}

/// `row[..len] ← softmax(row[..len])`, and 0 in the rest of `row`: padding that lets a short row run as whole
/// 16-lane vectors instead of a scalar tail.
#[inline(always)]
pub(crate) fn softmax(row: &mut [f32], len: usize) {
    row[len..].fill(f32::NEG_INFINITY);
    // `>` rather than `f32::max`, whose NaN rule costs a compare and blend per vector; `exp` maps a NaN to e⁻⁸⁷.
    let larger = |a: f32, b: f32| if a > b { a } else { b };
    let max = lane_fold(row, f32::NEG_INFINITY, larger, larger);
    row.iter_mut().for_each(|s| *s = exp(*s - max));
    row[len..].fill(0.0);
    let inv = 1.0 / lane_sum(row, |p| p);
    row.iter_mut().for_each(|p| *p *= inv);
}

/// The short segments' attention (see [`GEMM_FROM`]) as vector loops, written into their rows of `ctx`.
struct Attention<'a> {
    qkv: &'a [f32],
    ctx: &'a mut [f32],
    /// First row and length of each segment to run.
    spans: &'a [(usize, usize)],
    hidden: usize,
    heads: usize,
}

impl pulp::NullaryFnOnce for Attention<'_> {
    type Output = ();

    #[inline(always)]
    fn call(self) {
        let h = self.hidden;
        let d = h / self.heads;
        let scale = 1.0 / (d as f32).sqrt();
        // Rows of scores and of transposed keys are padded to whole vectors: at a dozen tokens, a row of `len` would
        // run entirely in the scalar tail of every loop below.
        let width = |len: usize| len.next_multiple_of(LANES);
        let longest = self.spans.iter().map(|&(_, len)| len).max().unwrap_or(0);
        // One head's keys transposed (`[d, width]`), so that a query's scores are d products along the whole row.
        // Past `len` they hold whatever an earlier head left: those scores are masked out in the softmax.
        let mut keys = vec![0f32; d * width(longest)];
        let mut scores = vec![0f32; width(longest)];
        for &(start, len) in self.spans {
            let rows = &self.qkv[start * 3 * h..(start + len) * 3 * h];
            let out = &mut self.ctx[start * h..(start + len) * h];
            let w = width(len);
            for head in 0..self.heads {
                let (q_at, k_at, v_at) = (head * d, h + head * d, 2 * h + head * d);
                let keys = &mut keys[..d * w];
                for (j, row) in rows.chunks_exact(3 * h).enumerate() {
                    for (e, &k) in row[k_at..k_at + d].iter().enumerate() {
                        keys[e * w + j] = k;
                    }
                }
                let scores = &mut scores[..w];
                for (i, row) in rows.chunks_exact(3 * h).enumerate() {
                    // Each 16 scores (and below, each 16 values of the context) summed in one register-sized
                    // array over the whole loop, rather than loaded and stored at every step.
                    for (c, chunk) in scores.chunks_exact_mut(LANES).enumerate() {
                        let products = row[q_at..q_at + d].iter().zip(keys.chunks_exact(w));
                        let products = products.map(|(&q, key)| (q * scale, &key[c * LANES..]));
                        chunk.copy_from_slice(&lane_axpy(products));
                    }
                    softmax(scores, len);
                    let context = &mut out[i * h + q_at..i * h + q_at + d];
                    for (c, chunk) in context.chunks_mut(LANES).enumerate() {
                        let at = v_at + c * LANES;
                        let values = rows.chunks_exact(3 * h).map(|row| &row[at..]);
                        if chunk.len() == LANES {
                            chunk.copy_from_slice(&lane_axpy(scores.iter().copied().zip(values)));
                        } else {
                            for (&p, value) in scores.iter().zip(values) {
                                chunk.iter_mut().zip(value).for_each(|(c, v)| *c += p * v);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `Σ a · x[..16]` over the pairs, summed in a register-sized array rather than loaded and stored at every step.
#[inline(always)]
fn lane_axpy<'a>(pairs: impl Iterator<Item = (f32, &'a [f32])>) -> [f32; LANES] {
    let mut acc = [0f32; LANES];
    for (a, x) in pairs {
        let x: &[f32; LANES] = x[..LANES].try_into().expect("16 values");
        for (s, x) in acc.iter_mut().zip(x) {
            *s += a * x;
        }
    }
    acc
}

/// `eˣ` in f32 for x ≤ 0 (softmax's shifted scores), as Cephes computes `expf`: x = n · ln 2 + r with |r| ≤ ln 2 / 2,
/// a degree-7 polynomial for eʳ, and 2ⁿ put straight into the exponent bits. Relative error under 2e-7 (tested
/// below). Inputs under −87 give e⁻⁸⁷ (1.6e-38), not something smaller, which no softmax row can tell apart. Unlike
/// libm's `expf`, it has no call and no branch, so a row of scores compiles to vector code.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // `max`/`min`, not `clamp`, and 2ⁿ read from the mantissa of n + 1.5 · 2²³ rather than through `as i32`: the
    // clamp's assertion and the saturating conversion kept LLVM from vectorising the loop (bench/RESULTS.md,
    // session 20). A NaN becomes −87.
    #[expect(clippy::manual_clamp, reason = "clamp does not vectorise (above)")]
    let x = x.max(-87.0).min(0.0);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = [
        1.987_569_1e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ]
    .iter()
    .fold(0.0, |p, &c| p * r + c);
    // n is a whole number in −126..=0, so n + 1.5 · 2²³ holds it in its low mantissa bits, two's complement.
    let n_bits = (n + 12_582_912.0).to_bits().wrapping_sub(0x4B40_0000);
    let two_n = f32::from_bits(n_bits.wrapping_add(127) << 23);
    (p * r * r + r + 1.0) * two_n
}

/// Splits a tokenised text into model inputs of at most `max_positions` tokens (`bos`, content, `eos`), runs them
/// in batches of about `batch_tokens` tokens, and combines each text's windows weighted by their content length;
/// each layer's pooled block (see [`Network::forward_pooled`]) is L2-normalised on its own. A text that fits one
/// window is a plain single pass.
pub(crate) fn embed_windows(
    encoder: &dyn Network,
    contents: &[Vec<u32>],
    bos: u32,
    eos: u32,
    batch_tokens: usize,
    layers: &[usize],
) -> Result<Vec<Vec<f32>>, EmbedError> {
    let window = encoder.max_positions() - 2;
    // Every window as a model input, and which text it belongs to with what weight.
    let mut segments: Vec<Vec<u32>> = Vec::new();
    let mut owners: Vec<(usize, f32)> = Vec::new();
    for (i, content) in contents.iter().enumerate() {
        let chunks: Vec<&[u32]> = if content.is_empty() {
            vec![&[]]
        } else {
            content.chunks(window).collect()
        };
        for chunk in chunks {
            let mut seg = Vec::with_capacity(chunk.len() + 2);
            seg.push(bos);
            seg.extend_from_slice(chunk);
            seg.push(eos);
            segments.push(seg);
            owners.push((i, chunk.len().max(1) as f32));
        }
    }
    let h = encoder.hidden();
    let mut distinct = layers.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let width = h * distinct.len();
    let mut sums = vec![vec![0f32; width]; contents.len()];
    let mut weights = vec![0f32; contents.len()];
    let mut start = 0;
    while start < segments.len() {
        let mut end = start;
        let mut tokens = 0;
        while end < segments.len() && (end == start || tokens + segments[end].len() <= batch_tokens)
        {
            tokens += segments[end].len();
            end += 1;
        }
        let pooled = encoder.forward_pooled(&segments[start..end], &distinct)?;
        for ((text, weight), mean) in owners[start..end].iter().zip(pooled) {
            for (acc, v) in sums[*text].iter_mut().zip(mean) {
                *acc += weight * v;
            }
            weights[*text] += weight;
        }
        start = end;
    }
    for (sum, weight) in sums.iter_mut().zip(weights) {
        sum.iter_mut().for_each(|v| *v /= weight);
        sum.chunks_mut(h).for_each(kefu_llm::normalise);
    }
    Ok(sums)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_matches_the_erf_form_computed_in_f64() {
        // libm's erf in f64 as the reference, over the range activations take and past the clamp.
        let xs: Vec<f32> = (-12_000..=12_000).map(|i| i as f32 / 1000.0).collect();
        let mut ys = xs.clone();
        gelu_erf(&mut ys);
        let mut worst = 0f64;
        for (&x, &y) in xs.iter().zip(&ys) {
            let x = f64::from(x);
            let want = 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
            worst = worst.max((f64::from(y) - want).abs() / (1.0 + want.abs()));
        }
        // A few f32 ulps (candle's libm `erff` path is within about one).
        assert!(worst < 2e-6, "worst relative error {worst}");
        let mut edge = [f32::MAX, -f32::MAX, 0.0];
        gelu_erf(&mut edge);
        assert!((edge[0] / f32::MAX - 1.0).abs() < 1e-6, "{edge:?}");
        assert!(
            edge[1].is_finite() && edge[1] <= 0.0 && edge[2] == 0.0,
            "{edge:?}"
        );
    }

    #[test]
    fn exp_matches_libm_over_softmax_inputs() {
        let mut worst = 0f64;
        for i in 0..=870_000 {
            let x = -(i as f32) / 10_000.0;
            let want = f64::from(x).exp();
            worst = worst.max((f64::from(exp(x)) - want).abs() / want);
        }
        assert!(worst < 2e-7, "worst relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) < 2e-38 && exp(f32::NEG_INFINITY) < 2e-38);
    }

    /// Attention computed the plain way in f64: per segment and head, softmax(q · kᵀ / √d) · v.
    fn attention_reference(qkv: &[f32], lens: &[usize], h: usize, heads: usize) -> Vec<f64> {
        let d = h / heads;
        let mut ctx = vec![0f64; qkv.len() / 3];
        let mut start = 0;
        for &len in lens {
            let row = |i: usize| &qkv[(start + i) * 3 * h..(start + i + 1) * 3 * h];
            for head in 0..heads {
                for i in 0..len {
                    let scores: Vec<f64> = (0..len)
                        .map(|j| {
                            (0..d)
                                .map(|e| {
                                    f64::from(row(i)[head * d + e])
                                        * f64::from(row(j)[h + head * d + e])
                                })
                                .sum::<f64>()
                                / (d as f64).sqrt()
                        })
                        .collect();
                    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let total: f64 = weights.iter().sum();
                    for e in 0..d {
                        ctx[(start + i) * h + head * d + e] = (0..len)
                            .map(|j| weights[j] / total * f64::from(row(j)[2 * h + head * d + e]))
                            .sum();
                    }
                }
            }
            start += len;
        }
        ctx
    }

    #[test]
    fn attention_of_short_and_long_segments_matches_the_plain_computation() {
        // Segments on both sides of GEMM_FROM in one batch, so both paths run and neither may touch the other's rows;
        // short lengths below, at and above a whole padded row of LANES; heads of 16 values and of 20 (a whole
        // vector and a part of one).
        let lens = [5, LANES, LANES + 1, GEMM_FROM, GEMM_FROM + 1, 70, 1];
        let total: usize = lens.iter().sum();
        for (h, heads) in [(64, 4), (40, 2)] {
            // Deterministic values in −2..2, large enough that the softmax is far from uniform.
            let qkv: Vec<f32> = (0..total * 3 * h)
                .map(|i| ((i as u64).wrapping_mul(2_654_435_761) % 4001) as f32 / 1000.0 - 2.0)
                .collect();
            let want = attention_reference(&qkv, &lens, h, heads);
            // Every SIMD path this CPU can run (an AVX-512 host also runs the AVX2 and scalar ones).
            for kernel in Kernel::available() {
                let got = attention(kernel, &qkv, &lens, h, heads).unwrap();
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(&g, &w)| (f64::from(g) - w).abs())
                    .fold(0f64, f64::max);
                assert!(
                    worst < 1e-5,
                    "{kernel:?}, {heads} heads of {}: worst absolute error {worst}",
                    h / heads
                );
            }
        }
    }

    #[test]
    fn q4_0_blocks_expand_low_nibbles_first_then_high() {
        // scale 0.5 (fp16 0x3800), byte j = (low j % 16, high 15 - j % 16)
        let mut block = vec![0x00, 0x38];
        block.extend((0..16u8).map(|j| (j & 0x0f) | ((15 - j) << 4)));
        let mut out = [0f32; 32];
        dequantize_q4_0(&block, &mut out);
        assert_eq!(out[0], -4.0); // (0 - 8) * 0.5
        assert_eq!(out[15], 3.5); // (15 - 8) * 0.5
        assert_eq!(out[16], 3.5); // high nibble of byte 0 = 15
        assert_eq!(out[31], -4.0);
    }
}
