//! What the sentence-transformers directories (MiniLM's, EmbeddingGemma's) share: their files, `config.json`,
//! `tokenizer.json`, and the precision their projections are held at.

use std::path::Path;

use candle_core::Tensor;

use crate::bert::{int8_weight, linear_weight, Weight};
use crate::{EmbedError, Precision};

/// A directory's `tokenizer.json` (WordPiece for MiniLM, BPE for EmbeddingGemma) and the ids of the tokens that open
/// and close a model input (`[CLS]` / `[SEP]`, `<bos>` / `<eos>`).
pub(crate) struct DirTokenizer {
    tokenizer: tokenizers::Tokenizer,
    pub open: u32,
    pub close: u32,
}

impl DirTokenizer {
    /// The text's tokens, without the opening and closing ones.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, EmbedError> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| EmbedError::Model(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }
}

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
    /// with the tokens that open and close a model input.
    pub fn tokenizer(&self, open: &str, close: &str) -> Result<DirTokenizer, EmbedError> {
        let bad = |e: tokenizers::Error| EmbedError::Format(format!("tokenizer.json: {e}"));
        let mut tokenizer =
            tokenizers::Tokenizer::from_bytes(self.read("tokenizer.json")?).map_err(bad)?;
        tokenizer.with_padding(None);
        tokenizer.with_truncation(None).map_err(bad)?;
        let special = |t: &str| {
            tokenizer
                .token_to_id(t)
                .ok_or_else(|| EmbedError::Format(format!("tokenizer.json has no {t}")))
        };
        let (open, close) = (special(open)?, special(close)?);
        Ok(DirTokenizer {
            tokenizer,
            open,
            close,
        })
    }

    /// A `[out, in]` projection at the directory's precision.
    pub fn weight(&self, w: Tensor) -> Result<Weight, EmbedError> {
        match self.precision {
            Precision::Int8 => int8_weight(w),
            Precision::F32 => linear_weight(w),
        }
    }
}
