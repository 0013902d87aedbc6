use super::*;

fn shop_examples() -> Vec<Example> {
    let rows: &[(&str, &[&str])] = &[
        (
            "track_order",
            &[
                "where is my order",
                "my parcel has not arrived",
                "track my package",
                "when will my order arrive",
                "order status please",
                "has my order shipped yet",
                "我的快递到哪了",
                "订单什么时候到",
                "查一下物流",
                "包裹还没收到",
                "帮我查订单状态",
                "发货了吗",
            ],
        ),
        (
            "refund",
            &[
                "i want a refund",
                "give me my money back",
                "how do i get refunded",
                "refund my purchase",
                "when will the refund arrive",
                "cancel and refund",
                "我要退款",
                "退款什么时候到账",
                "钱怎么还没退回来",
                "申请退款",
                "怎么退钱",
                "退款进度",
            ],
        ),
        (
            "human",
            &[
                "let me talk to a person",
                "i want a human agent",
                "connect me to support staff",
                "real person please",
                "speak to someone",
                "transfer me to an agent",
                "转人工",
                "我要找人工客服",
                "人工服务",
                "找个真人",
                "叫你们客服来",
                "不要机器人",
            ],
        ),
        (
            "greeting",
            &[
                "hello",
                "hi there",
                "good morning",
                "hey",
                "hello anyone there",
                "hi how are you",
                "你好",
                "在吗",
                "早上好",
                "哈喽",
                "您好",
                "有人吗",
            ],
        ),
    ];
    rows.iter()
        .flat_map(|(intent, texts)| texts.iter().map(move |t| Example::new(*t, *intent)))
        .collect()
}

fn sparse_only() -> TrainConfig {
    TrainConfig {
        features: FeatureConfig {
            min_df: 1,
            ..FeatureConfig::default()
        },
        ..TrainConfig::default()
    }
}

#[test]
fn learns_bilingual_intents_and_round_trips() {
    let model = IntentModel::train(&shop_examples(), None, &[], &sparse_only()).unwrap();
    let clf = IntentClassifier::new(model.clone(), vec![]).unwrap();
    for (text, want) in [
        ("where is my parcel", "track_order"),
        ("快递到哪里了", "track_order"),
        ("退款还没到账", "refund"),
        ("please refund me", "refund"),
        ("转人工客服", "human"),
    ] {
        let p = clf.predict(text).unwrap();
        assert_eq!(p.top[0].0, want, "{text}: {p:?}");
        let sum: f32 = p.top.iter().map(|t| t.1).sum();
        assert!(sum <= 1.0001 && p.confidence > 0.0);
    }
    // Serialised and loaded, the model predicts exactly the same.
    let loaded = IntentModel::from_bytes(&model.to_bytes()).unwrap();
    assert_eq!(loaded.info, model.info);
    let again = IntentClassifier::new(loaded, vec![]).unwrap();
    assert_eq!(again.predict("退款").unwrap(), clf.predict("退款").unwrap());
    // Training is reproducible.
    let twice = IntentModel::train(&shop_examples(), None, &[], &sparse_only()).unwrap();
    assert_eq!(twice.to_bytes(), model.to_bytes());
}

#[test]
fn an_out_of_scope_class_and_threshold_reject_unrelated_text() {
    let mut ex = shop_examples();
    for t in [
        "what is the weather",
        "tell me a joke",
        "who won the match",
        "今天天气怎么样",
        "讲个笑话",
        "股票涨了吗",
        "play some music",
        "推荐一部电影",
        "how tall is everest",
        "明天会下雨吗",
    ] {
        ex.push(Example::new(t, "oos"));
    }
    let model = IntentModel::train(&ex, None, &[], &sparse_only()).unwrap();
    assert_eq!(model.info.out_of_scope_label.as_deref(), Some("oos"));
    let clf = IntentClassifier::new(model, vec![]).unwrap();
    let p = clf.predict("讲一个笑话吧").unwrap();
    assert!(p.out_of_scope && p.intent.is_none(), "{p:?}");
    assert!(clf.predict("我要退款").unwrap().intent.as_deref() == Some("refund"));
}

#[test]
fn odd_input_never_panics() {
    let model = IntentModel::train(&shop_examples(), None, &[], &sparse_only()).unwrap();
    let clf = IntentClassifier::new(model, vec![]).unwrap();
    let huge = "退款".repeat(500_000);
    for text in ["", "\u{0}\u{1}\u{7f}", "   ", "😀😀", huge.as_str()] {
        let p = clf.predict(text).unwrap();
        assert!(p.confidence.is_finite());
    }
}

#[test]
fn corrupt_or_mismatched_models_are_refused() {
    let model = IntentModel::train(&shop_examples(), None, &[], &sparse_only()).unwrap();
    let bytes = model.to_bytes();
    assert!(IntentModel::from_bytes(&bytes[..bytes.len() - 4]).is_err());
    assert!(IntentModel::from_bytes(b"not a model at all").is_err());
    struct Fixed;
    impl SentenceEncoder for Fixed {
        fn id(&self) -> &str {
            "other"
        }
        fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
            Ok(texts.iter().map(|_| vec![1.0, 0.0]).collect())
        }
    }
    let err = IntentClassifier::new(model, vec![Arc::new(Fixed)])
        .err()
        .unwrap();
    assert!(err.to_string().contains("trained with encoders"));
}

/// The demo shop's intents (demo/intents/shop-intents.csv, zh + en, 16 examples each) with n-grams only: most new
/// phrasings in both languages land on the right intent, and chit-chat is out of scope. (N-grams alone miss
/// paraphrases that share no words with the examples, such as "send this back"; the sentence encoder is what
/// covers those, see `kefu eval intent`.)
#[test]
fn demo_shop_intents_generalise() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../demo/intents/shop-intents.csv"
    );
    let examples = parse_examples("shop-intents.csv", &std::fs::read(path).unwrap()).unwrap();
    let model = IntentModel::train(&examples, None, &[], &TrainConfig::default()).unwrap();
    let clf = IntentClassifier::new(model, vec![]).unwrap();
    let cases = [
        ("my parcel still has not arrived", Some("track_order")),
        ("快递到底到哪里了", Some("track_order")),
        ("how long until i get my refund", Some("refund_status")),
        ("退的钱什么时候到", Some("refund_status")),
        ("I want to send this back", Some("return_request")),
        ("地址写错了要改", Some("change_address")),
        ("转接人工客服", Some("human_agent")),
        ("please give me a receipt for my company", Some("invoice")),
        ("给我讲个笑话吧", None),
    ];
    let mut right = 0;
    for (text, want) in cases {
        let p = clf.predict(text).unwrap();
        if p.intent.as_deref() == want {
            right += 1;
        } else {
            eprintln!("{text}: {p:?}");
        }
    }
    assert!(right >= 7, "{right}/{}", cases.len());
}

#[test]
fn stratified_folds_hold_each_example_out_once_and_spread_every_intent() {
    let examples = shop_examples();
    let folds = stratified_folds(&examples, 4, 0);
    assert_eq!(folds.len(), 4);
    let mut held_times = vec![0; examples.len()];
    for (fit, held) in &folds {
        assert_eq!(fit.len() + held.len(), examples.len());
        for &i in held {
            held_times[i] += 1;
            assert!(!fit.contains(&i));
        }
        // Each intent has 12 examples: 3 of each in every fold.
        let mut per_intent: std::collections::BTreeMap<&str, usize> = Default::default();
        for &i in held {
            *per_intent.entry(examples[i].intent.as_str()).or_default() += 1;
        }
        assert!(per_intent.values().all(|&n| n == 3), "{per_intent:?}");
    }
    assert!(held_times.iter().all(|&n| n == 1));
    // Intents below the minimum are never held out.
    assert!(stratified_folds(&examples, 4, 13).is_empty());
    assert_eq!(
        stratified_folds(&examples, 4, 0),
        folds,
        "the split is fixed"
    );
}

#[test]
fn cross_validation_scores_each_fold_on_unseen_examples() {
    let train = shop_examples();
    let cv = crate::eval::intent::cross_validate(&train, 3, &[], &sparse_only()).unwrap();
    let accuracies = &cv.accuracies;
    assert_eq!(accuracies.len(), 3);
    // Each fold's examples are unseen paraphrases of a small bilingual set: well above chance (1 in 4 intents).
    assert!(
        accuracies.iter().all(|&a| (40.0..=100.0).contains(&a)),
        "{accuracies:?}"
    );
    // Every training row is scored once, by the fold that held it out, and each fold's accuracy is its rows'.
    let mut seen: Vec<&str> = cv.predictions.iter().map(|r| r.text.as_str()).collect();
    let mut all: Vec<&str> = train.iter().map(|e| e.text.as_str()).collect();
    seen.sort_unstable();
    all.sort_unstable();
    assert_eq!(seen, all);
    for (fold, accuracy) in accuracies.iter().enumerate() {
        let rows: Vec<_> = cv
            .predictions
            .iter()
            .filter(|r| r.fold == Some(fold))
            .collect();
        let right = rows
            .iter()
            .filter(|r| r.prediction.top[0].0 == r.label)
            .count();
        assert!(
            (100.0 * right as f64 / rows.len() as f64 - accuracy).abs() < 1e-9,
            "fold {fold}"
        );
    }
}

#[test]
fn neighbour_votes_raise_the_intent_whose_example_is_nearest() {
    // Two intents, two unit vectors each; the query sits nearest intent 1's second example.
    let dense: Vec<Vec<f32>> = vec![
        vec![1.0, 0.0, 0.0],
        vec![0.8, 0.6, 0.0],
        vec![0.0, 0.0, 1.0],
        vec![0.0, 0.6, 0.8],
    ];
    let refs: Vec<&[f32]> = dense.iter().map(Vec::as_slice).collect();
    let ex = Exemplars::new(&refs, &[0, 0, 1, 1], 3);
    let nearest = ex.nearest_each(3, &[0.0, 0.8, 0.6]);
    // Nearest cosines: intent 0 → 0.48, intent 1 → 0.96 (8-bit storage: within 1e-2); intent 2 has no examples.
    assert!((nearest[0].unwrap() - 0.48).abs() < 0.01, "{nearest:?}");
    assert!((nearest[1].unwrap() - 0.96).abs() < 0.01, "{nearest:?}");
    assert_eq!(nearest[2], None);
    let mut logits = vec![1.0, 1.0, 1.0];
    add_neighbour_votes(&mut logits, &nearest, 10.0);
    assert!((logits[0] - 5.8).abs() < 0.1, "{logits:?}");
    assert!((logits[1] - 10.6).abs() < 0.1, "{logits:?}");
    assert_eq!(logits[2], 1.0);
    let mut unchanged = vec![1.0, 1.0, 1.0];
    add_neighbour_votes(&mut unchanged, &nearest, 0.0);
    assert_eq!(unchanged, vec![1.0, 1.0, 1.0]);
}

/// Calibration picks the vote weight from the candidates: the vote where nearest examples tell intents apart and a
/// linear model cannot, none where the vectors are noise beside good n-grams; without encoders there is nothing to vote with.
#[test]
fn the_vote_weight_is_chosen_on_held_out_rows() {
    let examples = shop_examples();
    let config = TrainConfig {
        neighbour_weights: vec![0.0, 30.0],
        features: FeatureConfig {
            min_df: 1,
            word_weight: 0.0,
            char_weight: 0.0,
            ..FeatureConfig::default()
        },
        ..TrainConfig::default()
    };
    let sparse = IntentModel::train(&examples, None, &[], &config).unwrap();
    assert_eq!(sparse.info.neighbour_weight, 0.0);

    /// Intent k's examples lie at +e_k or -e_k by turns (`signal`), or at hash-chosen axes (noise). No linear
    /// model scores intent k highest at both +e_k and -e_k; the nearest example does.
    struct Xor {
        signal: bool,
    }
    impl SentenceEncoder for Xor {
        fn id(&self) -> &str {
            "xor"
        }
        fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
            let examples = shop_examples();
            Ok(texts
                .iter()
                .map(|t| {
                    let i = examples.iter().position(|e| e.text == *t).unwrap_or(0);
                    let h = text_hash(t);
                    let mut v = vec![0.0; 8];
                    if self.signal {
                        v[i / 12] = if i % 2 == 0 { 1.0 } else { -1.0 };
                    } else {
                        v[(h % 8) as usize] = 1.0;
                    }
                    v[4 + (h >> 8) as usize % 4] += 0.2;
                    v
                })
                .collect())
        }
    }
    let train = |signal: bool, config: &TrainConfig| {
        let enc: Vec<Arc<dyn SentenceEncoder>> = vec![Arc::new(Xor { signal })];
        IntentModel::train(&examples, None, &enc, config).unwrap()
    };
    let voted = train(true, &config);
    assert_eq!(voted.info.neighbour_weight, 30.0);
    // With the n-grams on (they separate these intents well), a vote among noise vectors only gets in the way.
    let with_ngrams = TrainConfig {
        features: sparse_only().features,
        ..config.clone()
    };
    assert_eq!(train(false, &with_ngrams).info.neighbour_weight, 0.0);
    // A saved model keeps the chosen weight; a header without one reads 0.
    let back = IntentModel::from_bytes(&voted.to_bytes()).unwrap();
    assert_eq!(back.info.neighbour_weight, 30.0);
    let mut info = serde_json::to_value(&voted.info).unwrap();
    info.as_object_mut().unwrap().remove("neighbour_weight");
    let old: ModelInfo = serde_json::from_value(info).unwrap();
    assert_eq!(old.neighbour_weight, 0.0);
}

#[test]
fn a_refit_learns_from_the_calibration_set_and_keeps_its_calibration() {
    // Every third example calibrates, the rest train; one calibration example holds a word training never saw.
    let (mut cal, mut train) = (Vec::new(), Vec::new());
    for (i, e) in shop_examples().into_iter().enumerate() {
        if i % 3 == 0 { &mut cal } else { &mut train }.push(e);
    }
    cal.push(Example::new("zorbix zorbix", "refund"));
    let plain = IntentModel::train(&train, Some(&cal), &[], &sparse_only()).unwrap();
    let config = TrainConfig {
        refit_with_calibration: true,
        ..sparse_only()
    };
    let refit = IntentModel::train(&train, Some(&cal), &[], &config).unwrap();
    // Calibration scored the same train-only model both times.
    assert_eq!(refit.info.temperature, plain.info.temperature);
    assert_eq!(refit.info.threshold, plain.info.threshold);
    assert_eq!(plain.info.examples, train.len());
    assert_eq!(refit.info.examples, train.len() + cal.len());
    assert_ne!(refit.info.data_sha256, plain.info.data_sha256);
    // Only the refitted model knows the calibration-only word.
    let p = |m: &IntentModel| {
        let clf = IntentClassifier::new(m.clone(), vec![]).unwrap();
        let top = clf.predict("zorbix").unwrap().top;
        top.iter().find(|t| t.0 == "refund").unwrap().1
    };
    let (before, after) = (p(&plain), p(&refit));
    assert!(after > 0.5 && after > before + 0.2, "{before} → {after}");
}

#[test]
fn the_lane_dot_product_matches_the_plain_one() {
    for len in [0usize, 1, 7, 8, 9, 384, 771] {
        let row: Vec<i8> = (0..len)
            .map(|i| ((i * 37 % 255) as i32 - 127) as i8)
            .collect();
        let x: Vec<f32> = (0..len)
            .map(|i| ((i * 13 % 17) as f32 - 8.0) / 7.0)
            .collect();
        let plain: f32 = row.iter().zip(&x).map(|(&q, v)| f32::from(q) * v).sum();
        let lanes = dot_i8_f32(&row, &x);
        assert!(
            (plain - lanes).abs() <= 1e-3 * plain.abs().max(1.0),
            "{len}: {plain} vs {lanes}"
        );
    }
}

#[test]
fn settings_out_of_range_are_refused_with_the_field_named() {
    for (overrides, field) in [
        (serde_json::json!({"linear": {"c": 0.0}}), "linear.c"),
        (
            serde_json::json!({"calibration_share": -0.1}),
            "calibration_share",
        ),
        (serde_json::json!({"reject_share": 2.0}), "reject_share"),
        (
            serde_json::json!({"features": {"char_min": 5, "char_max": 3}}),
            "char_min",
        ),
        (
            serde_json::json!({"features": {"dense_weight": -1.0}}),
            "weights",
        ),
        (
            serde_json::json!({"neighbour_weights": []}),
            "neighbour_weights",
        ),
        (
            serde_json::json!({"neighbour_weights": vec![1.0; 17]}),
            "neighbour_weights",
        ),
    ] {
        let err = TrainConfig::with_overrides(&overrides)
            .unwrap_err()
            .to_string();
        assert!(err.contains(field), "{overrides}: {err}");
    }
    assert!(
        TrainConfig::with_overrides(&serde_json::json!({"neighbour_weights": [0, 20]})).is_ok()
    );
    // Training checks them too, before any work.
    let bad = TrainConfig {
        support_power: f32::NAN,
        ..TrainConfig::default()
    };
    let err = IntentModel::train(&shop_examples(), None, &[], &bad).unwrap_err();
    assert!(err.to_string().contains("support_power"), "{err}");
}

#[test]
fn the_gate_is_the_lowest_score_where_both_stages_keep_up_with_the_full_model() {
    // (first stage's score, first stage right, full model right), label 0 for every row; a wrong answer names 1.
    let rows = [
        (0.99, true, true),
        (0.95, true, false),
        (0.90, false, true),
        (0.80, false, true),
        (0.70, true, false),
        (0.60, false, true),
    ];
    let held = |rows: &[(f32, bool, bool)], full: bool| -> Vec<HeldDecision> {
        rows.iter()
            .map(|&(score, s, f)| HeldDecision {
                intent: Some(usize::from(!if full { f } else { s })),
                score,
                label: 0,
            })
            .collect()
    };
    let mut stage = held(&rows, false);
    // A row the first stage rejects is never its to answer, however high its score.
    stage.push(HeldDecision {
        intent: None,
        score: 0.999,
        label: 0,
    });
    let mut full = held(&rows, true);
    full.push(HeldDecision {
        intent: Some(1),
        score: 0.5,
        label: 0,
    });
    // Running count from the top: 0, +1, 0, -1, 0, -1: the lowest score at 0 or above is 0.70 (5 of 7 rows).
    let info = choose_gate(&stage, &full, None);
    assert_eq!(info.gate, 0.70);
    assert!((info.answered - 5.0 / 7.0).abs() < 1e-6, "{info:?}");
    assert_eq!((info.right, info.right_full_model), (4, 4));
    // When the top row already loses, no gate keeps up: the first stage never answers.
    let info = choose_gate(&stage[2..], &full[2..], None);
    assert_eq!((info.gate, info.answered), (f32::MAX, 0.0));
    // Out of scope: a rejection is the right answer.
    let oos = HeldDecision {
        intent: None,
        score: 0.1,
        label: 7,
    };
    assert!(oos.right(Some(7)) && !oos.right(None));
}

/// Two encoders: "cheap" puts human and greeting at the same point, "full" tells all four intents apart. With the
/// n-grams off, the first stage (cheap) is sure only of track_order and refund; the full model runs for the rest,
/// and only then does the full encoder run.
#[test]
fn a_first_stage_answers_what_it_is_sure_of_and_the_full_model_the_rest() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    struct Axes {
        id: &'static str,
        axis: fn(&str) -> usize,
        texts: AtomicUsize,
    }
    impl SentenceEncoder for Axes {
        fn id(&self) -> &str {
            self.id
        }
        fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
            self.texts.fetch_add(texts.len(), Ordering::SeqCst);
            Ok(texts
                .iter()
                .map(|t| {
                    let mut v = vec![0.0; 8];
                    v[(self.axis)(t)] = 1.0;
                    v[4 + (text_hash(t) % 4) as usize] += 0.1;
                    v
                })
                .collect())
        }
    }
    fn intent_of(t: &str) -> usize {
        let order = ["track_order", "refund", "human", "greeting"];
        let e = shop_examples().into_iter().find(|e| e.text == t);
        e.map_or(3, |e| order.iter().position(|o| *o == e.intent).unwrap())
    }
    let cheap = Arc::new(Axes {
        id: "cheap",
        axis: |t| [0, 1, 2, 2][intent_of(t)],
        texts: AtomicUsize::new(0),
    });
    let full = Arc::new(Axes {
        id: "full",
        axis: intent_of,
        texts: AtomicUsize::new(0),
    });
    let encoders: Vec<Arc<dyn SentenceEncoder>> = vec![full.clone(), cheap.clone()];
    let config = TrainConfig {
        features: FeatureConfig {
            word_weight: 0.0,
            char_weight: 0.0,
            ..FeatureConfig::default()
        },
        first_stage_encoders: vec!["cheap".into()],
        ..TrainConfig::default()
    };
    let model = IntentModel::train(&shop_examples(), None, &encoders, &config).unwrap();
    // Each encoder saw each training text once, though two models learned from the cheap one's vectors.
    let n = shop_examples().len();
    assert_eq!(
        (
            full.texts.load(Ordering::SeqCst),
            cheap.texts.load(Ordering::SeqCst)
        ),
        (n, n)
    );
    let info = model.info.first_stage.clone().unwrap();
    // Every row is held out once (5 folds); the first stage keeps up on the two intents it can tell apart.
    assert!(
        info.gate < 1.0 && (0.4..=0.6).contains(&info.answered),
        "{info:?}"
    );
    assert_eq!(info.right, info.right_full_model);

    let clf = IntentClassifier::new(model.clone(), encoders.clone()).unwrap();
    let texts = ["track my package", "申请退款", "转人工", "早上好"];
    let (full_before, cheap_before) = (
        full.texts.load(Ordering::SeqCst),
        cheap.texts.load(Ordering::SeqCst),
    );
    let decided = clf.decide_batch(&texts).unwrap();
    let got: Vec<(&str, bool)> = decided
        .iter()
        .map(|d| (d.prediction.top[0].0.as_str(), d.first_stage))
        .collect();
    assert_eq!(
        got,
        [
            ("track_order", true),
            ("refund", true),
            ("human", false),
            ("greeting", false)
        ]
    );
    // The cheap encoder saw every text once, the full one only the two the full model decided.
    assert_eq!(cheap.texts.load(Ordering::SeqCst) - cheap_before, 4);
    assert_eq!(full.texts.load(Ordering::SeqCst) - full_before, 2);

    // Saved and loaded, both stages predict the same.
    let loaded = IntentModel::from_bytes(&model.to_bytes()).unwrap();
    assert_eq!(loaded.info, model.info);
    let again = IntentClassifier::new(loaded, encoders.clone()).unwrap();
    for t in texts {
        assert_eq!(again.predict(t).unwrap(), clf.predict(t).unwrap(), "{t}");
    }
    // A cut-off first stage is refused.
    let bytes = model.to_bytes();
    assert!(IntentModel::from_bytes(&bytes[..bytes.len() - 4]).is_err());

    // The first stage must use some, not all, of the encoders.
    for stage in [vec!["nope".to_owned()], vec!["cheap".into(), "full".into()]] {
        let config = TrainConfig {
            first_stage_encoders: stage,
            ..config.clone()
        };
        let err = IntentModel::train(&shop_examples(), None, &encoders, &config).unwrap_err();
        assert!(err.to_string().contains("first_stage_encoders"), "{err}");
    }
}

/// A file written before first stages existed (no `first_stage_bytes` in the header, no `first_stage` in the info)
/// still loads, as one stage.
#[test]
fn files_from_before_first_stages_still_load() {
    let model = IntentModel::train(&shop_examples(), None, &[], &sparse_only()).unwrap();
    let bytes = model.to_bytes();
    let len = u64::from_le_bytes(bytes[8..16].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[16..16 + len]).unwrap();
    header
        .as_object_mut()
        .unwrap()
        .remove("first_stage_bytes")
        .unwrap();
    header["info"]
        .as_object_mut()
        .unwrap()
        .remove("first_stage")
        .unwrap();
    let header = serde_json::to_vec(&header).unwrap();
    let mut old = bytes[..8].to_vec();
    old.extend_from_slice(&(header.len() as u64).to_le_bytes());
    old.extend_from_slice(&header);
    old.extend_from_slice(&bytes[16 + len..]);
    let loaded = IntentModel::from_bytes(&old).unwrap();
    assert_eq!(loaded.info, model.info);
    assert!(loaded.first_stage.is_none());
    let clf = IntentClassifier::new(loaded, vec![]).unwrap();
    assert_eq!(clf.predict("我要退款").unwrap().top[0].0, "refund");
}
