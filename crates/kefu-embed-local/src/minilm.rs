//! all-MiniLM-L6-v2 (and any BERT sentence-transformer in the same layout): `model.safetensors`, `tokenizer.json`
//! and `config.json` in one directory.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::bert::{values, Encoder, Layer, WordTable};
use crate::dir::{DirTokenizer, ModelDir};
use crate::{EmbedError, Precision};

/// sentence-transformers' `max_seq_length` for this model (the position table itself has 512 rows).
const MAX_SEQ: usize = 256;

#[derive(serde::Deserialize)]
struct Config {
    hidden_size: usize,
    num_attention_heads: usize,
    num_hidden_layers: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f32,
    max_position_embeddings: usize,
}

fn default_eps() -> f32 {
    1e-12
}

/// The checkpoint's tensors as f32, each taken out once, by its name under `prefix` (the part being read).
struct Tensors {
    by_name: HashMap<String, Tensor>,
    prefix: String,
}

impl Tensors {
    fn take(&mut self, name: &str) -> Result<Tensor, EmbedError> {
        let name = format!("{}{name}", self.prefix);
        let t = self
            .by_name
            .remove(&name)
            .ok_or_else(|| EmbedError::Format(format!("model.safetensors has no {name}")))?;
        Ok(t.to_dtype(candle_core::DType::F32)?)
    }

    fn values(&mut self, name: &str) -> Result<Vec<f32>, EmbedError> {
        values(&self.take(name)?)
    }

    /// A LayerNorm's weight and bias.
    fn layer_norm(&mut self, name: &str) -> Result<(Vec<f32>, Vec<f32>), EmbedError> {
        Ok((
            self.values(&format!("{name}.weight"))?,
            self.values(&format!("{name}.bias"))?,
        ))
    }

    /// The attention's query, key and value weights (or biases) stacked into one projection.
    fn qkv(&mut self, part: &str) -> Result<Tensor, EmbedError> {
        let heads = ["query", "key", "value"]
            .into_iter()
            .map(|head| self.take(&format!("attention.self.{head}.{part}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Tensor::cat(&heads, 0)?)
    }
}

pub(crate) fn load(
    dir: &Path,
    precision: Precision,
) -> Result<(Encoder, DirTokenizer), EmbedError> {
    let model = ModelDir {
        path: dir,
        precision,
    };
    let weight = |w: Tensor| model.weight(w);
    let config: Config = model.config()?;
    // The file pads and truncates to 128; we window long texts ourselves and never pad.
    let tokenizer = model.tokenizer("[CLS]", "[SEP]")?;

    let mut tensors = Tensors {
        by_name: candle_core::safetensors::load_buffer(
            &model.read("model.safetensors")?,
            &Device::Cpu,
        )?
        .into_iter()
        .map(|(k, v)| (k.strip_prefix("bert.").map(str::to_owned).unwrap_or(k), v))
        .collect(),
        prefix: "embeddings.".to_owned(),
    };
    let h = config.hidden_size;
    let word = WordTable::F32(tensors.values("word_embeddings.weight")?);
    let position = tensors.values("position_embeddings.weight")?;
    let token_type = values(&tensors.take("token_type_embeddings.weight")?.get(0)?)?;
    let emb_ln = tensors.layer_norm("LayerNorm")?;
    let mut layers = Vec::with_capacity(config.num_hidden_layers);
    for l in 0..config.num_hidden_layers {
        tensors.prefix = format!("encoder.layer.{l}.");
        let t = &mut tensors;
        layers.push(Layer {
            qkv_w: weight(t.qkv("weight")?)?,
            qkv_b: values(&t.qkv("bias")?)?,
            out_w: weight(t.take("attention.output.dense.weight")?)?,
            out_b: t.values("attention.output.dense.bias")?,
            attn_ln: t.layer_norm("attention.output.LayerNorm")?,
            ff_in_w: weight(t.take("intermediate.dense.weight")?)?,
            ff_in_b: t.values("intermediate.dense.bias")?,
            ff_out_w: weight(t.take("output.dense.weight")?)?,
            ff_out_b: t.values("output.dense.bias")?,
            out_ln: t.layer_norm("output.LayerNorm")?,
        });
    }
    if !h.is_multiple_of(config.num_attention_heads) {
        return Err(EmbedError::Format(
            "hidden size is not a multiple of the head count".into(),
        ));
    }
    let max_positions = MAX_SEQ.min(config.max_position_embeddings);
    let words_fit =
        matches!(&word, WordTable::F32(t) if !t.is_empty() && t.len().is_multiple_of(h));
    if position.len() < max_positions * h || token_type.len() != h || !words_fit {
        return Err(EmbedError::Format(
            "model.safetensors: embedding tables do not match config.json".into(),
        ));
    }
    let encoder = Encoder {
        hidden: h,
        heads: config.num_attention_heads,
        eps: config.layer_norm_eps,
        max_positions,
        word,
        position,
        token_type,
        emb_ln,
        layers,
    };
    Ok((encoder, tokenizer))
}
