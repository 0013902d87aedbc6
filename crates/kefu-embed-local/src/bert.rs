//! A BERT-style encoder (XLM-R and MiniLM share it): embeddings, post-LayerNorm transformer layers, mean pooling.
//!
//! Several texts run as one pass: the token rows of every segment are stacked into one `[T, H]` matrix so each
//! weight matrix is streamed once per batch; attention runs per segment, so no padding and no mask are needed.

use candle_core::{DType, Device, Tensor};

use crate::EmbedError;

/// The word-embedding table. e5 keeps it 4-bit (250k rows would be 384 MB as f32) and expands only the rows used.
pub(crate) enum WordTable {
    F32(Tensor),
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
    /// `x · W + b`.
    fn apply(&self, x: &Tensor, b: &Tensor) -> Result<Tensor, EmbedError> {
        Ok(match self {
            Weight::F32(w) => x.matmul(w)?.broadcast_add(b)?,
            Weight::Q8(w) => f32_tensor(Self::apply_q8(w, x, b)?, &[x.dim(0)?, w.out_dim()])?,
        })
    }

    /// GELU (the erf form, see [`gelu_erf`]) of `x · W + b`. On the int8 path the bias and the GELU run on the
    /// product's buffer, which becomes the tensor without another copy.
    fn apply_gelu(&self, x: &Tensor, b: &Tensor) -> Result<Tensor, EmbedError> {
        let (rows, cols, mut values) = match self {
            Weight::F32(_) => {
                let y = self.apply(x, b)?;
                let (rows, cols) = y.dims2()?;
                (rows, cols, y.flatten_all()?.to_vec1::<f32>()?)
            }
            Weight::Q8(w) => (x.dim(0)?, w.out_dim(), Self::apply_q8(w, x, b)?),
        };
        gelu_erf(&mut values);
        f32_tensor(values, &[rows, cols])
    }

    fn apply_q8(w: &crate::q8::Q8Matrix, x: &Tensor, b: &Tensor) -> Result<Vec<f32>, EmbedError> {
        Ok(w.matmul_bias(&x.flatten_all()?.to_vec1::<f32>()?, &b.to_vec1::<f32>()?))
    }
}

pub(crate) struct Layer {
    /// Query, key and value projections side by side, applied as one matmul.
    pub qkv_w: Weight,
    pub qkv_b: Tensor,
    pub out_w: Weight,
    pub out_b: Tensor,
    pub attn_ln: (Tensor, Tensor),
    pub ff_in_w: Weight,
    pub ff_in_b: Tensor,
    pub ff_out_w: Weight,
    pub ff_out_b: Tensor,
    pub out_ln: (Tensor, Tensor),
}

pub(crate) struct Encoder {
    pub hidden: usize,
    pub heads: usize,
    pub eps: f32,
    /// Longest segment, special tokens included.
    pub max_positions: usize,
    pub word: WordTable,
    /// `[max_positions, H]`, indexed from 0 at each segment start.
    pub position: Tensor,
    /// Token type 0, `[H]`.
    pub token_type: Tensor,
    pub emb_ln: (Tensor, Tensor),
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

pub(crate) fn f32_tensor(data: Vec<f32>, shape: &[usize]) -> Result<Tensor, EmbedError> {
    Ok(Tensor::from_vec(data, shape, &Device::Cpu)?)
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

impl Encoder {
    fn embed_tokens(&self, segments: &[Vec<u32>]) -> Result<Tensor, EmbedError> {
        let h = self.hidden;
        let total: usize = segments.iter().map(Vec::len).sum();
        let ids: Vec<u32> = segments.iter().flatten().copied().collect();
        let words = match &self.word {
            WordTable::F32(table) => {
                let idx = Tensor::from_vec(ids, total, &Device::Cpu)?;
                table.index_select(&idx, 0)?
            }
            WordTable::Q4 { blocks, rows } => {
                let row_bytes = h / 32 * 18;
                let mut out = vec![0f32; total * h];
                for (id, dst) in ids.iter().zip(out.chunks_exact_mut(h)) {
                    let id = *id as usize;
                    if id >= *rows {
                        return Err(EmbedError::Model(format!(
                            "token id {id} outside the vocabulary"
                        )));
                    }
                    dequantize_q4_0(&blocks[id * row_bytes..(id + 1) * row_bytes], dst);
                }
                f32_tensor(out, &[total, h])?
            }
        };
        let positions: Vec<Tensor> = segments
            .iter()
            .map(|s| self.position.narrow(0, 0, s.len()))
            .collect::<Result<_, _>>()?;
        let positions = Tensor::cat(&positions, 0)?;
        let x = words.add(&positions)?.broadcast_add(&self.token_type)?;
        Ok(candle_nn::ops::layer_norm(
            &x,
            &self.emb_ln.0,
            &self.emb_ln.1,
            self.eps,
        )?)
    }

    /// Mean-pooled hidden states (not normalised) after each of `layers` (0 = the embedding output, `i` = after
    /// layer `i`), concatenated shallowest first: one `[H × distinct layers]` row per segment. Each segment is a full
    /// model input (special tokens included) of at most `max_positions` tokens. Layers past the deepest one asked
    /// for are not run, so pooling an early layer alone is a smaller, faster encoder.
    pub fn forward_pooled(
        &self,
        segments: &[Vec<u32>],
        layers: &[usize],
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        if segments.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(s) = segments
            .iter()
            .find(|s| s.is_empty() || s.len() > self.max_positions)
        {
            return Err(EmbedError::Model(format!(
                "segment of {} tokens (1..={} allowed)",
                s.len(),
                self.max_positions
            )));
        }
        let h = self.hidden;
        let head_dim = h / self.heads;
        let scale = 1.0 / (head_dim as f64).sqrt();
        let deepest = layers.iter().copied().max().unwrap_or(0);
        if deepest > self.layers.len() {
            return Err(EmbedError::Model(format!(
                "layer {deepest} asked for; the model has {}",
                self.layers.len()
            )));
        }
        let mut pooled = vec![Vec::with_capacity(h * layers.len()); segments.len()];
        let mut x = self.embed_tokens(segments)?;
        let pool =
            |x: &Tensor, index: usize, pooled: &mut Vec<Vec<f32>>| -> Result<(), EmbedError> {
                if layers.contains(&index) {
                    let mut offset = 0;
                    for (seg, out) in segments.iter().zip(pooled.iter_mut()) {
                        let mean = x.narrow(0, offset, seg.len())?.mean(0)?;
                        offset += seg.len();
                        out.extend(mean.to_dtype(DType::F32)?.to_vec1::<f32>()?);
                    }
                }
                Ok(())
            };
        pool(&x, 0, &mut pooled)?;
        for (index, layer) in self.layers.iter().enumerate().take(deepest) {
            let qkv = layer.qkv_w.apply(&x, &layer.qkv_b)?;
            let mut contexts = Vec::with_capacity(segments.len());
            let mut offset = 0;
            for seg in segments {
                let len = seg.len();
                let rows = qkv.narrow(0, offset, len)?;
                offset += len;
                let split = |i: usize| -> Result<Tensor, EmbedError> {
                    Ok(rows
                        .narrow(1, i * h, h)?
                        .reshape((len, self.heads, head_dim))?
                        .transpose(0, 1)?
                        .contiguous()?)
                };
                let (q, k, v) = (split(0)?, split(1)?, split(2)?);
                let scores = (q.matmul(&k.t()?)? * scale)?;
                let probs = candle_nn::ops::softmax_last_dim(&scores)?;
                let ctx = probs.matmul(&v)?.transpose(0, 1)?.reshape((len, h))?;
                contexts.push(ctx);
            }
            let ctx = Tensor::cat(&contexts, 0)?;
            let attn = layer.out_w.apply(&ctx, &layer.out_b)?;
            x = candle_nn::ops::layer_norm(
                &x.add(&attn)?,
                &layer.attn_ln.0,
                &layer.attn_ln.1,
                self.eps,
            )?;
            let mid = layer.ff_in_w.apply_gelu(&x, &layer.ff_in_b)?;
            let ff = layer.ff_out_w.apply(&mid, &layer.ff_out_b)?;
            x = candle_nn::ops::layer_norm(
                &x.add(&ff)?,
                &layer.out_ln.0,
                &layer.out_ln.1,
                self.eps,
            )?;
            pool(&x, index + 1, &mut pooled)?;
        }
        Ok(pooled)
    }
}

/// Splits a tokenised text into model inputs of at most `max_positions` tokens (`bos`, content, `eos`), runs them
/// in batches of about `batch_tokens` tokens, and combines each text's windows weighted by their content length;
/// each layer's pooled block (see [`Encoder::forward_pooled`]) is L2-normalised on its own. A text that fits one
/// window is a plain single pass.
pub(crate) fn embed_windows(
    encoder: &Encoder,
    contents: &[Vec<u32>],
    bos: u32,
    eos: u32,
    batch_tokens: usize,
    layers: &[usize],
) -> Result<Vec<Vec<f32>>, EmbedError> {
    let window = encoder.max_positions - 2;
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
    let h = encoder.hidden;
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
