//! The intent classifier: TF-IDF word and character n-grams plus sentence embeddings, one multinomial logistic
//! regression over all of them, temperature-calibrated confidences and an out-of-scope decision.
//!
//! The out-of-scope decision thresholds the calibrated probability of the best intent times the squared cosine
//! between the message's sentence vector and the nearest training example of that intent (the vectors are kept
//! with the model, 8-bit): a message unlike anything the intent was trained on is doubted even when the linear
//! model is sure. Chosen on CLINC150's validation split over the probability alone, the energy and the maximum
//! logit (bench/RESULTS.md). Without encoders, the probability alone.
//!
//! An optional nearest-neighbour vote (`neighbour_weights`, off by default) adds each intent's nearest-example cosine
//! to its logit, with the weight chosen on the held-out rows.
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
    /// The out-of-scope score is the probability times the cosine to the intent's nearest example to this power
    /// (0: the probability alone). 2 was chosen on CLINC150's validation split (bench/RESULTS.md).
    pub support_power: f32,
    /// Candidate weights for the nearest-neighbour vote: each intent's logit gains the weight times the cosine to
    /// its nearest training example. Calibration keeps the candidate that scores best on the held-out rows (ties:
    /// the earlier one; 0 is the linear model alone). Without encoders there is no vote. Off by default (`[0]`):
    /// it helped BANKING77 and hurt CLINC150, and a held-out tenth chose its weight unreliably (bench/RESULTS.md).
    pub neighbour_weights: Vec<f32>,
    /// With a separate calibration set: once it has settled the temperature and threshold, the final model is
    /// refitted on the training and calibration examples together, as a held-out share is refitted when none is
    /// given. Off by default: the calibration then scores the very model that runs.
    pub refit_with_calibration: bool,
    /// A cheaper first stage: a second model, trained the same way on these of the encoders only (by id), answers
    /// the messages it is sure of, and the other encoders and the full model run only for the rest. How sure is
    /// the gate, chosen on the calibration rows ([`choose_gate`]). Empty (the default): one stage.
    pub first_stage_encoders: Vec<String>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            features: FeatureConfig::default(),
            linear: LinearConfig::default(),
            calibration_share: 0.1,
            reject_share: 0.03,
            support_power: 2.0,
            neighbour_weights: vec![0.0],
            refit_with_calibration: false,
            first_stage_encoders: Vec::new(),
        }
    }
}

impl TrainConfig {
    /// The defaults with `overrides` (a JSON object, possibly partial) merged over them key by key; unknown keys
    /// and wrong types are errors.
    pub fn with_overrides(overrides: &serde_json::Value) -> Result<TrainConfig, NluError> {
        fn merge(a: &mut serde_json::Value, b: &serde_json::Value) {
            match (a, b) {
                (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                    for (k, v) in b {
                        merge(a.entry(k.clone()).or_insert(serde_json::Value::Null), v);
                    }
                }
                (a, b) => *a = b.clone(),
            }
        }
        let mut v = serde_json::to_value(TrainConfig::default()).expect("config serialises");
        merge(&mut v, overrides);
        let config: TrainConfig = serde_json::from_value(v)
            .map_err(|e| NluError::BadTrainingFile(format!("training settings: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Settings out of their sensible ranges are refused before any work: a negative share, a regularisation
    /// strength of 0, thousands of vote candidates (each costs a calibration pass).
    pub fn validate(&self) -> Result<(), NluError> {
        let f = &self.features;
        let l = &self.linear;
        let weight_ok = |w: f32| w.is_finite() && (0.0..=100.0).contains(&w);
        let checks: [(bool, &str); 12] = [
            (f.word_ngrams <= 4, "features.word_ngrams must be at most 4"),
            (f.char_max <= 8, "features.char_max must be at most 8"),
            (
                f.char_max == 0 || f.char_min <= f.char_max,
                "features.char_min must not exceed features.char_max",
            ),
            (
                weight_ok(f.word_weight) && weight_ok(f.char_weight) && weight_ok(f.dense_weight),
                "features weights must be between 0 and 100",
            ),
            (l.c.is_finite() && l.c > 0.0, "linear.c must be above 0"),
            (
                (1..=100_000).contains(&l.max_iterations),
                "linear.max_iterations must be between 1 and 100000",
            ),
            (
                l.tolerance.is_finite() && l.tolerance > 0.0,
                "linear.tolerance must be above 0",
            ),
            (
                (1..=64).contains(&l.memory),
                "linear.memory must be between 1 and 64",
            ),
            (
                self.calibration_share > 0.0 && self.calibration_share <= 0.5,
                "calibration_share must be above 0 and at most 0.5",
            ),
            (
                (0.0..=0.5).contains(&self.reject_share),
                "reject_share must be between 0 and 0.5",
            ),
            (
                self.support_power.is_finite() && (0.0..=16.0).contains(&self.support_power),
                "support_power must be between 0 and 16",
            ),
            (
                (1..=16).contains(&self.neighbour_weights.len())
                    && self
                        .neighbour_weights
                        .iter()
                        .all(|w| w.is_finite() && w.abs() <= 1000.0),
                "neighbour_weights must hold 1 to 16 weights between -1000 and 1000",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, message)) => Err(NluError::BadTrainingFile(format!(
                "training settings: {message}"
            ))),
            None => Ok(()),
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
    /// The nearest-neighbour vote's weight calibration chose from `config.neighbour_weights` (models saved before
    /// the vote read 0).
    #[serde(default)]
    pub neighbour_weight: f32,
    pub examples: usize,
    /// SHA-256 of the training examples in order: the same data and config give the same model.
    pub data_sha256: String,
    /// Accuracy on the calibration set (in-scope rows) and out-of-scope recall there, when it had such rows.
    pub calibration_accuracy: Option<f32>,
    pub calibration_oos_recall: Option<f32>,
    pub sparse_features: usize,
    /// With a first stage (`config.first_stage_encoders`): its gate and what it did on the calibration rows.
    #[serde(default)]
    pub first_stage: Option<FirstStageInfo>,
}

/// The first stage's gate: it answers a message when it lets an intent through with a score (the one the
/// out-of-scope threshold applies to) of at least `gate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirstStageInfo {
    pub gate: f32,
    /// Share of the calibration rows the first stage answered.
    pub answered: f32,
    /// Rows right on calibration: the two stages together, and the full model alone.
    pub right: usize,
    pub right_full_model: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderInfo {
    pub id: String,
    pub dim: usize,
}

const FORMAT: u32 = 2;
const MAGIC: &[u8; 8] = b"KEFUINT1";

/// A trained classifier (without its encoders; see [`IntentClassifier`]).
#[derive(Debug, Clone)]
pub struct IntentModel {
    pub info: ModelInfo,
    vectorizer: Vectorizer,
    linear: Linear,
    exemplars: Exemplars,
    /// The first stage (its gate is in `info.first_stage`).
    first_stage: Option<Box<IntentModel>>,
}

/// The in-scope training examples' sentence vectors, grouped by intent, each stored as int8 with one scale.
#[derive(Debug, Clone, Default, PartialEq)]
struct Exemplars {
    dim: usize,
    /// Intent `c`'s vectors are rows `offsets[c]..offsets[c + 1]` (one entry per label plus one).
    offsets: Vec<u32>,
    scales: Vec<f32>,
    values: Vec<i8>,
}

impl Exemplars {
    /// From each example's dense features (the normalised encoder blocks, concatenated). Empty when there are no
    /// dense features.
    fn new(dense: &[&[f32]], labels: &[usize], classes: usize) -> Exemplars {
        let dim = dense.first().map_or(0, |d| d.len());
        if dim == 0 {
            return Exemplars::default();
        }
        let mut order: Vec<usize> = (0..labels.len()).collect();
        order.sort_by_key(|&i| (labels[i], i));
        let mut e = Exemplars {
            dim,
            offsets: vec![0; classes + 1],
            scales: Vec::with_capacity(order.len()),
            values: Vec::with_capacity(order.len() * dim),
        };
        for &i in &order {
            e.offsets[labels[i] + 1] += 1;
            let v = normalised(dense[i].to_vec());
            let amax = v.iter().fold(0f32, |m, x| m.max(x.abs()));
            let scale = if amax > 0.0 { amax / 127.0 } else { 1.0 };
            e.scales.push(scale);
            e.values.extend(
                v.iter()
                    .map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8),
            );
        }
        for c in 0..classes {
            e.offsets[c + 1] += e.offsets[c];
        }
        e
    }

    /// The cosine between `dense` and the nearest example of `class` (`None` without vectors).
    fn nearest(&self, class: usize, dense: &[f32]) -> Option<f32> {
        self.query_norm(dense)
            .and_then(|norm| self.nearest_scaled(class, dense, norm))
    }

    /// The cosine to each intent's nearest example (`None` for intents without examples, or without vectors).
    fn nearest_each(&self, classes: usize, dense: &[f32]) -> Vec<Option<f32>> {
        let norm = self.query_norm(dense);
        (0..classes)
            .map(|c| norm.and_then(|n| self.nearest_scaled(c, dense, n)))
            .collect()
    }

    /// The query's norm, or `None` when there are no stored vectors of its length to compare with.
    fn query_norm(&self, dense: &[f32]) -> Option<f32> {
        (self.dim != 0 && dense.len() == self.dim)
            .then(|| dense.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12))
    }

    fn nearest_scaled(&self, class: usize, dense: &[f32], norm: f32) -> Option<f32> {
        let (from, to) = (
            self.offsets[class] as usize,
            self.offsets[class + 1] as usize,
        );
        (from..to)
            .map(|r| {
                let row = &self.values[r * self.dim..(r + 1) * self.dim];
                dot_i8_f32(row, dense) * self.scales[r] / norm
            })
            .reduce(f32::max)
    }
}

/// The dot product of an int8 row and an f32 vector, summed in eight lanes so the compiler can keep it in SIMD
/// registers (a single running f32 sum must add in order, one element at a time).
fn dot_i8_f32(row: &[i8], x: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (row_chunks, x_chunks) = (row.chunks_exact(8), x.chunks_exact(8));
    let tail: f32 = row_chunks
        .remainder()
        .iter()
        .zip(x_chunks.remainder())
        .map(|(&q, v)| f32::from(q) * v)
        .sum();
    for (r, v) in row_chunks.zip(x_chunks) {
        for i in 0..8 {
            lanes[i] += f32::from(r[i]) * v[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Adds `weight` × each intent's nearest-example cosine (from [`Exemplars::nearest_each`]) to its logit.
fn add_neighbour_votes(logits: &mut [f32], nearest: &[Option<f32>], weight: f32) {
    if weight == 0.0 {
        return;
    }
    for (logit, cos) in logits.iter_mut().zip(nearest) {
        if let Some(cos) = cos {
            *logit += weight * cos;
        }
    }
}

/// The score the out-of-scope threshold applies to: the probability, times the cosine to the intent's nearest
/// training example (when there is one) to the power `power`.
fn in_scope_score(p: f32, support: Option<f32>, power: f32) -> f32 {
    support.map_or(p, |s| p * s.max(0.0).powf(power))
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntentPrediction {
    /// The predicted intent, `None` when out of scope.
    pub intent: Option<String>,
    /// Calibrated probability of the best in-scope intent.
    pub confidence: f32,
    /// Cosine between the message's sentence vector and the nearest training example of that intent (`None`
    /// without encoders).
    pub support: Option<f32>,
    pub out_of_scope: bool,
    /// The best few intents with their calibrated probabilities.
    pub top: Vec<(String, f32)>,
}

/// A prediction with what its out-of-scope decision was made of: the score the threshold applies to, and whether
/// the out-of-scope class itself outranks every intent (then no threshold lets the message through).
pub(crate) struct Decision {
    pub prediction: IntentPrediction,
    pub score: f32,
    pub oos_class_wins: bool,
    /// Answered by the first stage (the full model did not run).
    pub first_stage: bool,
}

/// A model with the encoders it was trained with, ready to predict.
#[derive(Clone)]
pub struct IntentClassifier {
    model: Arc<IntentModel>,
    encoders: Vec<Arc<dyn SentenceEncoder>>,
}

fn sha256_examples<'a>(examples: impl IntoIterator<Item = &'a Example>) -> String {
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

/// One encoder's normalised vectors of `texts` (64 at a time).
fn encode_one(enc: &Arc<dyn SentenceEncoder>, texts: &[&str]) -> Result<Vec<Vec<f32>>, NluError> {
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(64) {
        let vs = enc.encode(chunk).map_err(NluError::Encoder)?;
        one_each(enc.id(), &vs, chunk).map_err(NluError::Encoder)?;
        out.extend(vs.into_iter().map(normalised));
    }
    Ok(out)
}

/// An encoder must return one vector per text.
fn one_each(id: &str, vectors: &[Vec<f32>], texts: &[&str]) -> Result<(), String> {
    if vectors.len() == texts.len() {
        Ok(())
    } else {
        Err(format!(
            "{id} returned {} vectors for {} texts",
            vectors.len(),
            texts.len()
        ))
    }
}

/// Every encoder's normalised vectors of each text, concatenated in encoder order, and what each encoder gave.
fn encode_all(
    encoders: &[Arc<dyn SentenceEncoder>],
    texts: &[&str],
) -> Result<(Vec<Vec<f32>>, Vec<EncoderInfo>), NluError> {
    let mut dense: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
    let mut infos = Vec::new();
    for enc in encoders {
        let vs = encode_one(enc, texts)?;
        infos.push(EncoderInfo {
            id: enc.id().to_owned(),
            dim: vs.last().map_or(0, Vec::len),
        });
        for (d, v) in dense.iter_mut().zip(vs) {
            d.extend(v);
        }
    }
    Ok((dense, infos))
}

/// `v` scaled to unit length (left as is when it is all zeros).
pub(crate) fn normalised(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        for x in &mut v {
            *x /= n;
        }
    }
    v
}

/// A fixed pseudo-random key for an example's text (orders the stratified splits).
fn text_hash(text: &str) -> u64 {
    let d = Sha256::digest(text.as_bytes());
    u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
}

/// Each intent's example indices, ordered by a hash of the text (a fixed pseudo-random order).
fn by_intent_in_hash_order(examples: &[Example]) -> std::collections::BTreeMap<&str, Vec<usize>> {
    let mut by_intent: std::collections::BTreeMap<&str, Vec<(u64, usize)>> = Default::default();
    for (i, e) in examples.iter().enumerate() {
        by_intent
            .entry(&e.intent)
            .or_default()
            .push((text_hash(&e.text), i));
    }
    by_intent
        .into_iter()
        .map(|(k, mut rows)| {
            rows.sort_unstable();
            (k, rows.into_iter().map(|(_, i)| i).collect())
        })
        .collect()
}

/// Deterministic stratified hold-out: per intent, the examples whose text hash falls lowest.
pub fn calibration_split(examples: &[Example], share: f32) -> (Vec<usize>, Vec<usize>) {
    let (mut fit, mut held) = (Vec::new(), Vec::new());
    for rows in by_intent_in_hash_order(examples).into_values() {
        // Classes with fewer than five examples stay wholly in training.
        let n_held = if rows.len() >= 5 {
            ((rows.len() as f32 * share).round() as usize).max(1)
        } else {
            0
        };
        for (j, i) in rows.into_iter().enumerate() {
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

/// What calibration settles: the vote weight, the temperature and the out-of-scope threshold, with the held-out
/// scores they reached.
struct Calibrated {
    neighbour_weight: f32,
    temperature: f32,
    threshold: f32,
    accuracy: Option<f32>,
    oos_recall: Option<f32>,
}

impl Calibrated {
    /// What the candidates are compared by: held-out accuracy plus out-of-scope recall, as the threshold is chosen.
    fn objective(&self) -> f32 {
        self.accuracy.unwrap_or(0.0) + self.oos_recall.unwrap_or(0.0)
    }
}

struct Fitted {
    vectorizer: Vectorizer,
    linear: Linear,
    exemplars: Exemplars,
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
    Fitted {
        vectorizer,
        linear,
        exemplars: Exemplars::new(dense, labels, classes),
    }
}

/// An encoder that keeps every vector it computed, by text (training both stages reads the first stage's encoders
/// twice).
struct Remembered {
    inner: Arc<dyn SentenceEncoder>,
    vectors: std::sync::Mutex<HashMap<String, Vec<f32>>>,
}

impl Remembered {
    fn new(inner: Arc<dyn SentenceEncoder>) -> Remembered {
        Remembered {
            inner,
            vectors: Default::default(),
        }
    }
}

impl SentenceEncoder for Remembered {
    fn id(&self) -> &str {
        self.inner.id()
    }

    fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        let mut known = self.vectors.lock().unwrap_or_else(|e| e.into_inner());
        let new: Vec<&str> = texts
            .iter()
            .copied()
            .filter(|t| !known.contains_key(*t))
            .collect();
        if !new.is_empty() {
            let vs = self.inner.encode(&new)?;
            one_each(self.id(), &vs, &new)?;
            known.extend(new.into_iter().map(str::to_owned).zip(vs));
        }
        Ok(texts.iter().map(|t| known[*t].clone()).collect())
    }
}

/// A calibration row as the calibrated model decided it: the intent it let through (`None`: rejected as out of
/// scope), the out-of-scope score, and the row's label.
#[derive(Debug, Clone, Copy, PartialEq)]
struct HeldDecision {
    intent: Option<usize>,
    score: f32,
    label: usize,
}

impl HeldDecision {
    fn right(&self, oos: Option<usize>) -> bool {
        if Some(self.label) == oos {
            self.intent.is_none()
        } else {
            self.intent == Some(self.label)
        }
    }
}

/// The first stage's gate: the lowest score at which the two stages together get at least as many calibration rows
/// right as the full model alone (`stage` and `full` decide the same rows, in the same order). Walking down from
/// the top, each row the first stage would answer adds one when only it is right and takes one when only the full
/// model is; the gate is the lowest score where that running count is not below 0. A gate above every score
/// (`f32::MAX`) when no score keeps up.
fn choose_gate(
    stage: &[HeldDecision],
    full: &[HeldDecision],
    oos: Option<usize>,
) -> FirstStageInfo {
    let right_full = full.iter().filter(|d| d.right(oos)).count();
    let mut answerable: Vec<(f32, i32)> = stage
        .iter()
        .zip(full)
        .filter(|(s, _)| s.intent.is_some())
        .map(|(s, f)| (s.score, i32::from(s.right(oos)) - i32::from(f.right(oos))))
        .collect();
    answerable.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut gate, mut answered, mut balance, mut best) = (f32::MAX, 0usize, 0i32, 0i32);
    let mut i = 0;
    while i < answerable.len() {
        // Rows of equal score are answered together.
        let score = answerable[i].0;
        while i < answerable.len() && answerable[i].0 == score {
            balance += answerable[i].1;
            i += 1;
        }
        if balance >= 0 {
            (gate, answered, best) = (score, i, balance);
        }
    }
    FirstStageInfo {
        gate,
        answered: answered as f32 / stage.len().max(1) as f32,
        right: (right_full as i32 + best) as usize,
        right_full_model: right_full,
    }
}

impl IntentModel {
    /// Trains on `examples`; `calibration`, when given, fits the temperature and threshold (and the model is not
    /// refitted), otherwise a stratified share of `examples` does. With `config.first_stage_encoders`, the first
    /// stage is trained the same way on those encoders and gated on the same calibration rows.
    pub fn train(
        examples: &[Example],
        calibration: Option<&[Example]>,
        encoders: &[Arc<dyn SentenceEncoder>],
        config: &TrainConfig,
    ) -> Result<IntentModel, NluError> {
        if config.first_stage_encoders.is_empty() {
            return Ok(Self::train_one(examples, calibration, encoders, config)?.0);
        }
        let wanted = &config.first_stage_encoders;
        // Both models read the first stage's encoders: each text is encoded once, for both.
        let first: Vec<Arc<dyn SentenceEncoder>> = encoders
            .iter()
            .filter(|e| wanted.iter().any(|w| w == e.id()))
            .map(|e| Arc::new(Remembered::new(e.clone())) as Arc<dyn SentenceEncoder>)
            .collect();
        let ids: Vec<&str> = encoders.iter().map(|e| e.id()).collect();
        if first.len() != wanted.len() || first.len() == encoders.len() {
            return Err(NluError::BadTrainingFile(format!(
                "training settings: first_stage_encoders {wanted:?} must name some, not all, of the encoders \
                 {ids:?}, each once"
            )));
        }
        let one = TrainConfig {
            first_stage_encoders: Vec::new(),
            ..config.clone()
        };
        let encoders: Vec<Arc<dyn SentenceEncoder>> = encoders
            .iter()
            .map(|e| first.iter().find(|f| f.id() == e.id()).unwrap_or(e).clone())
            .collect();
        let (mut model, full) = Self::train_one(examples, calibration, &encoders, &one)?;
        let (stage, stage_held) = Self::train_one(examples, calibration, &first, &one)?;
        let oos = model.out_of_scope_index();
        model.info.config = config.clone();
        model.info.first_stage = Some(choose_gate(&stage_held, &full, oos));
        model.first_stage = Some(Box::new(stage));
        Ok(model)
    }

    fn out_of_scope_index(&self) -> Option<usize> {
        self.info
            .out_of_scope_label
            .as_ref()
            .and_then(|l| self.info.labels.iter().position(|x| x == l))
    }

    /// One model, and how it decided its calibration rows once calibrated.
    fn train_one(
        examples: &[Example],
        calibration: Option<&[Example]>,
        encoders: &[Arc<dyn SentenceEncoder>],
        config: &TrainConfig,
    ) -> Result<(IntentModel, Vec<HeldDecision>), NluError> {
        data::validate(examples)?;
        config.validate()?;
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

        // Calibration rows, each scored by a model that did not see it: the given set (scored by the final model),
        // or held-out rows of the training data (a stratified share, or for small sets every row in 5 folds).
        let w = config.features.dense_weight;
        let dense_refs: Vec<&[f32]> = all_dense.iter().map(Vec::as_slice).collect();
        // A held-out row: the linear model's logits and each intent's nearest-example cosine (without a vote to
        // weigh, only the best in-scope intent's, which the out-of-scope score needs).
        let voting = config.neighbour_weights.iter().any(|&v| v != 0.0);
        let score = |f: &Fitted, text: &str, d: &[f32]| -> (Vec<f32>, Vec<Option<f32>>) {
            let scaled: Vec<f32> = d.iter().map(|x| x * w).collect();
            let logits = f.linear.logits(&f.vectorizer.transform(text), &scaled);
            let nearest = if voting {
                f.exemplars.nearest_each(labels.len(), d)
            } else {
                let best = best_class(&logits, oos);
                let mut only = vec![None; labels.len()];
                only[best] = f.exemplars.nearest(best, d);
                only
            };
            (logits, nearest)
        };
        // A model fitted on every training row.
        let fit_all = || fit(&all_texts, &dense_refs, &all_labels, labels.len(), config);
        let mut held: Vec<(Vec<f32>, Vec<Option<f32>>, usize)> = Vec::new();
        let final_fit = match calibration {
            Some(cal) => {
                let texts: Vec<&str> = cal.iter().map(|e| e.text.as_str()).collect();
                let (dense, _) = encode_all(encoders, &texts)?;
                let f = fit_all();
                let mut cal_labels = Vec::with_capacity(cal.len());
                for ((e, t), d) in cal.iter().zip(&texts).zip(&dense) {
                    let Some(&l) = label_id.get(e.intent.as_str()) else {
                        return Err(NluError::BadTrainingFile(format!(
                            "the calibration set has intent {:?}, which the training set lacks",
                            e.intent
                        )));
                    };
                    let (logits, nearest) = score(&f, t, d);
                    held.push((logits, nearest, l));
                    cal_labels.push(l);
                }
                if config.refit_with_calibration {
                    let texts: Vec<&str> = all_texts.iter().copied().chain(texts).collect();
                    let dense: Vec<&[f32]> = dense_refs
                        .iter()
                        .copied()
                        .chain(dense.iter().map(Vec::as_slice))
                        .collect();
                    let ls: Vec<usize> = all_labels.iter().copied().chain(cal_labels).collect();
                    Some((fit(&texts, &dense, &ls, labels.len(), config), cal))
                } else {
                    Some((f, &[][..]))
                }
            }
            None => {
                for (fit_idx, held_idx) in held_out_splits(examples, config.calibration_share) {
                    let texts: Vec<&str> = fit_idx.iter().map(|&i| all_texts[i]).collect();
                    let dense: Vec<&[f32]> = fit_idx.iter().map(|&i| dense_refs[i]).collect();
                    let ls: Vec<usize> = fit_idx.iter().map(|&i| all_labels[i]).collect();
                    let f = fit(&texts, &dense, &ls, labels.len(), config);
                    for &i in &held_idx {
                        let (logits, nearest) = score(&f, all_texts[i], dense_refs[i]);
                        held.push((logits, nearest, all_labels[i]));
                    }
                }
                None
            }
        };
        let cal_labels: Vec<usize> = held.iter().map(|h| h.2).collect();
        // Each candidate vote weight gets its own temperature and threshold; the best held-out score wins.
        // (`validate` made the candidates finite and at least one.)
        let has_vectors = held.iter().any(|h| h.1.iter().any(Option::is_some));
        let candidates: &[f32] = if has_vectors {
            &config.neighbour_weights
        } else {
            &[0.0]
        };
        let mut best: Option<Calibrated> = None;
        for &weight in candidates {
            let cal_logits: Vec<Vec<f32>> = held
                .iter()
                .map(|(l, nearest, _)| {
                    let mut l = l.clone();
                    add_neighbour_votes(&mut l, nearest, weight);
                    l
                })
                .collect();
            let temperature = fit_temperature(&cal_logits, &cal_labels);
            let decisions: Vec<(usize, f32)> = cal_logits
                .iter()
                .zip(&held)
                .map(|(l, (_, nearest, _))| {
                    let (c, p) = best_in_scope(l, temperature, oos);
                    (c, in_scope_score(p, nearest[c], config.support_power))
                })
                .collect();
            let (threshold, accuracy, oos_recall) =
                choose_threshold(&decisions, &cal_labels, oos, config.reject_share);
            let this = Calibrated {
                neighbour_weight: weight,
                temperature,
                threshold,
                accuracy,
                oos_recall,
            };
            if best
                .as_ref()
                .is_none_or(|b| this.objective() > b.objective() + 1e-6)
            {
                best = Some(this);
            }
        }
        let Calibrated {
            neighbour_weight,
            temperature,
            threshold,
            accuracy: cal_acc,
            oos_recall: cal_oos,
        } = best.expect("at least one candidate");
        let held_decisions = held
            .iter()
            .map(|(logits, nearest, label)| {
                let mut l = logits.clone();
                add_neighbour_votes(&mut l, nearest, neighbour_weight);
                let (c, p) = best_in_scope(&l, temperature, oos);
                let score = in_scope_score(p, nearest[c], config.support_power);
                // An out-of-scope class that wins reports probability 0: rejected at any threshold.
                let rejected = p == 0.0 || score < threshold;
                HeldDecision {
                    intent: (!rejected).then_some(c),
                    score,
                    label: *label,
                }
            })
            .collect();

        // With the examples it learned from besides `examples`.
        let (
            Fitted {
                vectorizer,
                linear,
                exemplars,
            },
            learned_calibration,
        ) = match final_fit {
            Some(f) => f,
            None => (fit_all(), &[][..]),
        };
        let model = IntentModel {
            info: ModelInfo {
                format: FORMAT,
                out_of_scope_label: oos.map(|i| labels[i].clone()),
                labels,
                encoders: encoder_infos,
                config: config.clone(),
                temperature,
                threshold,
                neighbour_weight,
                examples: examples.len() + learned_calibration.len(),
                data_sha256: sha256_examples(examples.iter().chain(learned_calibration)),
                calibration_accuracy: cal_acc,
                calibration_oos_recall: cal_oos,
                sparse_features: vectorizer.len(),
                first_stage: None,
            },
            vectorizer,
            linear,
            exemplars,
            first_stage: None,
        };
        Ok((model, held_decisions))
    }

    /// Calibrated probabilities for every label, from a text and its (already normalised) embeddings.
    fn probabilities(&self, text: &str, dense: &[f32]) -> Vec<f32> {
        let w = self.info.config.features.dense_weight;
        let d: Vec<f32> = dense.iter().map(|x| x * w).collect();
        let mut logits = self.linear.logits(&self.vectorizer.transform(text), &d);
        if self.info.neighbour_weight != 0.0 {
            let nearest = self.exemplars.nearest_each(logits.len(), dense);
            add_neighbour_votes(&mut logits, &nearest, self.info.neighbour_weight);
        }
        let scaled: Vec<f32> = logits.iter().map(|x| x / self.info.temperature).collect();
        let mut p = vec![0.0; scaled.len()];
        softmax_into(&scaled, &mut p);
        p
    }

    fn decide(&self, p: &[f32], dense: &[f32]) -> Decision {
        let oos = self.out_of_scope_index();
        let mut order: Vec<usize> = (0..p.len()).filter(|&i| Some(i) != oos).collect();
        order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
        let best = order[0];
        let oos_class_wins = oos.is_some_and(|o| p[o] > p[best]);
        let support = self.exemplars.nearest(best, dense);
        let score = in_scope_score(p[best], support, self.info.config.support_power);
        let out_of_scope = oos_class_wins || score < self.info.threshold;
        Decision {
            prediction: IntentPrediction {
                intent: (!out_of_scope).then(|| self.info.labels[best].clone()),
                confidence: p[best],
                support,
                out_of_scope,
                top: order
                    .iter()
                    .take(5)
                    .map(|&i| (self.info.labels[i].clone(), p[i]))
                    .collect(),
            },
            score,
            oos_class_wins,
            first_stage: false,
        }
    }

    /// The first stage's answer when it passes the gate.
    fn first_stage_answer(&self, text: &str, dense: &[f32]) -> Option<Decision> {
        let (stage, info) = (
            self.first_stage.as_deref()?,
            self.info.first_stage.as_ref()?,
        );
        let d = stage.decide(&stage.probabilities(text, dense), dense);
        (!d.prediction.out_of_scope && d.score >= info.gate).then_some(Decision {
            first_stage: true,
            ..d
        })
    }

    /// Serialises to `KEFUINT1`, a JSON header length (u64 LE), the JSON header, the f32 LE biases and weights,
    /// then the exemplars' f32 LE scales and int8 values, then the first stage's own bytes (`first_stage_bytes` in
    /// the header; none without one).
    pub fn to_bytes(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Header<'a> {
            info: &'a ModelInfo,
            vectorizer: &'a Vectorizer,
            sparse_dim: usize,
            dense_dim: usize,
            exemplar_dim: usize,
            exemplar_offsets: &'a [u32],
            first_stage_bytes: usize,
        }
        let stage = self
            .first_stage
            .as_ref()
            .map(|m| m.to_bytes())
            .unwrap_or_default();
        let e = &self.exemplars;
        let header = serde_json::to_vec(&Header {
            info: &self.info,
            vectorizer: &self.vectorizer,
            sparse_dim: self.linear.sparse_dim,
            dense_dim: self.linear.dense_dim,
            exemplar_dim: e.dim,
            exemplar_offsets: &e.offsets,
            first_stage_bytes: stage.len(),
        })
        .expect("model header serialises");
        let mut out = Vec::with_capacity(
            16 + header.len()
                + 4 * (self.linear.weights.len() + self.linear.bias.len() + e.scales.len())
                + e.values.len(),
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(header.len() as u64).to_le_bytes());
        out.extend_from_slice(&header);
        for x in self
            .linear
            .bias
            .iter()
            .chain(&self.linear.weights)
            .chain(&e.scales)
        {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.extend(e.values.iter().map(|v| v.to_le_bytes()[0]));
        out.extend_from_slice(&stage);
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<IntentModel, NluError> {
        #[derive(Deserialize)]
        struct Header {
            info: ModelInfo,
            vectorizer: Vectorizer,
            sparse_dim: usize,
            dense_dim: usize,
            exemplar_dim: usize,
            exemplar_offsets: Vec<u32>,
            #[serde(default)]
            first_stage_bytes: usize,
        }
        let bad = |m: &str| NluError::BadModel(m.to_owned());
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            return Err(bad("not a kefu intent model (bad magic)"));
        }
        let len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
        let body = bytes
            .get(16..16usize.saturating_add(len))
            .ok_or_else(|| bad("truncated header"))?;
        // The format is checked before the rest of the header, whose fields may differ between formats.
        #[derive(Deserialize)]
        struct Version {
            info: FormatOnly,
        }
        #[derive(Deserialize)]
        struct FormatOnly {
            format: u32,
        }
        let version: Version =
            serde_json::from_slice(body).map_err(|e| bad(&format!("bad header: {e}")))?;
        if version.info.format != FORMAT {
            return Err(bad(&format!(
                "model format {} is not supported (expected {FORMAT}): train the model again",
                version.info.format
            )));
        }
        let mut h: Header =
            serde_json::from_slice(body).map_err(|e| bad(&format!("bad header: {e}")))?;
        let classes = h.info.labels.len();
        let n_exemplars = h.exemplar_offsets.last().copied().unwrap_or(0) as usize;
        let offsets_ok = h.exemplar_dim == 0
            || (h.exemplar_offsets.len() == classes + 1
                && h.exemplar_offsets.windows(2).all(|w| w[0] <= w[1]));
        let n_floats = classes * (1 + h.sparse_dim + h.dense_dim) + n_exemplars;
        let tail = &bytes[16 + len..];
        let Some((tail, stage)) = tail
            .len()
            .checked_sub(h.first_stage_bytes)
            .map(|at| tail.split_at(at))
        else {
            return Err(bad("truncated first stage"));
        };
        let first_stage = match (stage.is_empty(), &h.info.first_stage) {
            (true, None) => None,
            (false, Some(_)) => {
                let stage = IntentModel::from_bytes(stage)?;
                // Its encoders are some of the full model's, with the same dimensions.
                if stage.first_stage.is_some()
                    || stage.info.labels != h.info.labels
                    || !stage
                        .info
                        .encoders
                        .iter()
                        .all(|e| h.info.encoders.contains(e))
                {
                    return Err(bad("the first stage does not fit the model"));
                }
                Some(Box::new(stage))
            }
            _ => return Err(bad("the first stage does not match the header")),
        };
        if !offsets_ok
            || h.vectorizer.len() != h.sparse_dim
            || Some(tail.len())
                != n_floats
                    .checked_mul(4)
                    .and_then(|f| n_exemplars.checked_mul(h.exemplar_dim).map(|v| f + v))
        {
            return Err(bad("the weights do not match the header"));
        }
        let (floats, values) = tail.split_at(n_floats * 4);
        let mut all: Vec<f32> = floats
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        let scales = all.split_off(classes * (1 + h.sparse_dim + h.dense_dim));
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
            exemplars: Exemplars {
                dim: h.exemplar_dim,
                offsets: h.exemplar_offsets,
                scales,
                values: values.iter().map(|&b| i8::from_le_bytes([b])).collect(),
            },
            first_stage,
        })
    }
}

/// The in-scope class with the highest logit (the same at any temperature).
fn best_class(logits: &[f32], oos: Option<usize>) -> usize {
    (0..logits.len())
        .filter(|&i| Some(i) != oos)
        .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
        .unwrap_or(0)
}

/// Below this many examples, calibration scores every example out of fold instead of holding out one share: a
/// tenth of a small set is too few rows to set a threshold with.
const SMALL_SET: usize = 2000;
const FOLDS: usize = 5;

/// The (fit, held-out) index pairs calibration scores: one stratified share for large sets, [`FOLDS`] stratified
/// folds for small ones. Intents with fewer than five examples are never held out.
fn held_out_splits(examples: &[Example], share: f32) -> Vec<(Vec<usize>, Vec<usize>)> {
    if examples.len() >= SMALL_SET {
        return vec![calibration_split(examples, share)];
    }
    stratified_folds(examples, FOLDS, 5)
}

/// `folds` (fit, held-out) index pairs: each intent's examples, in a fixed pseudo-random order, dealt round the folds.
/// Intents with fewer than `min_examples` are never held out; folds left with nothing to hold out are dropped.
pub fn stratified_folds(
    examples: &[Example],
    folds: usize,
    min_examples: usize,
) -> Vec<(Vec<usize>, Vec<usize>)> {
    let mut fold_of = vec![None; examples.len()];
    for rows in by_intent_in_hash_order(examples).into_values() {
        if rows.len() >= min_examples {
            for (j, i) in rows.into_iter().enumerate() {
                fold_of[i] = Some(j % folds);
            }
        }
    }
    (0..folds)
        .map(|k| {
            let (held, fit): (Vec<usize>, Vec<usize>) =
                (0..examples.len()).partition(|&i| fold_of[i] == Some(k));
            (fit, held)
        })
        .filter(|(_, held)| !held.is_empty())
        .collect()
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

    /// The ids of the encoders the model needs, in order.
    pub fn encoder_ids(&self) -> Vec<&str> {
        self.encoders.iter().map(|e| e.id()).collect()
    }

    /// Predicts with sentence vectors the caller already has (`(encoder id, vector of text)`, e.g. the one knowledge
    /// search computed for the same text); encoders without one given run as usual. The given vectors must come
    /// from [`crate::text::clip`]`(text, 2000)`, as the encoders would see it.
    pub fn predict_with(
        &self,
        text: &str,
        given: &[(&str, &[f32])],
    ) -> Result<IntentPrediction, NluError> {
        Ok(self.decide_all(&[text], given)?.remove(0).prediction)
    }

    /// Several texts at once (the encoders batch them).
    pub fn predict_batch(&self, texts: &[&str]) -> Result<Vec<IntentPrediction>, NluError> {
        Ok(self
            .decide_batch(texts)?
            .into_iter()
            .map(|d| d.prediction)
            .collect())
    }

    /// [`Self::predict_batch`] with what each out-of-scope decision was made of (for the eval's diagnosis).
    pub(crate) fn decide_batch(&self, texts: &[&str]) -> Result<Vec<Decision>, NluError> {
        self.decide_all(texts, &[])
    }

    /// Decides each text: by the first stage where there is one and it passes the gate, otherwise by the full
    /// model. Encoders run only for the texts that need them, each once; `given` vectors stand in for theirs when
    /// there is one text.
    fn decide_all(
        &self,
        texts: &[&str],
        given: &[(&str, &[f32])],
    ) -> Result<Vec<Decision>, NluError> {
        // Classify on a bounded prefix: a 1 MB message costs the same as its first 2,000 characters.
        let clipped: Vec<&str> = texts.iter().map(|t| crate::text::clip(t, 2000)).collect();
        let given = if texts.len() == 1 { given } else { &[] };
        let mut vectors = Vectors {
            encoders: &self.encoders,
            of: vec![vec![None; clipped.len()]; self.encoders.len()],
            texts: &clipped,
            given,
        };
        let mut out: Vec<Option<Decision>> = (0..clipped.len()).map(|_| None).collect();
        let all: Vec<usize> = (0..clipped.len()).collect();
        if let Some(stage) = &self.model.first_stage {
            let dense = vectors.dense(&stage.info.encoders, &all)?;
            for ((slot, t), d) in out.iter_mut().zip(&clipped).zip(&dense) {
                *slot = self.model.first_stage_answer(t, d);
            }
        }
        let rest: Vec<usize> = all.into_iter().filter(|&i| out[i].is_none()).collect();
        if !rest.is_empty() {
            let dense = vectors.dense(&self.model.info.encoders, &rest)?;
            for (&i, d) in rest.iter().zip(&dense) {
                out[i] = Some(
                    self.model
                        .decide(&self.model.probabilities(clipped[i], d), d),
                );
            }
        }
        Ok(out
            .into_iter()
            .map(|d| d.expect("every text decided"))
            .collect())
    }
}

/// The encoders' normalised vectors of a batch of texts, each computed when first asked for.
struct Vectors<'a> {
    /// The classifier's encoders, in the model's order.
    encoders: &'a [Arc<dyn SentenceEncoder>],
    /// `of[encoder][text]`.
    of: Vec<Vec<Option<Vec<f32>>>>,
    texts: &'a [&'a str],
    /// Vectors the caller gave for the only text, by encoder id.
    given: &'a [(&'a str, &'a [f32])],
}

impl Vectors<'_> {
    /// The `wanted` encoders' vectors of the texts at `rows`, concatenated in `wanted`'s order.
    fn dense(&mut self, wanted: &[EncoderInfo], rows: &[usize]) -> Result<Vec<Vec<f32>>, NluError> {
        let mut dense = vec![Vec::new(); rows.len()];
        for info in wanted {
            let Some(k) = self.encoders.iter().position(|e| e.id() == info.id) else {
                return Err(NluError::BadModel(format!(
                    "encoder {} is not loaded",
                    info.id
                )));
            };
            let missing: Vec<usize> = rows
                .iter()
                .copied()
                .filter(|&i| self.of[k][i].is_none())
                .collect();
            if !missing.is_empty() {
                let vs = match self.given.iter().find(|(id, _)| *id == info.id) {
                    Some((_, v)) => vec![normalised(v.to_vec())],
                    None => {
                        let texts: Vec<&str> = missing.iter().map(|&i| self.texts[i]).collect();
                        encode_one(&self.encoders[k], &texts)?
                    }
                };
                for (&i, v) in missing.iter().zip(vs) {
                    if v.len() != info.dim {
                        return Err(NluError::Encoder(format!(
                            "{} gave a vector of {} dimensions; the model was trained with {}",
                            info.id,
                            v.len(),
                            info.dim
                        )));
                    }
                    self.of[k][i] = Some(v);
                }
            }
            for (d, &i) in dense.iter_mut().zip(rows) {
                d.extend_from_slice(self.of[k][i].as_deref().expect("computed above"));
            }
        }
        Ok(dense)
    }
}

#[cfg(test)]
mod tests;
