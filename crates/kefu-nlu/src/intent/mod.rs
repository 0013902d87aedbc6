//! The intent classifier: TF-IDF word and character n-grams plus sentence embeddings, one multinomial logistic
//! regression over all of them, temperature-calibrated confidences and an out-of-scope decision.
//!
//! Training is reproducible (sorted vocabulary, seeded shuffles). With no separate calibration set, a stratified
//! tenth of the data (chosen by a hash of the text) fits the temperature and the out-of-scope threshold, and the
//! final model is then refitted on everything with those two values.

mod data;
mod features;
mod linear;

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use data::{
    dedupe, parse as parse_examples, read as read_examples, validate as validate_examples, Example,
};
pub use features::FeatureConfig;
pub use linear::LinearConfig;

use features::{Sparse, Vectorizer};
use linear::{fit_temperature, softmax_into, Linear, Row};

use crate::NluError;

/// Labels that mean "none of the intents" in training data.
pub const OUT_OF_SCOPE_LABELS: &[&str] = &["oos", "out_of_scope", "out-of-scope", "其他"];

/// A sentence encoder whose vectors join the features (for example multilingual-e5 with its `query: ` prefix).
/// Synchronous: prediction runs on the caller's thread in a few milliseconds.
pub trait SentenceEncoder: Send + Sync {
    /// Names the model; a classifier trained with one encoder refuses to run with another.
    fn id(&self) -> &str;
    fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String>;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub features: FeatureConfig,
    pub linear: LinearConfig,
    /// Share of the data held out to calibrate when no calibration set is given.
    pub calibration_share: f32,
    /// Without out-of-scope examples to tune on, the threshold rejects this share of held-out correct answers.
    pub reject_share: f32,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            features: FeatureConfig::default(),
            linear: LinearConfig::default(),
            calibration_share: 0.1,
            reject_share: 0.03,
        }
    }
}

/// What a trained model records about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub format: u32,
    pub labels: Vec<String>,
    pub out_of_scope_label: Option<String>,
    pub encoders: Vec<EncoderInfo>,
    pub config: TrainConfig,
    pub temperature: f32,
    /// Calibrated confidence below which the answer is "out of scope".
    pub threshold: f32,
    pub examples: usize,
    /// SHA-256 of the training examples in order: the same data and config give the same model.
    pub data_sha256: String,
    /// Accuracy on the calibration set (in-scope rows) and out-of-scope recall there, when it had such rows.
    pub calibration_accuracy: Option<f32>,
    pub calibration_oos_recall: Option<f32>,
    pub sparse_features: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderInfo {
    pub id: String,
    pub dim: usize,
}

const FORMAT: u32 = 1;
const MAGIC: &[u8; 8] = b"KEFUINT1";

/// A trained classifier (without its encoders; see [`IntentClassifier`]).
#[derive(Debug, Clone)]
pub struct IntentModel {
    pub info: ModelInfo,
    vectorizer: Vectorizer,
    linear: Linear,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntentPrediction {
    /// The predicted intent, `None` when out of scope.
    pub intent: Option<String>,
    /// Calibrated probability of the best in-scope intent.
    pub confidence: f32,
    pub out_of_scope: bool,
    /// The best few intents with their calibrated probabilities.
    pub top: Vec<(String, f32)>,
}

/// A model with the encoders it was trained with, ready to predict.
#[derive(Clone)]
pub struct IntentClassifier {
    model: Arc<IntentModel>,
    encoders: Vec<Arc<dyn SentenceEncoder>>,
}

fn sha256_examples(examples: &[Example]) -> String {
    let mut h = Sha256::new();
    for e in examples {
        h.update(e.text.as_bytes());
        h.update([0]);
        h.update(e.intent.as_bytes());
        h.update([1]);
    }
    hex_string(&h.finalize())
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn encode_all(
    encoders: &[Arc<dyn SentenceEncoder>],
    texts: &[&str],
) -> Result<(Vec<Vec<f32>>, Vec<EncoderInfo>), NluError> {
    let mut dense: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
    let mut infos = Vec::new();
    for enc in encoders {
        let mut dim = 0;
        for (chunk_i, chunk) in texts.chunks(64).enumerate() {
            let vs = enc.encode(chunk).map_err(NluError::Encoder)?;
            if vs.len() != chunk.len() {
                return Err(NluError::Encoder(format!(
                    "{} returned {} vectors for {} texts",
                    enc.id(),
                    vs.len(),
                    chunk.len()
                )));
            }
            for (j, v) in vs.into_iter().enumerate() {
                dim = v.len();
                dense[chunk_i * 64 + j].extend(normalised(v));
            }
        }
        infos.push(EncoderInfo {
            id: enc.id().to_owned(),
            dim,
        });
    }
    Ok((dense, infos))
}

fn normalised(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        for x in &mut v {
            *x /= n;
        }
    }
    v
}

/// Deterministic stratified hold-out: per intent, the examples whose text hash falls lowest.
pub fn calibration_split(examples: &[Example], share: f32) -> (Vec<usize>, Vec<usize>) {
    let mut by_intent: HashMap<&str, Vec<(u64, usize)>> = HashMap::new();
    for (i, e) in examples.iter().enumerate() {
        let d = Sha256::digest(e.text.as_bytes());
        let key = u64::from_le_bytes(d[..8].try_into().expect("8 bytes"));
        by_intent.entry(&e.intent).or_default().push((key, i));
    }
    let (mut fit, mut held) = (Vec::new(), Vec::new());
    for (_, mut rows) in by_intent {
        rows.sort_unstable();
        // Classes with fewer than five examples stay wholly in training.
        let n_held = if rows.len() >= 5 {
            ((rows.len() as f32 * share).round() as usize).max(1)
        } else {
            0
        };
        for (j, (_, i)) in rows.into_iter().enumerate() {
            if j < n_held {
                held.push(i);
            } else {
                fit.push(i);
            }
        }
    }
    fit.sort_unstable();
    held.sort_unstable();
    (fit, held)
}

struct Fitted {
    vectorizer: Vectorizer,
    linear: Linear,
}

fn fit(
    texts: &[&str],
    dense: &[&[f32]],
    labels: &[usize],
    classes: usize,
    config: &TrainConfig,
) -> Fitted {
    let vectorizer = Vectorizer::fit(texts, &config.features);
    let sparse: Vec<Sparse> = texts.iter().map(|t| vectorizer.transform(t)).collect();
    let w = config.features.dense_weight;
    let dense_scaled: Vec<Vec<f32>> = dense
        .iter()
        .map(|d| d.iter().map(|x| x * w).collect())
        .collect();
    let dense_dim = dense_scaled.first().map_or(0, Vec::len);
    let rows: Vec<Row<'_>> = sparse
        .iter()
        .zip(&dense_scaled)
        .zip(labels)
        .map(|((s, d), &label)| Row {
            sparse: s,
            dense: d,
            label,
        })
        .collect();
    let mut linear = Linear::new(classes, vectorizer.len(), dense_dim);
    linear.train(&rows, &config.linear);
    Fitted { vectorizer, linear }
}

impl IntentModel {
    /// Trains on `examples`; `calibration`, when given, fits the temperature and threshold (and the model is not
    /// refitted), otherwise a stratified share of `examples` does.
    pub fn train(
        examples: &[Example],
        calibration: Option<&[Example]>,
        encoders: &[Arc<dyn SentenceEncoder>],
        config: &TrainConfig,
    ) -> Result<IntentModel, NluError> {
        data::validate(examples)?;
        let mut labels: Vec<String> = examples.iter().map(|e| e.intent.clone()).collect();
        labels.sort_unstable();
        labels.dedup();
        let label_id: HashMap<&str, usize> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.as_str(), i))
            .collect();
        let oos = labels
            .iter()
            .position(|l| OUT_OF_SCOPE_LABELS.contains(&l.to_lowercase().as_str()));

        let all_texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
        let (all_dense, encoder_infos) = encode_all(encoders, &all_texts)?;
        let all_labels: Vec<usize> = examples
            .iter()
            .map(|e| label_id[e.intent.as_str()])
            .collect();

        // Calibration rows: the given set, or a held-out share fitted by a first model.
        let (cal_texts, cal_dense, cal_labels, fitted_first, refit) = match calibration {
            Some(cal) => {
                let texts: Vec<&str> = cal.iter().map(|e| e.text.as_str()).collect();
                let (dense, _) = encode_all(encoders, &texts)?;
                let mut ls = Vec::new();
                for e in cal {
                    let Some(&l) = label_id.get(e.intent.as_str()) else {
                        return Err(NluError::BadTrainingFile(format!(
                            "the calibration set has intent {:?}, which the training set lacks",
                            e.intent
                        )));
                    };
                    ls.push(l);
                }
                let dense_refs: Vec<&[f32]> = all_dense.iter().map(Vec::as_slice).collect();
                let f = fit(&all_texts, &dense_refs, &all_labels, labels.len(), config);
                (
                    texts.into_iter().map(str::to_owned).collect::<Vec<_>>(),
                    dense,
                    ls,
                    f,
                    false,
                )
            }
            None => {
                let (fit_idx, held_idx) = calibration_split(examples, config.calibration_share);
                let texts: Vec<&str> = fit_idx.iter().map(|&i| all_texts[i]).collect();
                let dense: Vec<&[f32]> = fit_idx.iter().map(|&i| all_dense[i].as_slice()).collect();
                let ls: Vec<usize> = fit_idx.iter().map(|&i| all_labels[i]).collect();
                let f = fit(&texts, &dense, &ls, labels.len(), config);
                (
                    held_idx.iter().map(|&i| all_texts[i].to_owned()).collect(),
                    held_idx.iter().map(|&i| all_dense[i].clone()).collect(),
                    held_idx.iter().map(|&i| all_labels[i]).collect(),
                    f,
                    true,
                )
            }
        };

        let w = config.features.dense_weight;
        let cal_logits: Vec<Vec<f32>> = cal_texts
            .iter()
            .zip(&cal_dense)
            .map(|(t, d)| {
                let d: Vec<f32> = d.iter().map(|x| x * w).collect();
                fitted_first
                    .linear
                    .logits(&fitted_first.vectorizer.transform(t), &d)
            })
            .collect();
        let temperature = fit_temperature(&cal_logits, &cal_labels);
        let decisions: Vec<(usize, f32)> = cal_logits
            .iter()
            .map(|l| best_in_scope(l, temperature, oos))
            .collect();
        let (threshold, cal_acc, cal_oos) =
            choose_threshold(&decisions, &cal_labels, oos, config.reject_share);

        let Fitted { vectorizer, linear } = if refit {
            let dense_refs: Vec<&[f32]> = all_dense.iter().map(Vec::as_slice).collect();
            fit(&all_texts, &dense_refs, &all_labels, labels.len(), config)
        } else {
            fitted_first
        };
        Ok(IntentModel {
            info: ModelInfo {
                format: FORMAT,
                out_of_scope_label: oos.map(|i| labels[i].clone()),
                labels,
                encoders: encoder_infos,
                config: config.clone(),
                temperature,
                threshold,
                examples: examples.len(),
                data_sha256: sha256_examples(examples),
                calibration_accuracy: cal_acc,
                calibration_oos_recall: cal_oos,
                sparse_features: vectorizer.len(),
            },
            vectorizer,
            linear,
        })
    }

    /// Calibrated probabilities for every label, from a text and its (already normalised) embeddings.
    fn probabilities(&self, text: &str, dense: &[f32]) -> Vec<f32> {
        let w = self.info.config.features.dense_weight;
        let d: Vec<f32> = dense.iter().map(|x| x * w).collect();
        let logits = self.linear.logits(&self.vectorizer.transform(text), &d);
        let scaled: Vec<f32> = logits.iter().map(|x| x / self.info.temperature).collect();
        let mut p = vec![0.0; scaled.len()];
        softmax_into(&scaled, &mut p);
        p
    }

    fn decide(&self, p: &[f32]) -> IntentPrediction {
        let oos = self
            .info
            .out_of_scope_label
            .as_ref()
            .and_then(|l| self.info.labels.iter().position(|x| x == l));
        let mut order: Vec<usize> = (0..p.len()).filter(|&i| Some(i) != oos).collect();
        order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
        let best = order[0];
        let oos_wins = oos.is_some_and(|o| p[o] > p[best]);
        let out_of_scope = oos_wins || p[best] < self.info.threshold;
        IntentPrediction {
            intent: (!out_of_scope).then(|| self.info.labels[best].clone()),
            confidence: p[best],
            out_of_scope,
            top: order
                .iter()
                .take(5)
                .map(|&i| (self.info.labels[i].clone(), p[i]))
                .collect(),
        }
    }

    /// Serialises to `KEFUINT1`, a JSON header length (u64 LE), the JSON header, then the f32 LE weights.
    pub fn to_bytes(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Header<'a> {
            info: &'a ModelInfo,
            vectorizer: &'a Vectorizer,
            sparse_dim: usize,
            dense_dim: usize,
        }
        let header = serde_json::to_vec(&Header {
            info: &self.info,
            vectorizer: &self.vectorizer,
            sparse_dim: self.linear.sparse_dim,
            dense_dim: self.linear.dense_dim,
        })
        .expect("model header serialises");
        let mut out = Vec::with_capacity(
            16 + header.len() + 4 * (self.linear.weights.len() + self.linear.bias.len()),
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(header.len() as u64).to_le_bytes());
        out.extend_from_slice(&header);
        for x in self.linear.bias.iter().chain(&self.linear.weights) {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<IntentModel, NluError> {
        #[derive(Deserialize)]
        struct Header {
            info: ModelInfo,
            vectorizer: Vectorizer,
            sparse_dim: usize,
            dense_dim: usize,
        }
        let bad = |m: &str| NluError::BadModel(m.to_owned());
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            return Err(bad("not a kefu intent model (bad magic)"));
        }
        let len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
        let body = bytes
            .get(16..16usize.saturating_add(len))
            .ok_or_else(|| bad("truncated header"))?;
        let mut h: Header =
            serde_json::from_slice(body).map_err(|e| bad(&format!("bad header: {e}")))?;
        if h.info.format != FORMAT {
            return Err(bad(&format!(
                "model format {} is not supported (expected {FORMAT})",
                h.info.format
            )));
        }
        let classes = h.info.labels.len();
        let floats = &bytes[16 + len..];
        let expected = classes * (1 + h.sparse_dim + h.dense_dim);
        if floats.len() != expected * 4 || h.vectorizer.len() != h.sparse_dim {
            return Err(bad("the weights do not match the header"));
        }
        let mut all: Vec<f32> = floats
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        let weights = all.split_off(classes);
        h.vectorizer.build_index();
        Ok(IntentModel {
            info: h.info,
            vectorizer: h.vectorizer,
            linear: Linear {
                classes,
                sparse_dim: h.sparse_dim,
                dense_dim: h.dense_dim,
                weights,
                bias: all,
            },
        })
    }
}

/// The best in-scope class and its calibrated probability; an out-of-scope class that wins reports probability 0.
fn best_in_scope(logits: &[f32], temperature: f32, oos: Option<usize>) -> (usize, f32) {
    let scaled: Vec<f32> = logits.iter().map(|x| x / temperature).collect();
    let mut p = vec![0.0; scaled.len()];
    softmax_into(&scaled, &mut p);
    let best = (0..p.len())
        .filter(|&i| Some(i) != oos)
        .max_by(|&a, &b| p[a].total_cmp(&p[b]))
        .unwrap_or(0);
    if oos.is_some_and(|o| p[o] > p[best]) {
        (best, 0.0)
    } else {
        (best, p[best])
    }
}

const MIN_OOS_FOR_THRESHOLD: usize = 20;

/// The out-of-scope threshold. With at least 20 out-of-scope rows in the calibration set: the value maximising in-scope
/// accuracy + out-of-scope recall (ties: the lower threshold). Without: the value that turns away `reject_share` of
/// the correctly answered rows. Returns (threshold, in-scope accuracy, out-of-scope recall) on the set.
fn choose_threshold(
    decisions: &[(usize, f32)],
    labels: &[usize],
    oos: Option<usize>,
    reject_share: f32,
) -> (f32, Option<f32>, Option<f32>) {
    if decisions.is_empty() {
        return (0.0, None, None);
    }
    let is_oos = |l: usize| Some(l) == oos;
    let n_in = labels.iter().filter(|&&l| !is_oos(l)).count().max(1) as f32;
    let n_oos = labels.iter().filter(|&&l| is_oos(l)).count();
    let score = |t: f32| {
        let (mut ok_in, mut ok_oos) = (0usize, 0usize);
        for (&(c, p), &l) in decisions.iter().zip(labels) {
            let rejected = p < t;
            if is_oos(l) {
                ok_oos += usize::from(rejected);
            } else {
                ok_in += usize::from(!rejected && c == l);
            }
        }
        (
            ok_in as f32 / n_in,
            (n_oos > 0).then(|| ok_oos as f32 / n_oos as f32),
        )
    };
    // Too few out-of-scope rows make the choice noise (a small tenant set holds out one or two): the out-of-scope
    // class still catches what resembles them, and the threshold follows the reject-share rule.
    let threshold = if n_oos >= MIN_OOS_FOR_THRESHOLD {
        let mut candidates: Vec<f32> = decisions.iter().map(|d| d.1).filter(|p| *p > 0.0).collect();
        candidates.push(0.0);
        candidates.sort_by(f32::total_cmp);
        candidates.dedup();
        let mut best = (f32::NEG_INFINITY, 0.0f32);
        for &t in &candidates {
            let (a, r) = score(t);
            let s = a + r.unwrap_or(0.0);
            if s > best.0 + 1e-6 {
                best = (s, t);
            }
        }
        best.1
    } else {
        let mut correct: Vec<f32> = decisions
            .iter()
            .zip(labels)
            .filter(|((c, _), l)| c == *l)
            .map(|(d, _)| d.1)
            .collect();
        correct.sort_by(f32::total_cmp);
        let k = (correct.len() as f32 * reject_share).floor() as usize;
        correct.get(k).copied().unwrap_or(0.0)
    };
    let (a, r) = score(threshold);
    (threshold, Some(a), r)
}

impl IntentClassifier {
    /// Pairs a model with its encoders, which must be the ones it was trained with, in the same order.
    pub fn new(
        model: IntentModel,
        encoders: Vec<Arc<dyn SentenceEncoder>>,
    ) -> Result<Self, NluError> {
        let want: Vec<&str> = model.info.encoders.iter().map(|e| e.id.as_str()).collect();
        let have: Vec<&str> = encoders.iter().map(|e| e.id()).collect();
        if want != have {
            return Err(NluError::BadModel(format!(
                "the model was trained with encoders {want:?} but {have:?} are loaded"
            )));
        }
        Ok(IntentClassifier {
            model: Arc::new(model),
            encoders,
        })
    }

    pub fn model(&self) -> &IntentModel {
        &self.model
    }

    pub fn predict(&self, text: &str) -> Result<IntentPrediction, NluError> {
        Ok(self.predict_batch(&[text])?.remove(0))
    }

    /// Several texts at once (the encoders batch them).
    pub fn predict_batch(&self, texts: &[&str]) -> Result<Vec<IntentPrediction>, NluError> {
        // Classify on a bounded prefix: a 1 MB message costs the same as its first 2,000 characters.
        let clipped: Vec<&str> = texts.iter().map(|t| crate::text::clip(t, 2000)).collect();
        let (dense, _) = encode_all(&self.encoders, &clipped)?;
        Ok(clipped
            .iter()
            .zip(&dense)
            .map(|(t, d)| self.model.decide(&self.model.probabilities(t, d)))
            .collect())
    }
}

#[cfg(test)]
mod tests;
