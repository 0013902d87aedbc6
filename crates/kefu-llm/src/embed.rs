//! Text embeddings: the [`Embedder`] trait, implemented by the local encoders (`kefu-embed-local`) and by any
//! OpenAI-compatible `/v1/embeddings` endpoint (`kefu-llm-openai`).

use async_trait::async_trait;

use crate::LlmError;

/// Whether a text is a search query or a passage to be found. Asymmetric models (e5) embed the two differently
/// ("query: " / "passage: " prefixes); symmetric ones (MiniLM) ignore it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EmbedKind {
    Query,
    Passage,
}

/// Turns texts into unit-length vectors whose dot product is their cosine similarity.
#[async_trait]
pub trait Embedder: Send + Sync + 'static {
    /// Identifies the model and its settings; vectors from different ids must never be compared, so stores key
    /// their vectors by it.
    fn id(&self) -> &str;
    /// Length of every vector.
    fn dim(&self) -> usize;
    /// One vector per text, in order. An empty text gets a vector too.
    async fn embed(&self, kind: EmbedKind, texts: &[String]) -> Result<Vec<Vec<f32>>, LlmError>;
}

/// Scales `v` to unit length (left as is when it is all zeros).
pub fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 1e-12 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Dot product; the cosine similarity of two unit vectors.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_gives_unit_length_and_leaves_zero_alone() {
        let mut v = vec![3.0, 4.0];
        normalise(&mut v);
        assert!((dot(&v, &v) - 1.0).abs() < 1e-6);
        assert_eq!(v, vec![0.6, 0.8]);
        let mut z = vec![0.0; 3];
        normalise(&mut z);
        assert_eq!(z, vec![0.0; 3]);
    }
}
