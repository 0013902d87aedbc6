//! What the sentence-transformers directories (MiniLM's, EmbeddingGemma's) share: their files, `config.json`,
//! `tokenizer.json`, and the precision their projections are held at.

use std::path::Path;

use candle_core::Tensor;

use crate::bert::{int8_weight, linear_weight, Weight};
use crate::{EmbedError, Precision};

pub(crate) struct ModelDir<'a> {
    pub path: &'a Path,
    pub precision: Precision,
}

impl ModelDir<'_> {
    pub fn read(&self, name: &str) -> Result<Vec<u8>, EmbedError> {
        let p = self.path.join(name);
        std::fs::read(&p)
            .map_err(|e| EmbedError::Format(format!("cannot read {}: {e}", p.display())))
    }

    pub fn config<T: serde::de::DeserializeOwned>(&self) -> Result<T, EmbedError> {
        serde_json::from_slice(&self.read("config.json")?)
            .map_err(|e| EmbedError::Format(format!("config.json: {e}")))
    }

    /// `tokenizer.json` without its padding and truncation (long texts are windowed here and nothing is padded),
    /// and the ids of `specials`.
    pub fn tokenizer<const N: usize>(
        &self,
        specials: [&str; N],
    ) -> Result<(tokenizers::Tokenizer, [u32; N]), EmbedError> {
        let bad = |e: tokenizers::Error| EmbedError::Format(format!("tokenizer.json: {e}"));
        let mut tokenizer =
            tokenizers::Tokenizer::from_bytes(self.read("tokenizer.json")?).map_err(bad)?;
        tokenizer.with_padding(None);
        tokenizer.with_truncation(None).map_err(bad)?;
        let mut ids = [0; N];
        for (id, t) in ids.iter_mut().zip(specials) {
            *id = tokenizer
                .token_to_id(t)
                .ok_or_else(|| EmbedError::Format(format!("tokenizer.json has no {t}")))?;
        }
        Ok((tokenizer, ids))
    }

    /// A `[out, in]` projection at the directory's precision.
    pub fn weight(&self, w: Tensor) -> Result<Weight, EmbedError> {
        match self.precision {
            Precision::Int8 => int8_weight(w),
            Precision::F32 => linear_weight(w),
        }
    }
}
