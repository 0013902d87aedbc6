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
    /// One text's usual vector and, from the same forward pass, the mean-pooled states after each of `layers`
    /// (each block normalised, concatenated in ascending layer order: what the sentence encoder named
    /// `<id>@<layers>` gives, see [`split_layers`]). `None`: this embedder cannot pool chosen layers (a hosted model).
    async fn embed_with_layers(
        &self,
        _kind: EmbedKind,
        _text: &str,
        _layers: &[usize],
    ) -> Result<Option<LayerVectors>, LlmError> {
        Ok(None)
    }
    /// Whether a query's vector ([`EmbedKind::Query`], and its layer poolings) is also what this model gives the
    /// intent classifier as its sentence encoder, so that a turn may compute it once for both. True for e5 (both
    /// read `query: `); false where the classifier's input differs, as EmbeddingGemma's classification prompt
    /// differs from its search prompt.
    fn query_is_classifier_input(&self) -> bool {
        true
    }
}

/// [`Embedder::embed_with_layers`]'s answer.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerVectors {
    /// What [`Embedder::embed`] gives for the text.
    pub vector: Vec<f32>,
    /// One normalised block per asked layer, ascending, concatenated.
    pub layers: Vec<f32>,
}

/// Splits a layer-pooled encoder's name, `<model>@<layer>+<layer>+…` (`e5-small@8+10+12`), into the model's name and
/// its layers, sorted and without repeats (`None` for a plain name).
pub fn split_layers(name: &str) -> Result<(&str, Option<Vec<usize>>), String> {
    let Some((model, list)) = name.split_once('@') else {
        return Ok((name, None));
    };
    let mut layers = list
        .split('+')
        .map(|l| l.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| format!("{name:?}: expected <model>@<layer>+<layer>+… (layer numbers)"))?;
    layers.sort_unstable();
    layers.dedup();
    Ok((model, Some(layers)))
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
    fn layer_pooled_names_split_into_model_and_sorted_layers() {
        assert_eq!(split_layers("e5-small"), Ok(("e5-small", None)));
        assert_eq!(
            split_layers("e5-small@12+8+10+8"),
            Ok(("e5-small", Some(vec![8, 10, 12])))
        );
        assert!(split_layers("e5-small@8+x")
            .unwrap_err()
            .contains("layer numbers"));
        assert!(split_layers("e5-small@").is_err());
    }

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
