//! EmbeddingGemma-300M (a Gemma 3 text model with bidirectional attention, as sentence-transformers packs it):
//! `model.safetensors`, `tokenizer.json`, `config.json`, and the two projections after pooling in `2_Dense/` and
//! `3_Dense/`, in one directory.
//!
//! A layer is: RMS-normalise (Gemma's `1 + w` scale), project to 3 query heads and one shared key/value head of width
//! 256, RMS-normalise each query and key head, rotate them by position (RoPE; base 10⁴ on the sliding-window layers,
//! 10⁶ on every sixth, the global ones), attend both ways, project back, RMS-normalise, add; then the same around a
//! GeGLU feed-forward block (tanh GELU of the gate times the up projection). The token embeddings are scaled by √H.
//! The sentence vector is the mean of the final-normalised token states through both dense projections (768 → 3072
//! → 768), unit length. Inputs stay within half the sliding window (see [`MAX_TOKENS`]), so every layer attends to
//! the whole input and no mask is needed. The projections run on the int8 kernels of [`crate::q8`], as MiniLM's
//! do; checked against vectors from sentence-transformers in the tests.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::bert::{values, Network, Weight};
use crate::dir::{DirTokenizer, ModelDir};
use crate::{EmbedError, Precision};

/// Longest model input, special tokens included. Half the 512-token sliding window: within it a sliding layer sees
/// every token, whichever way the window is counted. Longer texts are split into windows (see
/// [`crate::bert::embed_windows`]).
pub(crate) const MAX_TOKENS: usize = 256;

#[derive(serde::Deserialize)]
struct Config {
    model_type: String,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: usize,
    head_dim: usize,
    rms_norm_eps: f32,
    rope_theta: f32,
    rope_local_base_freq: f32,
    query_pre_attn_scalar: f32,
    layer_types: Vec<String>,
    sliding_window: usize,
    #[serde(default)]
    use_bidirectional_attention: bool,
}

struct Layer {
    /// Query, key and value projections side by side.
    qkv: Weight,
    out: Weight,
    /// Gate and up projections side by side.
    gate_up: Weight,
    down: Weight,
    /// RMSNorm scales, stored as `1 + w`.
    input_norm: Vec<f32>,
    post_attn_norm: Vec<f32>,
    pre_ff_norm: Vec<f32>,
    post_ff_norm: Vec<f32>,
    q_norm: Vec<f32>,
    k_norm: Vec<f32>,
    /// A global-attention layer (RoPE base `rope_theta`); the others slide (`rope_local_base_freq`).
    global: bool,
}

pub(crate) struct Gemma {
    hidden: usize,
    intermediate: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    eps: f32,
    /// `query_pre_attn_scalar^-½`.
    scale: f32,
    /// Token embeddings as int8 blocks of 32 with one scale each (262k rows would be 800 MB as f32), multiplied by
    /// √H when a row is expanded.
    words: Vec<i8>,
    word_scales: Vec<f32>,
    rows: usize,
    layers: Vec<Layer>,
    final_norm: Vec<f32>,
    dense: [Weight; 2],
    /// cos and sin of position · frequency, `[MAX_TOKENS, head_dim / 2]`, for the local and the global base.
    rope: [(Vec<f32>, Vec<f32>); 2],
}

/// A checkpoint's tensors as f32, each taken out once.
struct Tensors(HashMap<String, Tensor>);

impl Tensors {
    fn read(path: &Path) -> Result<Tensors, EmbedError> {
        let t = candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|e| EmbedError::Format(format!("cannot read {}: {e}", path.display())))?;
        Ok(Tensors(t))
    }

    fn take(&mut self, name: &str) -> Result<Tensor, EmbedError> {
        let t = self
            .0
            .remove(name)
            .ok_or_else(|| EmbedError::Format(format!("model.safetensors has no {name}")))?;
        Ok(t.to_dtype(candle_core::DType::F32)?)
    }

    /// An RMSNorm weight as the scale it applies, `1 + w`.
    fn norm(&mut self, name: &str, width: usize) -> Result<Vec<f32>, EmbedError> {
        let w = values(&self.take(name)?)?;
        if w.len() != width {
            return Err(EmbedError::Format(format!(
                "{name} has {} values, not {width}",
                w.len()
            )));
        }
        Ok(w.into_iter().map(|w| 1.0 + w).collect())
    }

    /// The named `[out, in]` weights stacked along `out`, checked to be `out × inp` in all (a checkpoint that does
    /// not match its config is an error here, not a failed assertion in a product).
    fn stacked(&mut self, names: &[String], out: usize, inp: usize) -> Result<Tensor, EmbedError> {
        let parts = names
            .iter()
            .map(|n| self.take(n))
            .collect::<Result<Vec<_>, _>>()?;
        let t = Tensor::cat(&parts, 0)?;
        if t.dims() != [out, inp] {
            return Err(EmbedError::Format(format!(
                "{}: shape {:?}, config.json implies [{out}, {inp}]",
                names.join(" + "),
                t.dims()
            )));
        }
        Ok(t)
    }
}

/// The sentence-transformers layout: a directory whose `config.json` names a Gemma 3 text model.
pub(crate) fn is_gemma_dir(dir: &Path) -> bool {
    std::fs::read(dir.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|c| c["model_type"] == "gemma3_text")
}

pub(crate) fn load(dir: &Path, precision: Precision) -> Result<(Gemma, DirTokenizer), EmbedError> {
    let model = ModelDir {
        path: dir,
        precision,
    };
    let weight = |w: Tensor| model.weight(w);
    let config: Config = model.config()?;
    if config.model_type != "gemma3_text" || !config.use_bidirectional_attention {
        return Err(EmbedError::Format(format!(
            "config.json: a {} model{}; kefu reads EmbeddingGemma (gemma3_text, bidirectional)",
            config.model_type,
            if config.use_bidirectional_attention {
                ""
            } else {
                " with causal attention"
            }
        )));
    }
    let c = &config;
    if c.layer_types.len() != c.num_hidden_layers
        || !c.head_dim.is_multiple_of(2)
        || c.num_key_value_heads == 0
        || !c.num_attention_heads.is_multiple_of(c.num_key_value_heads)
        || c.sliding_window < 2 * MAX_TOKENS
    {
        return Err(EmbedError::Format(
            "config.json: layer types, head width or sliding window do not fit".into(),
        ));
    }
    let tokenizer = model.tokenizer("<bos>", "<eos>")?;

    let (h, hd, inter) = (c.hidden_size, c.head_dim, c.intermediate_size);
    let (q_width, kv_width) = (c.num_attention_heads * hd, c.num_key_value_heads * hd);
    let mut t = Tensors::read(&dir.join("model.safetensors"))?;
    let table = t.take("embed_tokens.weight")?;
    let (rows, width) = table.dims2()?;
    if width != h || !h.is_multiple_of(crate::q8::BLOCK) {
        return Err(EmbedError::Format(
            "model.safetensors: the embedding table does not match config.json".into(),
        ));
    }
    let (words, word_scales) = crate::q8::round_blocks(&values(&table)?, 127.0);
    drop(table);
    let mut layers = Vec::with_capacity(c.num_hidden_layers);
    for (l, kind) in c.layer_types.iter().enumerate() {
        let p = |name: &str| format!("layers.{l}.{name}.weight");
        layers.push(Layer {
            qkv: weight(t.stacked(
                &[
                    p("self_attn.q_proj"),
                    p("self_attn.k_proj"),
                    p("self_attn.v_proj"),
                ],
                q_width + 2 * kv_width,
                h,
            )?)?,
            out: weight(t.stacked(&[p("self_attn.o_proj")], h, q_width)?)?,
            gate_up: weight(t.stacked(&[p("mlp.gate_proj"), p("mlp.up_proj")], 2 * inter, h)?)?,
            down: weight(t.stacked(&[p("mlp.down_proj")], h, inter)?)?,
            input_norm: t.norm(&p("input_layernorm"), h)?,
            post_attn_norm: t.norm(&p("post_attention_layernorm"), h)?,
            pre_ff_norm: t.norm(&p("pre_feedforward_layernorm"), h)?,
            post_ff_norm: t.norm(&p("post_feedforward_layernorm"), h)?,
            q_norm: t.norm(&p("self_attn.q_norm"), hd)?,
            k_norm: t.norm(&p("self_attn.k_norm"), hd)?,
            global: kind == "full_attention",
        });
    }
    let final_norm = t.norm("norm.weight", h)?;
    // 768 → 3072 → 768: the first projection's width is read from its file, the second must undo it.
    let dense = |sub: &str| {
        Tensors::read(&dir.join(sub).join("model.safetensors"))?
            .take("linear.weight")
            .map_err(|e| EmbedError::Format(format!("{sub}: {e}")))
    };
    let (first, second) = (dense("2_Dense")?, dense("3_Dense")?);
    let wide = first.dims2()?.0;
    if first.dims() != [wide, h] || second.dims() != [h, wide] {
        return Err(EmbedError::Format(format!(
            "2_Dense and 3_Dense: shapes {:?} and {:?} do not take width {h} to {wide} and back",
            first.dims(),
            second.dims()
        )));
    }
    let dense = [weight(first)?, weight(second)?];
    let rope = |base: f32| {
        let half = hd / 2;
        let (mut cos, mut sin) = (Vec::new(), Vec::new());
        for pos in 0..MAX_TOKENS {
            for i in 0..half {
                // As transformers computes it: the frequency in f32, the angle in f32.
                let freq = 1.0 / base.powf((2 * i) as f32 / hd as f32);
                let angle = pos as f32 * freq;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        (cos, sin)
    };
    let gemma = Gemma {
        hidden: h,
        intermediate: inter,
        heads: c.num_attention_heads,
        kv_heads: c.num_key_value_heads,
        head_dim: hd,
        eps: c.rms_norm_eps,
        scale: c.query_pre_attn_scalar.powf(-0.5),
        words,
        word_scales,
        rows,
        layers,
        final_norm,
        dense,
        rope: [rope(c.rope_local_base_freq), rope(c.rope_theta)],
    };
    Ok((gemma, tokenizer))
}

/// `x ← x / rms(x) · scale`, row by row (rows of the scale's width).
#[inline(always)]
fn rms_norm(x: &mut [f32], scale: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(scale.len()) {
        let mean = crate::bert::lane_sum(row, |v| v * v) / row.len() as f32;
        let inv = 1.0 / (mean + eps).sqrt();
        row.iter_mut()
            .zip(scale)
            .for_each(|(v, s)| *v = *v * inv * s);
    }
}

/// GELU in its tanh form, as `gelu_pytorch_tanh`: `x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))`.
#[inline(always)]
fn gelu_tanh(x: f32) -> f32 {
    let u = 0.797_884_6 * (x + 0.044_715 * x * x * x);
    // tanh(|u|) = (1 − e^(−2|u|)) / (1 + e^(−2|u|)), with the exponent never positive.
    let e = crate::bert::exp(-2.0 * u.abs());
    let t = ((1.0 - e) / (1.0 + e)).copysign(u);
    0.5 * x * (1.0 + t)
}

impl Gemma {
    fn embed_tokens(&self, segments: &[Vec<u32>]) -> Result<Vec<f32>, EmbedError> {
        let h = self.hidden;
        let blocks = h / crate::q8::BLOCK;
        let root = (h as f32).sqrt();
        let total: usize = segments.iter().map(Vec::len).sum();
        let mut x = Vec::with_capacity(total * h);
        for &id in segments.iter().flatten() {
            let id = id as usize;
            if id >= self.rows {
                return Err(EmbedError::Model(format!(
                    "token id {id} outside the vocabulary"
                )));
            }
            let values = &self.words[id * h..(id + 1) * h];
            let scales = &self.word_scales[id * blocks..(id + 1) * blocks];
            for (block, &d) in values.chunks_exact(crate::q8::BLOCK).zip(scales) {
                x.extend(block.iter().map(|&v| f32::from(v) * d * root));
            }
        }
        Ok(x)
    }

    /// Attention of every segment over itself: `qkv` holds each token's query heads, key head and value head side
    /// by side; the result is each token's heads' outputs, `[T, heads · head_dim]`.
    #[inline(always)]
    fn attention(&self, qkv: &mut [f32], lens: &[usize], layer: &Layer) -> Vec<f32> {
        let (hd, heads, kv) = (self.head_dim, self.heads, self.kv_heads);
        let width = (heads + 2 * kv) * hd;
        let (cos, sin) = &self.rope[usize::from(layer.global)];
        let half = hd / 2;
        let mut out = vec![0f32; lens.iter().sum::<usize>() * heads * hd];
        let mut start = 0;
        for &len in lens {
            let rows = &mut qkv[start * width..(start + len) * width];
            for (pos, row) in rows.chunks_exact_mut(width).enumerate() {
                let (qk, _) = row.split_at_mut((heads + kv) * hd);
                for (head, x) in qk.chunks_exact_mut(hd).enumerate() {
                    let scale = if head < heads {
                        &layer.q_norm
                    } else {
                        &layer.k_norm
                    };
                    rms_norm(x, scale, self.eps);
                    let (c, s) = (&cos[pos * half..][..half], &sin[pos * half..][..half]);
                    for i in 0..half {
                        let (a, b) = (x[i], x[i + half]);
                        x[i] = a * c[i] - b * s[i];
                        x[i + half] = b * c[i] + a * s[i];
                    }
                }
            }
            let rows = &qkv[start * width..(start + len) * width];
            let mut scores = vec![0f32; len];
            for (i, row) in rows.chunks_exact(width).enumerate() {
                for head in 0..heads {
                    let group = head * kv / heads;
                    let q = &row[head * hd..][..hd];
                    for (j, other) in rows.chunks_exact(width).enumerate() {
                        let k = &other[(heads + group) * hd..][..hd];
                        scores[j] = crate::bert::lane_dot(q, k) * self.scale;
                    }
                    crate::bert::softmax(&mut scores, len);
                    let dst = &mut out[((start + i) * heads + head) * hd..][..hd];
                    for (other, &p) in rows.chunks_exact(width).zip(&scores) {
                        let v = &other[(heads + kv + group) * hd..][..hd];
                        dst.iter_mut().zip(v).for_each(|(d, v)| *d += p * v);
                    }
                }
            }
            start += len;
        }
        out
    }
}

// The steps between the projections, each run inside the kernels' SIMD frame (`Kernel::vectorize`) so that its
// loops, and the exp in softmax and GELU, compile to the CPU's vector instructions. They are structs, as in
// `bert.rs`: a closure handed to the frame was compiled on its own, as SSE code (seen in `perf annotate`).

/// `norm(x)`, as a new buffer.
struct Normed<'a> {
    x: &'a [f32],
    scale: &'a [f32],
    eps: f32,
}

impl pulp::NullaryFnOnce for Normed<'_> {
    type Output = Vec<f32>;
    #[inline(always)]
    fn call(self) -> Vec<f32> {
        let mut out = self.x.to_vec();
        rms_norm(&mut out, self.scale, self.eps);
        out
    }
}

/// `x ← x + norm(add)` (Gemma normalises each block's output before the residual add), and the next block's input
/// `norm(x)` as a new buffer.
struct AddNormed<'a> {
    x: &'a mut [f32],
    add: &'a mut [f32],
    post: &'a [f32],
    next: &'a [f32],
    eps: f32,
}

impl pulp::NullaryFnOnce for AddNormed<'_> {
    type Output = Vec<f32>;
    #[inline(always)]
    fn call(self) -> Vec<f32> {
        rms_norm(self.add, self.post, self.eps);
        self.x.iter_mut().zip(&*self.add).for_each(|(v, a)| *v += a);
        let mut out = self.x.to_vec();
        rms_norm(&mut out, self.next, self.eps);
        out
    }
}

/// Self-attention of each segment ([`Gemma::attention`]).
struct Attend<'a> {
    gemma: &'a Gemma,
    qkv: &'a mut [f32],
    lens: &'a [usize],
    layer: &'a Layer,
}

impl pulp::NullaryFnOnce for Attend<'_> {
    type Output = Vec<f32>;
    #[inline(always)]
    fn call(self) -> Vec<f32> {
        self.gemma.attention(self.qkv, self.lens, self.layer)
    }
}

/// `gelu(gate) · up` for rows holding the gate and up projections side by side.
struct GeGlu<'a> {
    gate_up: &'a [f32],
    inter: usize,
}

impl pulp::NullaryFnOnce for GeGlu<'_> {
    type Output = Vec<f32>;
    #[inline(always)]
    fn call(self) -> Vec<f32> {
        let inter = self.inter;
        let mut mid = vec![0f32; self.gate_up.len() / 2];
        for (row, out) in self
            .gate_up
            .chunks_exact(2 * inter)
            .zip(mid.chunks_exact_mut(inter))
        {
            let (gate, up) = row.split_at(inter);
            for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
                *o = gelu_tanh(g) * u;
            }
        }
        mid
    }
}

impl Network for Gemma {
    fn hidden(&self) -> usize {
        self.hidden
    }

    fn max_positions(&self) -> usize {
        MAX_TOKENS
    }

    fn depth(&self) -> usize {
        self.layers.len()
    }

    /// The mean-pooled states after each of `layers` (0 = the scaled embeddings); the last layer's block is the
    /// sentence vector before its normalisation: the final norm, the mean, both dense projections.
    fn forward(
        &self,
        segments: &[Vec<u32>],
        layers: &[usize],
        deepest: usize,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let (h, depth) = (self.hidden, self.layers.len());
        let lens: Vec<usize> = segments.iter().map(Vec::len).collect();
        let mean = |x: &[f32]| crate::bert::mean_rows(x, &lens, h);
        let mut pooled = vec![Vec::with_capacity(h * layers.len()); segments.len()];
        let mut keep = |block: Vec<Vec<f32>>| {
            for (out, b) in pooled.iter_mut().zip(block) {
                out.extend(b);
            }
        };
        let mut x = self.embed_tokens(segments)?;
        if layers.contains(&0) {
            keep(mean(&x));
        }
        let inter = self.intermediate;
        let simd = crate::q8::Kernel::detect();
        let eps = self.eps;
        let first = self
            .layers
            .first()
            .map_or(&self.final_norm, |l| &l.input_norm);
        let mut hx = simd.vectorize(Normed {
            x: &x,
            scale: first,
            eps,
        });
        for (index, layer) in self.layers.iter().enumerate().take(deepest) {
            let mut qkv = layer.qkv.apply(&hx, &[])?;
            let ctx = simd.vectorize(Attend {
                gemma: self,
                qkv: &mut qkv,
                lens: &lens,
                layer,
            });
            let mut attn = layer.out.apply(&ctx, &[])?;
            let hx_ff = simd.vectorize(AddNormed {
                x: &mut x,
                add: &mut attn,
                post: &layer.post_attn_norm,
                next: &layer.pre_ff_norm,
                eps,
            });
            let gate_up = layer.gate_up.apply(&hx_ff, &[])?;
            let mid = simd.vectorize(GeGlu {
                gate_up: &gate_up,
                inter,
            });
            let mut ff = layer.down.apply(&mid, &[])?;
            // The next layer's input, or after the last layer the final norm.
            let next = self
                .layers
                .get(index + 1)
                .map_or(&self.final_norm, |l| &l.input_norm);
            hx = simd.vectorize(AddNormed {
                x: &mut x,
                add: &mut ff,
                post: &layer.post_ff_norm,
                next,
                eps,
            });
            if index + 1 == depth {
                let means: Vec<f32> = mean(&hx).concat();
                let wide = self.dense[0].apply(&means, &[])?;
                let out = self.dense[1].apply(&wide, &[])?;
                keep(out.chunks_exact(h).map(<[f32]>::to_vec).collect());
            } else if layers.contains(&(index + 1)) {
                keep(mean(&x));
            }
        }
        Ok(pooled)
    }
}
