//! `kefu eval intent`: accuracy of the intent classifier on BANKING77, CLINC150 (with its out-of-scope queries)
//! and SMP2017-ECDT task 1, trained from scratch on each dataset's training split.
//!
//! - BANKING77: train on `train.csv` (a stratified tenth held out to calibrate, then refitted), report test
//!   accuracy of the top intent.
//! - CLINC150 (`data_full.json`): train on `train` + `oos_train`, calibrate the temperature and choose the one
//!   out-of-scope threshold on `val` + `oos_val` (with `refit_with_calibration`, the final model then learns from
//!   them too), report in-scope accuracy (an in-scope query rejected as out of scope counts as wrong) and
//!   out-of-scope recall on `test` + `oos_test`.
//! - SMP2017 (`smp2017_task1/{train,develop,test}/<split>_<domain>.txt`): train on `train` + `develop` (a
//!   stratified tenth held out to calibrate, then refitted), report test accuracy.
//!
//! `dev` evaluates on the development data instead of the test set (for choosing settings): the calibration
//! tenth of BANKING77's train split, CLINC's `val`, SMP's `develop` (trained on `train` alone).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::intent::{
    Decision, Example, IntentClassifier, IntentModel, IntentPrediction, SentenceEncoder,
    TrainConfig,
};
use crate::NluError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntentDataset {
    Banking77,
    Clinc150,
    Smp2017,
}

impl IntentDataset {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "banking77" => Some(Self::Banking77),
            "clinc150" | "clinc" => Some(Self::Clinc150),
            "smp2017" | "smp" => Some(Self::Smp2017),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::Banking77 => "banking77",
            Self::Clinc150 => "clinc150",
            Self::Smp2017 => "smp2017",
        }
    }
    /// Where the data lives by default, relative to the repository root. SMP2017 has no licence for copying, so it
    /// is read from the shared data folder beside the checkout.
    pub fn default_path(self) -> &'static str {
        match self {
            Self::Banking77 => "eval/datasets/banking77",
            Self::Clinc150 => "eval/datasets/clinc150/data_full.json",
            Self::Smp2017 => "../shared/data/smp_ecdt_zh/smp2017_task1",
        }
    }
}

/// A dataset split three ways.
pub struct Splits {
    pub train: Vec<Example>,
    /// Given calibration data (`None`: a share of `train` is held out).
    pub calibration: Option<Vec<Example>>,
    pub test: Vec<Example>,
}

fn read(path: &Path) -> Result<String, NluError> {
    std::fs::read_to_string(path)
        .map_err(|e| NluError::BadTrainingFile(format!("{}: {e}", path.display())))
}

fn load_banking77(dir: &Path) -> Result<(Vec<Example>, Vec<Example>), NluError> {
    // The published files repeat a few questions (differing only in surrounding whitespace); each is kept once.
    let mut train =
        crate::intent::read_examples("train.csv", read(&dir.join("train.csv"))?.as_bytes())?;
    let mut test =
        crate::intent::read_examples("test.csv", read(&dir.join("test.csv"))?.as_bytes())?;
    crate::intent::dedupe(&mut train);
    crate::intent::dedupe(&mut test);
    Ok((train, test))
}

fn load_clinc(path: &Path) -> Result<Splits, NluError> {
    #[derive(Deserialize)]
    struct Full {
        train: Vec<(String, String)>,
        val: Vec<(String, String)>,
        test: Vec<(String, String)>,
        oos_train: Vec<(String, String)>,
        oos_val: Vec<(String, String)>,
        oos_test: Vec<(String, String)>,
    }
    let f: Full = serde_json::from_str(&read(path)?)
        .map_err(|e| NluError::BadTrainingFile(format!("{}: {e}", path.display())))?;
    let ex = |rows: Vec<(String, String)>, more: Vec<(String, String)>| {
        let mut v = rows
            .into_iter()
            .chain(more)
            .map(|(t, l)| Example::new(t, l))
            .collect::<Vec<_>>();
        crate::intent::dedupe(&mut v);
        v
    };
    Ok(Splits {
        train: ex(f.train, f.oos_train),
        calibration: Some(ex(f.val, f.oos_val)),
        test: ex(f.test, f.oos_test),
    })
}

fn load_smp_split(dir: &Path, split: &str) -> Result<Vec<Example>, NluError> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join(split))
        .map_err(|e| NluError::BadTrainingFile(format!("{}: {e}", dir.join(split).display())))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let name = f.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        let Some(domain) = name.strip_prefix(&format!("{split}_")) else {
            continue;
        };
        for line in read(&f)?.lines() {
            let t = line.trim_start_matches('\u{feff}').trim();
            if !t.is_empty() {
                out.push(Example::new(t, domain));
            }
        }
    }
    // A handful of utterances repeat within a split; a repeat adds nothing to training or testing.
    crate::intent::dedupe(&mut out);
    Ok(out)
}

/// Loads a dataset's splits for `dev` (settings selection) or test evaluation.
pub fn load(dataset: IntentDataset, path: &Path, dev: bool) -> Result<Splits, NluError> {
    match dataset {
        IntentDataset::Banking77 => {
            let (train, test) = load_banking77(path)?;
            if dev {
                let (fit, held) = crate::intent::calibration_split(
                    &train,
                    TrainConfig::default().calibration_share,
                );
                Ok(Splits {
                    train: fit.iter().map(|&i| train[i].clone()).collect(),
                    calibration: None,
                    test: held.iter().map(|&i| train[i].clone()).collect(),
                })
            } else {
                Ok(Splits {
                    train,
                    calibration: None,
                    test,
                })
            }
        }
        IntentDataset::Clinc150 => {
            let s = load_clinc(path)?;
            if dev {
                // Calibrate on the test set's in-scope half would leak; dev calibrates on val and reports on val.
                let val = s.calibration.clone();
                Ok(Splits {
                    train: s.train,
                    calibration: val.clone(),
                    test: val.unwrap_or_default(),
                })
            } else {
                Ok(s)
            }
        }
        IntentDataset::Smp2017 => {
            // The final model learns from train + develop (a stratified tenth held out to calibrate, then refitted),
            // with settings fixed beforehand; `dev` trains on train alone and reports on develop.
            let mut train = load_smp_split(path, "train")?;
            let develop = load_smp_split(path, "develop")?;
            let test = if dev {
                develop
            } else {
                train.extend(develop);
                crate::intent::dedupe(&mut train);
                load_smp_split(path, "test")?
            };
            Ok(Splits {
                train,
                calibration: None,
                test,
            })
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct IntentReport {
    pub dataset: String,
    pub split: String,
    pub encoders: Vec<String>,
    pub train_examples: usize,
    pub test_examples: usize,
    pub classes: usize,
    pub sparse_features: usize,
    /// Top-intent accuracy over in-scope test rows, ignoring the out-of-scope decision.
    pub accuracy: f64,
    /// In-scope accuracy when a rejected in-scope row counts as wrong (CLINC's measure).
    pub in_scope_accuracy: f64,
    /// Share of out-of-scope test rows rejected (None without such rows).
    pub oos_recall: Option<f64>,
    pub temperature: f32,
    /// The nearest-neighbour vote weight calibration chose.
    pub neighbour_weight: f32,
    pub threshold: f32,
    /// Expected calibration error of the top in-scope confidence (15 bins).
    pub ece: f64,
    pub train_seconds: f64,
    /// Per-query latency, one query at a time, embedding included (300 test queries spread evenly over the split);
    /// the encoder's matrix products use its own thread count (`kefu eval intent` prints it; `RAYON_NUM_THREADS=1`
    /// for one core).
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_mean_ms: f64,
    /// With a first stage: its gate, what it did on the calibration rows and the share of test rows it answered.
    pub first_stage: Option<FirstStageReport>,
    pub model_bytes: usize,
    /// Diagnosis, not a result: the best in-scope accuracy any threshold reaches while rejecting at least 90 % of
    /// the out-of-scope rows, the threshold picked on this split itself. It tells a threshold that transferred
    /// badly from the calibration rows apart from a score that cannot separate the two.
    pub in_scope_accuracy_at_oos_90_on_split: Option<f64>,
    /// The test rows the classifier got wrong (top intent wrong, an in-scope row rejected, an out-of-scope row let
    /// through), for error analysis on development data; `kefu eval intent --errors FILE` writes them.
    #[serde(skip)]
    pub mistakes: Vec<Mistake>,
    /// Every test row as the classifier scored it, in the split's order; `kefu eval intent --predictions FILE`
    /// writes them.
    #[serde(skip)]
    pub predictions: Vec<RowPrediction>,
}

/// One scored row: its text and labelled intent beside the prediction (the best in-scope intents with their
/// calibrated probabilities, the out-of-scope decision), so that runs with different settings can be compared or
/// combined row by row outside kefu (bench/smp2017-develop/ensemble.py averages them).
#[derive(Debug, Clone, Serialize)]
pub struct RowPrediction {
    pub text: String,
    /// The labelled intent.
    pub label: String,
    /// The cross-validation fold that held the row out (`None` outside cross-validation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fold: Option<usize>,
    #[serde(flatten)]
    pub prediction: IntentPrediction,
}

/// What K-fold cross-validation measured: each fold's top-intent accuracy, and every training row as the model
/// that did not learn from it scored it (fold by fold).
#[derive(Debug, Clone)]
pub struct CrossValidation {
    pub accuracies: Vec<f64>,
    pub predictions: Vec<RowPrediction>,
}

/// A first stage's gate and calibration figures (`calibration.answered` is a share), and the share of test rows it
/// answered (percent; the full model ran for the rest).
#[derive(Debug, Clone, Serialize)]
pub struct FirstStageReport {
    #[serde(flatten)]
    pub calibration: crate::FirstStageInfo,
    pub answered_test: f64,
}

/// One test row the classifier got wrong.
#[derive(Debug, Clone, Serialize)]
pub struct Mistake {
    pub text: String,
    pub intent: String,
    /// The best in-scope intent, whether or not it was let through.
    pub predicted: String,
    pub confidence: f32,
    /// The score the out-of-scope threshold applies to.
    pub score: f32,
    pub rejected: bool,
}

/// Trains on the dataset and measures. `encoders` may answer from a cache; latency is measured separately with
/// `live_encoders` (the same models, uncached) on up to 300 test queries spread evenly over the split (in and out of
/// scope: the files group rows by intent, and a first stage answers some intents more often than others), one at a
/// time, each after `idle` without work ([`super::timed_after_idle`]).
pub fn run(
    dataset: IntentDataset,
    splits: &Splits,
    dev: bool,
    encoders: &[Arc<dyn SentenceEncoder>],
    live_encoders: &[Arc<dyn SentenceEncoder>],
    config: &TrainConfig,
    idle: std::time::Duration,
) -> Result<IntentReport, NluError> {
    let started = Instant::now();
    let model = IntentModel::train(
        &splits.train,
        splits.calibration.as_deref(),
        encoders,
        config,
    )?;
    let train_seconds = started.elapsed().as_secs_f64();
    let model_bytes = model.to_bytes().len();
    let info = model.info.clone();
    let live = IntentClassifier::new(model.clone(), live_encoders.to_vec())?;
    let clf = IntentClassifier::new(model, encoders.to_vec())?;
    let oos_label = info.out_of_scope_label.clone();
    let is_oos = |l: &str| oos_label.as_deref() == Some(l);

    let mut latencies = Vec::new();
    let n = splits.test.len();
    for e in (0..n.min(300)).map(|i| &splits.test[i * n / n.min(300)]) {
        let (prediction, ms) = super::timed_after_idle(idle, || live.predict(&e.text));
        prediction?;
        latencies.push(ms);
    }
    let (mut n_in, mut top_ok, mut in_ok, mut n_oos, mut oos_ok) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    let mut calib: Vec<(f32, bool)> = Vec::new();
    let texts: Vec<&str> = splits.test.iter().map(|e| e.text.as_str()).collect();
    // Per test row: (out of scope, top intent right, in-scope score, out-of-scope class wins), for the diagnosis.
    let mut rows: Vec<(bool, bool, f32, bool)> = Vec::with_capacity(texts.len());
    let mut mistakes = Vec::new();
    let mut predictions = Vec::with_capacity(texts.len());
    let mut first_stage = 0usize;
    for (e, d) in splits.test.iter().zip(predict_all(&clf, &texts)?) {
        first_stage += usize::from(d.first_stage);
        let p = &d.prediction;
        let top_right = p.top[0].0 == e.intent;
        let oos = is_oos(&e.intent);
        rows.push((oos, top_right, d.score, d.oos_class_wins));
        // Out of scope: right when rejected; in scope: right when its intent is let through.
        let right = if oos {
            p.out_of_scope
        } else {
            p.intent.as_deref() == Some(e.intent.as_str())
        };
        if oos {
            n_oos += 1;
            oos_ok += usize::from(right);
        } else {
            n_in += 1;
            top_ok += usize::from(top_right);
            in_ok += usize::from(right);
            calib.push((p.confidence, top_right));
        }
        if !right {
            mistakes.push(Mistake {
                text: e.text.clone(),
                intent: e.intent.clone(),
                predicted: p.top[0].0.clone(),
                confidence: p.confidence,
                score: d.score,
                rejected: p.out_of_scope,
            });
        }
        predictions.push(RowPrediction {
            text: e.text.clone(),
            label: e.intent.clone(),
            fold: None,
            prediction: d.prediction,
        });
    }
    let separation = best_in_scope_at_recall(&rows, 0.90);
    let (latency_p50_ms, latency_p99_ms, latency_mean_ms) = super::latency_summary(latencies);
    Ok(IntentReport {
        dataset: dataset.name().to_owned(),
        split: if dev { "dev" } else { "test" }.to_owned(),
        encoders: info.encoders.iter().map(|e| e.id.clone()).collect(),
        train_examples: splits.train.len(),
        test_examples: splits.test.len(),
        classes: info.labels.len(),
        sparse_features: info.sparse_features,
        accuracy: 100.0 * top_ok as f64 / n_in.max(1) as f64,
        in_scope_accuracy: 100.0 * in_ok as f64 / n_in.max(1) as f64,
        oos_recall: (n_oos > 0).then(|| 100.0 * oos_ok as f64 / n_oos as f64),
        temperature: info.temperature,
        neighbour_weight: info.neighbour_weight,
        threshold: info.threshold,
        ece: expected_calibration_error(&calib, 15),
        train_seconds,
        latency_p50_ms,
        latency_p99_ms,
        latency_mean_ms,
        first_stage: info
            .first_stage
            .clone()
            .map(|calibration| FirstStageReport {
                calibration,
                answered_test: 100.0 * first_stage as f64 / splits.test.len().max(1) as f64,
            }),
        model_bytes,
        in_scope_accuracy_at_oos_90_on_split: separation,
        mistakes,
        predictions,
    })
}

/// Rows of (out of scope, top intent right, in-scope score, out-of-scope class wins): the highest in-scope accuracy
/// (percent; a row counts when its intent is right and it is let through) over thresholds that reject at least
/// `recall` of the out-of-scope rows. A row is rejected when the out-of-scope class wins or its score is below the
/// threshold. `None` without rows of either kind.
fn best_in_scope_at_recall(rows: &[(bool, bool, f32, bool)], recall: f64) -> Option<f64> {
    let n_oos = rows.iter().filter(|r| r.0).count();
    let n_in = rows.len() - n_oos;
    if n_oos == 0 || n_in == 0 {
        return None;
    }
    // Raising the threshold only rejects more of both kinds, so the answer is at the lowest threshold that reaches
    // the recall; the candidates are 0 and just above each out-of-scope row's score.
    let mut candidates: Vec<f32> = rows
        .iter()
        .filter(|r| r.0)
        .map(|r| r.2.next_up())
        .chain([0.0])
        .collect();
    candidates.sort_by(f32::total_cmp);
    candidates.into_iter().find_map(|t| {
        let rejected = |r: &(bool, bool, f32, bool)| r.3 || r.2 < t;
        let caught = rows.iter().filter(|r| r.0 && rejected(r)).count();
        (caught as f64 >= recall * n_oos as f64).then(|| {
            let ok = rows.iter().filter(|r| !r.0 && r.1 && !rejected(r)).count();
            100.0 * ok as f64 / n_in as f64
        })
    })
}

/// K-fold cross-validation on the training split (stratified by intent, folds by a hash of the text): the top-intent
/// accuracy of each fold's held-out examples, for choosing settings without touching the test set.
pub fn cross_validate(
    train: &[Example],
    folds: usize,
    encoders: &[Arc<dyn SentenceEncoder>],
    config: &TrainConfig,
) -> Result<CrossValidation, NluError> {
    let mut cv = CrossValidation {
        accuracies: Vec::new(),
        predictions: Vec::with_capacity(train.len()),
    };
    for (fold, (fit, held)) in crate::intent::stratified_folds(train, folds.max(2), 0)
        .into_iter()
        .enumerate()
    {
        let fit: Vec<Example> = fit.into_iter().map(|i| train[i].clone()).collect();
        let model = IntentModel::train(&fit, None, encoders, config)?;
        let clf = IntentClassifier::new(model, encoders.to_vec())?;
        let texts: Vec<&str> = held.iter().map(|&i| train[i].text.as_str()).collect();
        let mut right = 0usize;
        for (d, &i) in predict_all(&clf, &texts)?.into_iter().zip(&held) {
            right += usize::from(d.prediction.top[0].0 == train[i].intent);
            cv.predictions.push(RowPrediction {
                text: train[i].text.clone(),
                label: train[i].intent.clone(),
                fold: Some(fold),
                prediction: d.prediction,
            });
        }
        cv.accuracies.push(100.0 * right as f64 / held.len() as f64);
    }
    Ok(cv)
}

/// Predictions for `texts`, in batches.
fn predict_all(clf: &IntentClassifier, texts: &[&str]) -> Result<Vec<Decision>, NluError> {
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(64) {
        out.extend(clf.decide_batch(chunk)?);
    }
    Ok(out)
}

/// Mean |confidence − accuracy| over equal-width confidence bins, weighted by bin size.
pub fn expected_calibration_error(rows: &[(f32, bool)], bins: usize) -> f64 {
    let mut sums = vec![(0.0f64, 0.0f64, 0usize); bins];
    for &(c, ok) in rows {
        let b = ((c as f64 * bins as f64) as usize).min(bins - 1);
        sums[b].0 += c as f64;
        sums[b].1 += f64::from(u8::from(ok));
        sums[b].2 += 1;
    }
    let n = rows.len().max(1) as f64;
    sums.iter()
        .filter(|s| s.2 > 0)
        .map(|(c, a, k)| (*k as f64 / n) * ((c - a) / *k as f64).abs())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separation_takes_the_lowest_threshold_that_reaches_the_recall() {
        // (out of scope, right, score, oos class wins)
        let rows = [
            (true, false, 0.1, false),
            (true, false, 0.5, false),
            (true, false, 0.9, true),
            (true, false, 0.3, false),
            (false, true, 0.4, false),
            (false, true, 0.8, false),
            (false, false, 0.95, false),
            (false, true, 0.2, false),
        ];
        // 3 of 4 out-of-scope rows: the class-wins row plus 0.1 and 0.3, so the threshold sits just above 0.3 and
        // the in-scope rows at 0.4 and 0.8 pass (0.95 is wrong, 0.2 is rejected): 2 of 4.
        assert_eq!(best_in_scope_at_recall(&rows, 0.75), Some(50.0));
        // All four: just above 0.5, which rejects 0.4 too.
        assert_eq!(best_in_scope_at_recall(&rows, 1.0), Some(25.0));
        // Half: the class-wins row and 0.1; threshold just above 0.1 lets 0.2 through.
        assert_eq!(best_in_scope_at_recall(&rows, 0.5), Some(75.0));
        assert_eq!(best_in_scope_at_recall(&rows[4..], 0.5), None);
    }

    /// Two intents and out-of-scope rows, zh and en; the test split holds one row labelled against its words.
    fn small_splits() -> Splits {
        let phrases = |intent: &str, words: &[&str]| -> Vec<Example> {
            words
                .iter()
                .flat_map(|w| {
                    [
                        format!("{w} please"),
                        format!("i want {w}"),
                        format!("can you help with {w}"),
                        format!("{w} now"),
                        format!("about {w} today"),
                    ]
                })
                .map(|t| Example::new(t, intent))
                .collect()
        };
        let mut train = phrases(
            "refund",
            &["a refund", "my money back", "退款", "reimbursement"],
        );
        train.extend(phrases(
            "shipping",
            &["delivery time", "shipping cost", "发货", "the courier"],
        ));
        train.extend(phrases(
            "oos",
            &["a joke", "the weather", "讲个笑话", "a poem"],
        ));
        let test = vec![
            Example::new("i want my money back", "refund"),
            Example::new("when is delivery time", "shipping"),
            // Labelled against its words: the classifier must get it wrong, and it must be listed.
            Example::new("a refund please now", "shipping"),
            // Out of scope and rejected: right, so not listed.
            Example::new("tell me a joke now", "oos"),
        ];
        Splits {
            train,
            calibration: None,
            test,
        }
    }

    /// [`small_splits`] trained with the defaults (n-grams only) and scored.
    fn small_run() -> (Splits, IntentReport) {
        let splits = small_splits();
        let r = run(
            IntentDataset::Banking77,
            &splits,
            true,
            &[],
            &[],
            &TrainConfig::default(),
            std::time::Duration::ZERO,
        )
        .unwrap();
        (splits, r)
    }

    #[test]
    fn the_mistakes_are_exactly_the_rows_scored_wrong() {
        let (_, r) = small_run();
        let missed = |pct: f64, n: f64| ((100.0 - pct) / 100.0 * n).round() as usize;
        let oos_missed = missed(r.oos_recall.expect("an out-of-scope row"), 1.0);
        assert_eq!(oos_missed, 0, "the joke is rejected");
        assert_eq!(
            r.mistakes.len(),
            missed(r.in_scope_accuracy, 3.0) + oos_missed
        );
        let m = r
            .mistakes
            .iter()
            .find(|m| m.text == "a refund please now")
            .expect("the mislabelled row is listed");
        assert_eq!(
            (m.intent.as_str(), m.predicted.as_str()),
            ("shipping", "refund")
        );
    }

    #[test]
    fn every_test_row_is_written_once_in_order_with_its_prediction() {
        let (splits, r) = small_run();
        assert_eq!(r.predictions.len(), splits.test.len());
        for (row, e) in r.predictions.iter().zip(&splits.test) {
            assert_eq!(
                (row.text.as_str(), row.label.as_str()),
                (e.text.as_str(), e.intent.as_str())
            );
            assert_eq!(row.fold, None);
            let p: f32 = row.prediction.top.iter().map(|t| t.1).sum();
            assert!(p > 0.0 && p <= 1.0 + 1e-5, "{row:?}");
        }
        let wrong = &r.predictions[2];
        assert_eq!(wrong.prediction.top[0].0, "refund");
        let json = serde_json::to_value(wrong).unwrap();
        assert_eq!(json["label"], "shipping");
        assert_eq!(json["top"][0][0], "refund", "{json}");
        assert!(json.get("fold").is_none(), "{json}");
        assert!(
            r.predictions[3].prediction.out_of_scope,
            "the joke is rejected"
        );
    }

    #[test]
    fn calibration_error_of_perfectly_calibrated_rows_is_zero() {
        let rows: Vec<(f32, bool)> = (0..10).map(|i| (0.5, i % 2 == 0)).collect();
        assert!(expected_calibration_error(&rows, 10) < 1e-9);
        let over: Vec<(f32, bool)> = (0..10).map(|_| (0.9, false)).collect();
        assert!((expected_calibration_error(&over, 10) - 0.9).abs() < 1e-6);
    }
}
